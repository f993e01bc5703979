#!/usr/bin/env python3
"""Where `handoff` with three verdicts spends its time beyond one embedding: the library call `tools/bench.py`'s
"handoff + 3 verdicts" makes (new texts, the shipped profiles risk, roi and category), in-process, split into steps,
each timed in wall time (`perf_counter`: the embedding runs on ONNX Runtime's own threads, which the calling
thread's CPU time does not see) and in CPU time of the thread that runs the step (`thread_time`).

    .venv/bin/python tools/handoff_spans.py [--n 500] [--evict-mib 32] [--stored 4000] [--no-index] [--write-first]
        [--mcp] [--json out.json]

As in the bench, the namespace holds `--stored` handoffs (its `embed` scenarios) and its HNSW index is loaded (its
`similar` scenario), so a write also adds the row to the index. Since branch `h3lat` the write runs on a helper
thread beside the verdicts (`service/write_beside.py`) and the index insert on the store's catch-up thread
(`store/sqlite_index.py`): their rows ("beside the call") are time on those threads, and what the call waits for
them is "waiting for the write". `--write-first` serves as before (`handoff_write_threads=0`,
`hnsw_add_in_background=false`); on a commit without those settings both variants are the same.

`--mcp` drives the same calls through the SDK's client and the server's tool (`server/tools.py`) over the SDK's
in-memory transport, and adds rows for the MCP layer: the server's `call_tool` (argument validation, the worker
thread hop, the result's structured and text content) around `LatentService.handoff`, and the result's JSON as the
stdio transport writes it (`model_dump_json`, timed apart on each call's result).

The real model and shipped profiles, one BLAS thread as served, verdict prefetch off (the profiles a handoff names
are judged in the call anyway). `--evict-mib` reads that much other memory before each call, as the server's other
calls do. Indented rows are parts of the row above; "rest" is what no named step covers.
"""

from __future__ import annotations

import argparse
import collections
import functools
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROPOSAL = (
    "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test to hit the "
    "quarter deadline; rollback is manual and takes about two hours."
)
PROFILES = ["risk", "roi", "category"]
# (owner, attribute, step): what is timed, wrapped in place for this process only (absent ones are skipped).
STEPS = [
    ("client", "call_tool", "SDK client call (in-memory transport)"),
    ("server", "call_tool", "server call_tool"),
    ("service", "handoff", "handoff"),
    ("embedder", "embed", "embedding (ONNX)"),
    ("store", "add", "store write"),
    ("indexes", "after_insert", "hand to the index"),
    ("indexes", "_add_committed", "index catch-up (HNSW add)"),
    ("writes", "wait", "waiting for the write"),
    ("service", "_fits", "fits"),
    ("memo", "verdicts", "verdicts (memo, shared product, judges)"),
    ("shared", "similarities", "shared product"),
    ("fitted", "verdict", "3 verdicts"),
    ("words", "featurize_one", "featurize the text (3x)"),
    ("fitted", "neighbours", "top-k of the shared similarities"),
    ("service", "_served", "stats, stream, prefetch profiles"),
    ("service", "_shown", "result dicts"),
    ("schema", "compact_result", "result content (structured + text JSON)"),
]


