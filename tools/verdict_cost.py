#!/usr/bin/env python3
"""What a verdict costs in-process, in CPU time of the calling thread (`time.thread_time`): robust to other work on
a shared machine, where wall times measure the share of the cores a process won. The real model and the shipped
profiles, through `LatentService` (what the MCP tools call), one BLAS thread as the server runs.

    .venv/bin/python tools/verdict_cost.py [--texts tools/data/proposals/heldout_texts_only.jsonl] [--n 300]

Measures: one profile's verdict on a text it has not judged (each shipped profile), `evaluate` by handle for a
handle no profile has judged yet (1 and 3 profiles) and for the same handles again, and `similar` by handle (the
same store read, without a verdict). Means in ms. To compare with an older commit, run this
script from this checkout with that commit's package first on the path:

    git archive <commit> | tar -x -C /tmp/base && PYTHONPATH=/tmp/base .venv/bin/python tools/verdict_cost.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ["risk", "roi", "category"]


def cpu_ms(fn: Callable, items: Iterable) -> float:
    """Mean CPU milliseconds of the calling thread per call."""
    spent = []
    for item in items:
        start = time.thread_time()
        fn(item)
        spent.append(time.thread_time() - start)
    return 1000 * statistics.mean(spent)


def measure(texts: list[str]) -> dict:
    import mcp_latent
    from mcp_latent.server.deferred import one_blas_thread
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    one_blas_thread()
    service = LatentService(Settings(data_dir=Path(tempfile.mkdtemp(prefix="verdict-cost-"))))
    service.start()
    service.wait_ready(900)
    try:
        snapshots = {name: service.live[name].fitted(900) for name in PROFILES}
        half = len(texts) // 2
        handles = [h for part in (texts[:half], texts[half:]) for h in service.embed(part)["handles"]]
        vectors = service.embedder.embed(texts)
        out: dict = {"package": str(Path(mcp_latent.__file__).parent), "texts": len(texts)}
        for name, snapshot in snapshots.items():
            out[f"verdict {name}, new text"] = cpu_ms(
                lambda i, s=snapshot: s.verdict(vectors[i], texts[i]), range(len(texts))
            )
        one, three = handles[:half], handles[half:]
        out["evaluate handle, first verdict, 1 profile"] = cpu_ms(lambda h: service.evaluate(h, profiles=["risk"]), one)
        out["evaluate handle, judged before, 1 profile"] = cpu_ms(lambda h: service.evaluate(h, profiles=["risk"]), one)
        out["evaluate handle, first verdict, 3 profiles"] = cpu_ms(
            lambda h: service.evaluate(h, profiles=PROFILES), three
        )
        out["evaluate handle, judged before, 3 profiles"] = cpu_ms(
            lambda h: service.evaluate(h, profiles=PROFILES), three
        )
        out["similar k=5 by handle"] = cpu_ms(lambda h: service.similar(h, k=5), handles)
        return out
    finally:
        service.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--texts", type=Path, default=ROOT / "tools" / "data" / "proposals" / "heldout_texts_only.jsonl"
    )
    parser.add_argument("--n", type=int, default=300, help="texts measured (each judged as new once)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [row["text"] for row in rows][: args.n]
    result = measure(texts)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
