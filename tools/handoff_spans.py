#!/usr/bin/env python3
"""Where `handoff` with three verdicts spends its time beyond one embedding: the library call `tools/bench.py`'s
"handoff + 3 verdicts" makes (new texts, the shipped profiles risk, roi and category), in-process, split into steps,
each timed in wall time (`perf_counter`: the embedding runs on ONNX Runtime's own threads, which the calling
thread's CPU time does not see) and in CPU time of the calling thread (`thread_time`).

    .venv/bin/python tools/handoff_spans.py [--n 500] [--evict-mib 32] [--overlap-store] [--json out.json]

`--overlap-store` measures a variant not in the server: the store write runs on a helper thread while the call's
thread computes the verdicts (`overlapped_handoff` below), to see whether that overlap pays.

The real model and shipped profiles, one BLAS thread as served, verdict prefetch off (the profiles a handoff names
are judged in the call anyway). `--evict-mib` reads that much other memory before each call, as the server's other
calls do. Indented rows are parts of the row above; "rest" is what no named step covers.
"""

from __future__ import annotations

import argparse
import collections
import functools
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
# (owner, attribute, step): what is timed, wrapped in place for this process only.
STEPS = [
    ("service", "handoff", "handoff"),
    ("embedder", "embed", "embedding (ONNX)"),
    ("store", "add", "store write"),
    ("service", "_fits", "fits"),
    ("service", "_judge", "verdicts, memo, stats, stream"),
    ("shared", "similarities", "shared product"),
    ("fitted", "verdict", "3 verdicts"),
    ("words", "featurize_one", "featurize the text (3x)"),
    ("fitted", "neighbours", "top-k of the shared similarities"),
    ("service", "_shown", "result dicts"),
]


def overlapped_handoff(service_type, pool):
    """`LatentService.handoff` with the store write beside the verdicts (text and names checked as before; the
    verdicts are computed while a helper thread writes, and the call returns after both)."""
    from mcp_latent.service.checks import check_text

    def handoff(self, text, from_agent=None, namespace=None, parent=None, evaluate=None, meta=None, detail=False):
        text = check_text(text, self.settings)
        namespace = self._namespace(namespace)
        deadline = time.monotonic() + self.settings.profile_wait_seconds
        self.wait_ready(self.settings.profile_wait_seconds)
        names = self._named(evaluate)
        vector = self.embedder.embed([text])
        store = self._store()
        writing = pool.submit(store.add, namespace, vector, self._texts_to_store([text]), from_agent, parent, meta)
        fitted, pending = self._fits(names, deadline)
        shown = self._shown(self._judge(fitted, vector[0], text, detail), detail)
        record = writing.result()[0]
        return {"handle": record.handle, "verdicts": {name: shown.get(name) or pending[name] for name in names}}

    service_type.handoff = handoff


def measure(n: int, evict_mib: int, overlap: bool = False) -> dict:
    import mcp_latent
    from mcp_latent.embedding.base import CachedEmbedder
    from mcp_latent.judge import fitted, words
    from mcp_latent.judge.neighbour_search import SharedProducts
    from mcp_latent.server.deferred import one_blas_thread
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    one_blas_thread()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="handoff-spans-")))
    if "prefetch_verdicts" in Settings.model_fields:
        settings = settings.model_copy(update={"prefetch_verdicts": False})
    if overlap:
        from concurrent.futures import ThreadPoolExecutor

        overlapped_handoff(LatentService, ThreadPoolExecutor(1, thread_name_prefix="store-write"))
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
            "shared": SharedProducts,
            "fitted": fitted.FittedProfile,
            "words": words,
        }
        warm = 100
        for i in range(warm):
            service.handoff(f"{PROPOSAL} warm {i}", evaluate=PROFILES)
        service.verdicts.shared.wait(120)
        wall: dict[str, float] = collections.defaultdict(float)
        cpu: dict[str, float] = collections.defaultdict(float)
        for owner, attribute, name in STEPS:
            _wrap(owners[owner], attribute, name, wall, cpu)
        other = np.ones(max(evict_mib, 1) << 18, dtype=np.float32)
        for i in range(n):
            if evict_mib:
                other.sum()
            service.handoff(f"{PROPOSAL} rev {i}", evaluate=PROFILES)

        def rows(spent: dict[str, float]) -> dict[str, float]:
            ms = {name: 1000 * spent.get(name, 0.0) / n for _, _, name in STEPS}
            judge = ms["verdicts, memo, stats, stream"]
            return {
                "handoff (all)": ms["handoff"],
                "  embedding (ONNX)": ms["embedding (ONNX)"],
                "  store write": ms["store write"],
                "  fits": ms["fits"],
                "  verdicts, memo, stats, stream": judge,
                "    shared product": ms["shared product"],
                "    3 verdicts": ms["3 verdicts"],
                "      featurize the text (3x)": ms["featurize the text (3x)"],
                "      top-k of the shared similarities": ms["top-k of the shared similarities"],
                "    rest (memo, stats, stream)": judge - ms["shared product"] - ms["3 verdicts"],
                "  result dicts": ms["result dicts"],
                "  rest (checks, wait, names, prefetch hand-over)": ms["handoff"]
                - ms["embedding (ONNX)"]
                - ms["store write"]
                - ms["fits"]
                - judge
                - ms["result dicts"],
            }

        package = str(Path(mcp_latent.__file__).parent)
        return {
            "package": package,
            "n": n,
            "evict_mib": evict_mib,
            "overlap_store": overlap,
            "wall_ms": rows(wall),
            "cpu_ms": rows(cpu),
        }
    finally:
        service.close()


def _wrap(owner, attribute: str, name: str, wall: dict[str, float], cpu: dict[str, float]) -> None:
    original = getattr(owner, attribute)

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
    parser.add_argument("--overlap-store", action="store_true", help="the store write beside the verdicts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.n, args.evict_mib, args.overlap_store)
    print(f"{'ms per handoff + 3 verdicts':48s} {'wall':>7s} {'thread CPU':>10s}")
    for name, value in result["wall_ms"].items():
        print(f"{name:48s} {value:7.3f} {result['cpu_ms'][name]:10.3f}")
    print(result["package"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