def measure(
    n: int, evict_mib: int, write_first: bool = False, stored: int = 4000, index: bool = True, mcp: bool = False
) -> dict:
    import mcp_latent
    from mcp_latent.embedding.base import CachedEmbedder
    from mcp_latent.judge import fitted, words
    from mcp_latent.judge.neighbour_search import SharedProducts
    from mcp_latent.server.deferred import one_blas_thread
    from mcp_latent.service.api import LatentService
    from mcp_latent.service.verdict_memo import VerdictMemo
    from mcp_latent.settings import Settings
    from mcp_latent.store.sqlite_index import NamespaceIndexes

    one_blas_thread()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="handoff-spans-")))
    update = {"prefetch_verdicts": False}
    if write_first:  # as served before branch h3lat: the write (and the index insert) first, then the verdicts
        update |= {"handoff_write_threads": 0, "hnsw_add_in_background": False}
    settings = settings.model_copy(update={k: v for k, v in update.items() if k in Settings.model_fields})
    service = LatentService(settings)
    service.start()
    service.wait_ready(900)
    try:
        for name in PROFILES:
            service.live[name].fitted(900)
        owners = {
            "service": type(service),
            "embedder": CachedEmbedder,
            "store": type(service._store()),
            "indexes": NamespaceIndexes,
            "writes": _TimedWrites,
            "memo": VerdictMemo,
            "shared": SharedProducts,
            "fitted": fitted.FittedProfile,
            "words": words,
        }
        if hasattr(service, "writes"):  # time what the call waits for its write (`_TimedWrites.wait`)
            service.writes = _TimedWrites(service.writes)

        def handoff(text: str) -> dict:  # looked up per call: the wrapped methods below are the ones timed
            return service.handoff(text, evaluate=PROFILES)

        if mcp:
            from mcp import Client

            from mcp_latent.server import tools

            server = tools.build_server(service=service)
            owners |= {"client": Client, "server": type(server), "schema": tools}  # tools' own `compact_result`
            runner = _McpRunner(Client(server, mode="legacy"))
            handoff = runner.handoff
        # As in the bench: the namespace holds thousands of handoffs (its `embed` scenarios) and its HNSW index is
        # loaded (its `similar` scenario), so each write also adds the new row to the index.
        for start in range(0, stored, 64):
            service.embed([f"{PROPOSAL} stored {start + j}" for j in range(min(64, stored - start))])
        warm = 100
        for i in range(warm):
            handle = handoff(f"{PROPOSAL} warm {i}")["handle"]
            if index and i == 0:
                service.similar(handle=handle, k=5)
        service.verdicts.shared.wait(120)
        wall: dict[str, float] = collections.defaultdict(float)
        cpu: dict[str, float] = collections.defaultdict(float)
        for owner, attribute, name in STEPS:
            if owner in owners and hasattr(owners[owner], attribute):
                _wrap(owners[owner], attribute, name, wall, cpu)
        other = np.ones(max(evict_mib, 1) << 18, dtype=np.float32)
        for i in range(n):
            if evict_mib:
                other.sum()
            handoff(f"{PROPOSAL} rev {i}")
        if mcp:
            wall["result JSON (as stdio writes it)"], cpu["result JSON (as stdio writes it)"] = runner.json_seconds
            runner.close()

        def rows(spent: dict[str, float]) -> dict[str, float]:
            ms = {name: 1000 * spent.get(name, 0.0) / n for _, _, name in STEPS}
            ms["result JSON (as stdio writes it)"] = 1000 * spent.get("result JSON (as stdio writes it)", 0.0) / n
            verdicts = ms["verdicts (memo, shared product, judges)"]
            out = {}
            if mcp:
                out |= {
                    "SDK client call (in-memory transport)": ms["SDK client call (in-memory transport)"],
                    "  server call_tool": ms["server call_tool"],
                    # wall: what the server's tool adds around the service call; CPU: the event loop thread's
                    # (the service call runs on a worker thread)
                    "    MCP layer (validation, thread hop, content)": ms["server call_tool"]
                    - (ms["handoff"] if spent is wall else 0.0),
                    "      result content (structured + text JSON)": ms["result content (structured + text JSON)"],
                    "  client side and transport": ms["SDK client call (in-memory transport)"] - ms["server call_tool"],
                    "result JSON (as stdio writes it)": ms["result JSON (as stdio writes it)"],
                }
            return out | {
                "handoff (all)": ms["handoff"],
                "  embedding (ONNX)": ms["embedding (ONNX)"],
                "  fits": ms["fits"],
                "  verdicts (memo, shared product, judges)": verdicts,
                "    shared product": ms["shared product"],
                "    3 verdicts": ms["3 verdicts"],
                "      featurize the text (3x)": ms["featurize the text (3x)"],
                "      top-k of the shared similarities": ms["top-k of the shared similarities"],
                "    rest (memo)": verdicts - ms["shared product"] - ms["3 verdicts"],
                "  waiting for the write": ms["waiting for the write"],
                "  stats, stream, prefetch profiles": ms["stats, stream, prefetch profiles"],
                "  result dicts": ms["result dicts"],
                "  rest (checks, names, write when first, stats when in verdicts)": ms["handoff"]
                - ms["embedding (ONNX)"]
                - ms["fits"]
                - verdicts
                - ms["waiting for the write"]
                - ms["stats, stream, prefetch profiles"]
                - ms["result dicts"],
                "store write (in the call when first, else beside it)": ms["store write"],
                "  SQLite insert and commit": ms["store write"] - ms["hand to the index"],
                "  hand to the index (the insert itself when first)": ms["hand to the index"],
                "index catch-up (HNSW add; in the call when first)": ms["index catch-up (HNSW add)"],
            }

        package = str(Path(mcp_latent.__file__).parent)
        return {
            "package": package,
            "n": n,
            "evict_mib": evict_mib,
            "write_first": write_first,
            "stored": stored,
            "index_loaded": index,
            "mcp": mcp,
            "settings": {k: getattr(settings, k, None) for k in ("handoff_write_threads", "hnsw_add_in_background")},
            "wall_ms": rows(wall),
            "cpu_ms": rows(cpu),
        }
    finally:
        service.close()


