#!/usr/bin/env python3
"""Where a first verdict's CPU goes: `evaluate` by handle with one profile, for handles no profile has judged (as
`tools/bench.py`'s "evaluate handle, first verdict": texts stored by `embed`), split into the steps of the server's
path, each timed in CPU time of the calling thread (`time.thread_time`, robust to other work on a shared machine).
The real model and shipped profiles, one BLAS thread as served; no server process (the SDK's parsing, validation and
the worker-thread hop are the same for a verdict remembered by the memo, so they are not in the gap it measures).

    .venv/bin/python tools/verdict_spans.py [--n 1000] [--profile risk] [--evict-mib 32] [--float32] [--no-shared]

`--profile risk,roi,category` judges each handle with several profiles in one `evaluate` (as `handoff` + 3 does).
`--float32`: one query's neighbours from the float32 product, not the int8 copy's bound (`judge/quantized_rows.py`);
`--no-shared`: several profiles' neighbours from their own products, not one shared one (`shared_product_sets=0`).

Indented rows are parts of the row above them (what is not wrapped by name is the difference: e.g. the words
expert's log-probabilities, read inside `judge` itself). `--evict-mib` reads that much other memory before each call, as the
server's other calls do between two first verdicts (0: none; the exemplars then stay in the CPU's caches). To
compare with another commit, run it with that commit's package first on the path (see tools/verdict_cost.py).
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
# (object path, attribute, step name, parent step): what is timed; wrapped in place for this process only.
STEPS = [
    ("service", "evaluate", "evaluate", None),
    ("store", "get", "store read by handle", "evaluate"),
    ("service", "_judge", "verdicts, memo, stats, stream", "evaluate"),
    ("fitted", "verdict", "verdict", "verdicts, memo, stats, stream"),
    ("fitted", "judge", "judge", "verdict"),
    ("fitted", "neighbours", "exact neighbours", "judge"),
    ("words", "featurize_one", "featurize the text", "judge"),
    ("wordsmodel", "read", "tf-idf reading", "judge"),
    ("fitted", "probabilities", "head, kNN, words expert", "judge"),
    ("module", "decide", "decide", "judge"),
    ("module", "gated", "scope gate", "judge"),
    ("fitted", "_recall", "memory", "judge"),
]


def measure(n: int, profile: str, evict_mib: int, float32: bool = False, shared: bool = True) -> dict:
    import mcp_latent
    from mcp_latent.judge import fitted, words
    from mcp_latent.server.deferred import one_blas_thread
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    one_blas_thread()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="verdict-spans-")))
    if "prefetch_verdicts" in Settings.model_fields:  # the first verdicts measured are computed, not prefetched
        settings = settings.model_copy(update={"prefetch_verdicts": False})
    if not shared and "shared_product_sets" in Settings.model_fields:
        settings = settings.model_copy(update={"shared_product_sets": 0})
    profiles = profile.split(",")
    service = LatentService(settings)
    service.start()
    service.wait_ready(900)
    try:
        for name in profiles:
            snapshot = service.live[name].fitted(900)
            rows = snapshot._rows
            if hasattr(rows, "quantized"):  # a commit with the int8 copy: built before measuring, or switched off
                if float32:
                    type(rows).quantized = lambda self, n: None
                else:
                    rows.start_quantizing(snapshot.n)
                    rows.wait_quantized(120)
        warm = 100
        handles: list[str] = []
        while len(handles) < n + warm:
            texts = [f"{PROPOSAL} case {len(handles) + j}" for j in range(50)]
            handles += service.embed(texts)["handles"]
        owners = {
            "service": type(service),
            "store": type(service._store()),
            "fitted": fitted.FittedProfile,
            "wordsmodel": words.WordsModel,
            "words": words,
            "module": fitted,
        }
        spent: dict[str, float] = collections.defaultdict(float)
        for owner, attribute, name, _ in STEPS:
            _wrap(owners[owner], attribute, name, spent)
        other = np.ones(max(evict_mib, 1) << 18, dtype=np.float32)  # MiB of float32
        for handle in handles[:warm]:
            service.evaluate(handle, profiles=profiles)
        shared_products = getattr(service.verdicts, "shared", None)
        if shared_products is not None:
            shared_products.wait(120)
        spent.clear()
        for handle in handles[warm:]:
            if evict_mib:
                other.sum()
            service.evaluate(handle, profiles=profiles)
        ms = {name: 1000 * spent.get(name, 0.0) / n for _, _, name, _ in STEPS}
        judged = ["exact neighbours", "tf-idf reading", "head, kNN, words expert", "decide", "scope gate", "memory"]
        rows = {
            "evaluate (all)": ms["evaluate"],
            "  store read by handle": ms["store read by handle"],
            "  memo key, stats, stream record": ms["verdicts, memo, stats, stream"] - ms["verdict"],
            "  names, fits, result dict": ms["evaluate"]
            - ms["store read by handle"]
            - ms["verdicts, memo, stats, stream"],
            "  verdict (all)": ms["verdict"],
            "    exact neighbours": ms["exact neighbours"],
            "    featurize the text": ms["featurize the text"],
            "    tf-idf weighting": ms["tf-idf reading"] - ms["featurize the text"],
            "    words expert log-probs, rest of judge": ms["judge"] - sum(ms[name] for name in judged),
            "    head, kNN votes, ensemble": ms["head, kNN, words expert"],
            "    decide": ms["decide"],
            "    scope gate (its words included)": ms["scope gate"],
            "    memory": ms["memory"],
            "    building the Verdict": ms["verdict"] - ms["judge"],
        }
        package = str(Path(mcp_latent.__file__).parent)
        return {"package": package, "profile": profile, "n": n, "float32": float32, "shared": shared, "ms": rows}
    finally:
        service.close()


def _wrap(owner, attribute: str, name: str, spent: dict[str, float]) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] += time.thread_time() - start

    setattr(owner, attribute, timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="first verdicts measured (after 100 warm-up calls)")
    parser.add_argument("--profile", default="risk", help="a profile, or several separated by commas")
    parser.add_argument("--evict-mib", type=int, default=32, help="memory read between calls (0: none)")
    parser.add_argument("--float32", action="store_true", help="one query's neighbours without the int8 copy")
    parser.add_argument("--no-shared", action="store_true", help="several profiles without one shared product")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.n, args.profile, args.evict_mib, args.float32, not args.no_shared)
    for name, value in result["ms"].items():
        print(f"{name:36s} {value:7.3f} ms")
    print(result["package"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
