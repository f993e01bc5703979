"""`/metrics` in the Prometheus text format, through prometheus_client, one registry per server (so several
servers in one process, as in the tests, never share or collide).

Nothing here runs on the event loop: tool calls are counted by one deque append each (ProfileStats.record_call),
and this collector turns the counts into metric families at scrape time, in the worker thread that serves the
scrape. Counters are this process's since it started (Prometheus sums instances itself); the agreement ratio and
the store sizes are read from the data dir and the store, so they cover every server on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mcp_latent.service.usage_db import LATENCY_BUCKETS

PROFILE_STATES = ("ready", "fitting", "failed")


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(value)


class LatentCollector(Collector):
    """The service's figures, read when Prometheus scrapes (see the module docstring for whose counts they are)."""

    def __init__(self, service: Any):
        self.service = service

    def collect(self) -> Iterator[Metric]:
        stats = self.service.stats
        stats.flush()  # moves what the event loop and the judging threads recorded into the totals read below
        yield from self._calls(stats)
        yield from self._verdicts(stats)
        ready = GaugeMetricFamily("mcp_latent_ready", "1 once the model and the store are loaded and calls served")
        ready.add_metric([], 1.0 if self.service.ready else 0.0)
        yield ready
        if self.service.ready:
            yield from self._profiles_and_store()

    @staticmethod
    def _calls(stats: Any) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "mcp_latent_tool_calls", "Tool calls by tool and outcome", labels=["tool", "outcome"]
        )
        latency = HistogramMetricFamily(
            "mcp_latent_tool_latency_seconds", "Tool call duration on the server, by tool", labels=["tool"]
        )
        per_tool: dict[str, list[float]] = {}
        for (tool, outcome), counts in sorted(stats.process_calls.items()):
            calls.add_metric([tool, outcome], sum(counts[:-1]))
            merged = per_tool.setdefault(tool, [0.0] * len(counts))
            for i, value in enumerate(counts):
                merged[i] += value
        for tool, counts in sorted(per_tool.items()):
            running, buckets = 0.0, []
            for bound, count in zip(LATENCY_BUCKETS, counts[:-1], strict=True):
                running += count
                buckets.append((_bound(bound), running))
            latency.add_metric([tool], buckets, counts[-1])
        yield calls
        yield latency

    @staticmethod
    def _verdicts(stats: Any) -> Iterator[Metric]:
        verdicts = CounterMetricFamily(
            "mcp_latent_verdicts",
            "Verdicts per profile: answered by vector math, or escalated (unsure: left to the calling LLM)",
            labels=["profile", "outcome"],
        )
        taught = CounterMetricFamily("mcp_latent_taught", "Exemplars taught per profile", labels=["profile"])
        checks = CounterMetricFamily(
            "mcp_latent_spot_checks",
            "Teaches of a text the profile had answered: the taught label agreed with the verdict or not",
            labels=["profile", "result"],
        )
        tallies = dict(stats.process_tallies)
        for profile in sorted({p for p, _ in tallies}):
            for outcome in ("answered", "escalated"):
                verdicts.add_metric([profile, outcome], tallies.get((profile, outcome), 0))
            taught.add_metric([profile], tallies.get((profile, "taught"), 0))
            for result in ("agreed", "disagreed"):
                checks.add_metric([profile, result], tallies.get((profile, result), 0))
        agreement = GaugeMetricFamily(
            "mcp_latent_spot_check_agreement",
            "Share of spot checks that agreed with the answered verdict (every server on the data dir)",
            labels=["profile"],
        )
        for profile, summary in stats.summary().items():
            if summary["agreement"] is not None:
                agreement.add_metric([profile], summary["agreement"])
        yield from (verdicts, taught, checks, agreement)

    def _profiles_and_store(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "mcp_latent_profile_state",
            "1 for the profile's fit state (ready, fitting, failed)",
            labels=["profile", "state"],
        )
        exemplars = GaugeMetricFamily(
            "mcp_latent_profile_exemplars", "Exemplars a profile is fitted on, taught ones included", labels=["profile"]
        )
        for name, live in sorted(self.service.live.items()):
            info = live.status()
            now = "ready" if info.get("ready") else "failed" if info.get("error") else "fitting"
            for candidate in PROFILE_STATES:
                state.add_metric([name, candidate], 1.0 if candidate == now else 0.0)
            exemplars.add_metric([name], live.exemplars)
        handoffs = GaugeMetricFamily("mcp_latent_store_handoffs", "Stored handoffs per namespace", labels=["namespace"])
        for entry in self.service.namespaces()["namespaces"]:
            handoffs.add_metric([entry["namespace"]], entry["count"])
        yield from (state, exemplars, handoffs)


def metrics_registry(service: Any) -> CollectorRegistry:
    """A registry of its own for this server: its figures and the process's (CPU, memory, open files)."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatentCollector(service))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition (run it in a worker thread: collecting reads SQLite and the store)."""
    return generate_latest(registry)