class _McpRunner:
    """The SDK client over the in-memory transport, driven from this (synchronous) thread through an anyio portal."""

    def __init__(self, client):
        from anyio.from_thread import start_blocking_portal

        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client_cm = self._portal.wrap_async_context_manager(client)
        self._client = self._client_cm.__enter__()
        self.json_seconds = [0.0, 0.0]

    def handoff(self, text: str) -> dict:
        result = self._portal.call(self._client.call_tool, "handoff", {"text": text, "evaluate": PROFILES})
        assert not result.is_error, result.content[0].text
        start, start_cpu = time.perf_counter(), time.thread_time()
        result.model_dump_json(by_alias=True, exclude_none=True)
        self.json_seconds[0] += time.perf_counter() - start
        self.json_seconds[1] += time.thread_time() - start_cpu
        return result.structured_content

    def close(self) -> None:
        self._client_cm.__exit__(None, None, None)
        self._portal_cm.__exit__(None, None, None)


class _TimedWrites:
    """The service's `WriteBeside`, whose futures' `result` (the call waiting for its write) goes through `wait`,
    which `_wrap` times."""

    def __init__(self, writes):
        self._writes = writes

    def start(self, write):
        return _TimedFuture(self._writes.start(write))

    def close(self) -> None:
        self._writes.close()

    @staticmethod
    def wait(future, timeout=None):
        return future.result(timeout)


class _TimedFuture:
    def __init__(self, future):
        self._future = future

    def result(self, timeout=None):
        return _TimedWrites.wait(self._future, timeout)


def _wrap(owner, attribute: str, name: str, wall: dict[str, float], cpu: dict[str, float]) -> None:
    original = getattr(owner, attribute)

    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def timed_async(*args, **kwargs):
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return await original(*args, **kwargs)
            finally:
                wall[name] += time.perf_counter() - start
                cpu[name] += time.thread_time() - start_cpu

        setattr(owner, attribute, timed_async)
        return

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            wall[name] += time.perf_counter() - start
            cpu[name] += time.thread_time() - start_cpu

    static = isinstance(getattr(owner, "__dict__", {}).get(attribute), staticmethod)
    setattr(owner, attribute, staticmethod(timed) if static else timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="handoffs measured (after 100 warm-up calls)")
    parser.add_argument("--evict-mib", type=int, default=32, help="memory read between calls (0: none)")
    parser.add_argument("--write-first", action="store_true", help="as served before: write, then the verdicts")
    parser.add_argument("--mcp", action="store_true", help="through the SDK client and the server's tool")
    parser.add_argument("--stored", type=int, default=4000, help="texts stored by `embed` before measuring")
    parser.add_argument("--no-index", action="store_true", help="leave the namespace's HNSW index unloaded")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.n, args.evict_mib, args.write_first, args.stored, not args.no_index, args.mcp)
    print(f"{'ms per handoff + 3 verdicts':48s} {'wall':>7s} {'thread CPU':>10s}")
    for name, value in result["wall_ms"].items():
        print(f"{name:48s} {value:7.3f} {result['cpu_ms'][name]:10.3f}")
    print(result["package"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
