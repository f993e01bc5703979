"""The savings in the open: per profile, how many verdicts were answered by vector math, how many were escalated
(unsure), how many exemplars were taught, and how often a taught label agreed with an answered verdict; per tool,
how many calls and how long they took.

Who owns what: judging threads and the event loop only append events to `_events`, a deque (appends are atomic:
nobody waits). One flusher thread drains it every `flush_seconds` (a read drains it first, under `_flush_lock`):
the drained counts are added to this process's totals (`process_tallies`, `process_calls`, read by /metrics)
and to `<data dir>/stats.sqlite` (usage_db.py), so every server on a data dir (and `mcp-latent profiles stats`,
`mcp-latent report`) sees the sum of all of them. Counts a failed write could not save stay pending for the next.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from mcp_latent.service import usage_db
from mcp_latent.service.usage_db import FIELDS, LATENCY_BUCKETS

log = logging.getLogger(__name__)

__all__ = ["FIELDS", "LATENCY_BUCKETS", "ProfileStats", "describe", "plot_escalation"]

COMPACT_EVERY_SECONDS = 3600.0


class ProfileStats:
    """Counts per profile (and tool) and minute: recorded in memory without waiting, flushed to SQLite in the
    background; minutes past `detail_hours` are summed per day, days past `keep_days` into one total."""

    def __init__(self, path: Path, flush_seconds: float = 5.0, detail_hours: int = 48, keep_days: int = 90):
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.detail_hours = detail_hours
        self.keep_days = keep_days
        self._events: deque[tuple] = deque()
        self._flush_lock = threading.Lock()  # one flush at a time (the timer thread, or close/read)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._compacted_at = 0.0
        # This process's counts since it started (written under _flush_lock, read after a flush).
        self.process_tallies: dict[tuple[str, str], int] = defaultdict(int)
        self.process_calls: dict[tuple[str, str], list[float]] = {}  # (tool, outcome) -> [bucket counts..., sum]
        self._pending_tallies: dict[tuple[str, int], dict[str, int]] = {}
        self._pending_calls: dict[tuple, list[float]] = {}

    @classmethod
    def for_settings(cls, settings: Any) -> ProfileStats:
        """The data dir's stats, with the settings' flush interval and time-series windows."""
        s = settings
        return cls(s.data_dir / "stats.sqlite", s.stats_flush_seconds, s.stats_detail_hours, s.stats_keep_days)

    def record(self, profile: str, field: str, count: int = 1) -> None:
        """Count an event now (any thread, the event loop included: one deque append)."""
        self._events.append(("t", profile, int(time.time() // 60), field, count))

    def record_call(self, tool: str, outcome: str, seconds: float) -> None:
        """Count a tool call and its duration (the event loop calls this: one deque append, no lock)."""
        self._events.append(("c", tool, int(time.time() // 60), outcome, seconds))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mcp-latent-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
            if time.monotonic() - self._compacted_at > COMPACT_EVERY_SECONDS:
                self.compact()

    def flush(self) -> None:
        """Add the counts recorded so far to this process's totals and to the database; counts the database could
        not take stay pending for the next flush."""
        with self._flush_lock:
            while self._events:
                kind, name, minute, what, value = self._events.popleft()
                if kind == "t":
                    self.process_tallies[(name, what)] += value
                    row = self._pending_tallies.setdefault((name, minute), dict.fromkeys(FIELDS, 0))
                    row[what] += value
                else:
                    bucket = bisect.bisect_left(LATENCY_BUCKETS, value)
                    mine = self.process_calls.setdefault((name, what), [0.0] * (len(LATENCY_BUCKETS) + 1))
                    mine[bucket] += 1
                    mine[-1] += value
                    pending = self._pending_calls.setdefault((name, minute, what, bucket), [0, 0.0])
                    pending[0] += 1
                    pending[1] += value
            if not (self._pending_tallies or self._pending_calls):
                return
            try:
                usage_db.write(self.path, self._pending_tallies, self._pending_calls)
            except sqlite3.Error as exc:
                log.warning("could not save usage stats (%s); retrying at the next flush", exc)
                return
            self._pending_tallies, self._pending_calls = {}, {}

    def compact(self, now: float | None = None) -> None:
        """Bound the time series (see usage_db.compact); a failure is logged and retried an hour later."""
        self._compacted_at = time.monotonic()
        if not self.path.exists():
            return
        try:
            usage_db.compact(self.path, int((now or time.time()) // 60), self.detail_hours, self.keep_days)
        except sqlite3.Error as exc:
            log.warning("could not compact usage stats (%s); retrying in an hour", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    # --- reading -----------------------------------------------------------------------------------------------

    def summary(self) -> dict[str, dict[str, Any]]:
        """Totals per profile (every process on the data dir): counts, escalation rate and measured agreement."""
        self.flush()
        return {profile: describe(counts) for profile, counts in sorted(usage_db.totals(self.path).items())}

    def series(self, profile: str) -> list[tuple[int, dict[str, int]]]:
        """Counts of one profile over time, oldest first: (unix minute, counts); older rows are whole days."""
        self.flush()
        return usage_db.series(self.path, profile)

    def calls(self) -> dict[str, dict[str, Any]]:
        """Per tool (every process on the data dir): calls, errors, mean and p50/p95 latency (bucket bounds)."""
        self.flush()
        out = {}
        for tool, entry in sorted(usage_db.call_totals(self.path).items()):
            out[tool] = {
                "calls": entry["calls"],
                "errors": entry["errors"],
                "mean_ms": round(1000 * entry["seconds"] / entry["calls"], 2) if entry["calls"] else None,
                "p50_ms_at_most": _ms(usage_db.quantile(entry["buckets"], 0.5)),
                "p95_ms_at_most": _ms(usage_db.quantile(entry["buckets"], 0.95)),
            }
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or seconds == float("inf") else round(seconds * 1000, 3)


def describe(counts: dict[str, int]) -> dict[str, Any]:
    """Counts plus the derived rates: escalation share of verdicts, agreement share of spot checks."""
    verdicts = counts["answered"] + counts["escalated"]
    checks = counts["agreed"] + counts["disagreed"]
    return {
        **counts,
        "escalation_rate": round(counts["escalated"] / verdicts, 4) if verdicts else None,
        "agreement": round(counts["agreed"] / checks, 4) if checks else None,
    }


def plot_escalation(stats: ProfileStats, profiles: list[str], out: Path, bucket_minutes: int = 0) -> Path:
    """A PNG of each profile's escalation rate over time (buckets sized so the plot has about 40 points).
    Raises PlotsUnavailable (one line: what to install) without matplotlib."""
    from mcp_latent.plotting import figure

    with figure(out, dpi=100, figsize=(8, 4)) as (_, ax):
        for name in profiles:
            series = stats.series(name)
            if not series:
                continue
            first, last = series[0][0], series[-1][0]
            size = bucket_minutes or max(1, (last - first + 1) // 40)
            buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for minute, counts in series:
                bucket = buckets[(minute - first) // size]
                bucket[0] += counts["escalated"]
                bucket[1] += counts["answered"] + counts["escalated"]
            points = sorted((b * size / 60, e / v) for b, (e, v) in buckets.items() if v)
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
        ax.set_xlabel("hours since first verdict")
        ax.set_ylabel("escalation rate (unsure / verdicts)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    return out
