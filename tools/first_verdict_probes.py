#!/usr/bin/env python3
"""Probes behind docs/benchmarks.md's "Where a first verdict's time goes": what was measured and not adopted.

    .venv/bin/python tools/first_verdict_probes.py cold     # featurizing and the neighbour product, warm vs cold caches
    .venv/bin/python tools/first_verdict_probes.py union    # one product over a call's profiles' exemplars
    .venv/bin/python tools/first_verdict_probes.py overlap  # the neighbour product on a second thread
    .venv/bin/python tools/first_verdict_probes.py bounds   # rows an exact bound must still score: PCA vs int8

`cold`: CPU time of the calling thread per call, with the CPU's caches warm (the same work back to back) and after
reading 32 MiB of other memory before each call, as a server's other calls do between two first verdicts.
`union`: the three shipped profiles' exemplars deduplicated into one matrix: the product's cost against three, and
whether it gives the same similarities (BLAS sums a row in another order inside another matrix) and verdicts, on
the held-out proposals. `bounds`: how many exemplar rows an exact prefilter leaves to score, on the held-out
proposals (k = 10): the exemplars projected on their top m principal directions with the Cauchy-Schwarz bound on
the residual (upper bound = projected part + |query residual| |row residual|), against the int8 copy's bound
(`judge/quantized_rows.py`). `overlap`: `evaluate` by handle with the product started on a helper thread (numpy releases
the GIL in it) while the calling thread reads the words; wall time per call, alternated with the served path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PROPOSAL = (
    "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test to hit the "
    "quarter deadline; rollback is manual and takes about two hours."
)
OTHER = np.ones(8 << 20, dtype=np.float32)  # 32 MiB read between calls in the cold runs


def per_call_us(fn, items, cold: bool) -> float:
    spent = 0.0
    for item in items:
        if cold:
            OTHER.sum()
        start = time.thread_time()
        fn(item)
        spent += time.thread_time() - start
    return 1e6 * spent / len(items)


def service():
    from mcp_latent.server.deferred import one_blas_thread
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    one_blas_thread()
    served = LatentService(Settings(data_dir=Path(tempfile.mkdtemp(prefix="probes-"))))
    served.start()
    served.wait_ready(900)
    return served


def cold() -> None:
    from mcp_latent.judge import words
    from mcp_latent.judge.ensemble import exact_neighbours

    served = service()
    pool = served.live["risk"].fitted(900).vectors
    texts = [f"{PROPOSAL} case {i}" for i in range(4100)]
    queries = served.embedder.embed(texts[:2000])[:, None, :]
    served.close()
    for text in texts[:100]:
        words.featurize_one(text)
    for run in range(2):
        base = 100 + 2000 * run
        feat = [per_call_us(words.featurize_one, texts[base + k * 500 : base + (k + 1) * 500], k % 2) for k in range(4)]
        near = [
            per_call_us(lambda q: exact_neighbours(q, pool, 10), queries[k * 500 : (k + 1) * 500], k % 2)
            for k in (0, 1)
        ]
        print(f"featurize one text: warm {feat[0]:.0f} / {feat[2]:.0f} us, cold {feat[1]:.0f} / {feat[3]:.0f} us")
        print(f"neighbours over {pool.shape[0]} exemplars (4 MB): warm {near[0]:.0f} us, cold {near[1]:.0f} us")


def union() -> None:
    from mcp_latent.judge import fitted

    served = service()
    profiles = {name: served.live[name].fitted(900) for name in ("risk", "roi", "category")}
    rows: dict[bytes, int] = {}
    distinct, where = [], {}
    for name, snapshot in profiles.items():
        ids = []
        for vector in snapshot.vectors:
            if vector.tobytes() not in rows:
                rows[vector.tobytes()] = len(distinct)
                distinct.append(vector)
            ids.append(rows[vector.tobytes()])
        where[name] = np.array(ids)
    stacked = np.ascontiguousarray(np.array(distinct))
    path = ROOT / "tools" / "data" / "proposals" / "heldout_texts_only.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    vectors = served.embedder.embed(texts)
    total = sum(s.n for s in profiles.values())
    print(f"exemplars: {total} in three profiles, {len(stacked)} distinct")
    three = per_call_us(lambda q: [q @ s.vectors.T for s in profiles.values()], vectors[:300, None, :], True)
    one = per_call_us(lambda q: q @ stacked.T, vectors[300:, None, :][:300], True)
    print(f"cold CPU per call: three products {three:.0f} us, one product over the distinct rows {one:.0f} us")
    differ = sum(
        not np.array_equal((q @ s.vectors.T)[0], (q @ stacked.T)[0][where[n]])
        for q in vectors[:, None, :]
        for n, s in profiles.items()
    )
    print(f"similarity rows differing in some bit: {differ} of {3 * len(vectors)}")
    current = {}
    served_neighbours = fitted.FittedProfile.neighbours

    def from_stacked(self, queries, k):
        row = (np.atleast_2d(queries) @ stacked.T)[0][where[current["name"]]]
        top = np.argpartition(-row, k - 1)[:k]
        order = np.argsort(-row[top])
        return top[order][None, :], row[top][order][None, :]

    labels = ps = 0
    largest = 0.0
    for name, snapshot in profiles.items():
        current["name"] = name
        for vector, text in zip(vectors, texts, strict=True):
            fitted.FittedProfile.neighbours = served_neighbours
            before = snapshot.verdict(vector, text)
            fitted.FittedProfile.neighbours = from_stacked
            after = snapshot.verdict(vector, text)
            labels += (before.label, before.reason) != (after.label, after.reason)
            ps += before.p != after.p
            largest = max(largest, abs(before.p - after.p))
    fitted.FittedProfile.neighbours = served_neighbours
    print(f"verdicts: {3 * len(texts)}; label or reason changed {labels}; p changed {ps} (largest {largest:.1e})")
    served.close()


def bounds() -> None:
    from mcp_latent.judge.quantized_rows import QuantizedRows

    served = service()
    path = ROOT / "tools" / "data" / "proposals" / "heldout_texts_only.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = served.embedder.embed(texts)
    for name in ("risk", "roi", "category"):
        pool = served.live[name].fitted(900).vectors
        kth = -np.sort(-(queries @ pool.T), axis=1)[:, 9]  # the 10th best similarity of each query
        _, _, basis = np.linalg.svd(pool.astype(np.float64), full_matrices=False)
        for m in (32, 64, 96):
            projected, query_part = pool @ basis[:m].T, queries @ basis[:m].T
            residual = np.sqrt(np.maximum((pool * pool).sum(1) - (projected * projected).sum(1), 0))
            query_residual = np.sqrt(np.maximum((queries * queries).sum(1) - (query_part * query_part).sum(1), 0))
            upper = query_part @ projected.T + query_residual[:, None] * residual[None, :]
            kept = (upper >= kth[:, None]).sum(1)
            print(f"{name}: PCA {m} dims + residual bound: rows to score p50 {np.median(kept):.0f}, max {kept.max()}")
        quantized = QuantizedRows(pool)
        kept = [len(quantized._session.run(None, {"q": q[None, :], "k": np.array([10])})[0][0]) for q in queries]
        print(f"{name}: int8 bound: rows to score p50 {np.median(kept):.0f}, max {max(kept)} of {len(pool)}")
    served.close()


def overlap() -> None:
    from mcp_latent.judge import fitted

    served = service()
    served.live["risk"].fitted(900)
    handles: list[str] = []
    while len(handles) < 1200:
        handles += served.embed([f"{PROPOSAL} case {len(handles) + j}" for j in range(50)])["handles"]
    helper = ThreadPoolExecutor(1)
    plain_judge = fitted.FittedProfile.judge
    plain_neighbours = fitted.FittedProfile.neighbours

    def judge_overlapped(self, vectors, neighbours=0, texts=None):
        started = helper.submit(plain_neighbours, self, np.atleast_2d(vectors), max(neighbours, 10))
        if texts is not None and self.words is not None:
            self.words.read(texts)  # remembered (featurize_one): the judge below reads it again for free
        fitted.FittedProfile.neighbours = lambda *_: started.result()
        try:
            return plain_judge(self, vectors, neighbours, texts)
        finally:
            fitted.FittedProfile.neighbours = plain_neighbours

    for k in range(8):
        fitted.FittedProfile.judge = judge_overlapped if k % 2 else plain_judge
        wall = []
        for handle in handles[k * 150 : (k + 1) * 150]:
            OTHER.sum()
            start = time.perf_counter()
            served.evaluate(handle, profiles=["risk"])
            wall.append(time.perf_counter() - start)
        label = "product on a helper thread" if k % 2 else "served path"
        print(f"{label}: wall p50 {1000 * statistics.median(wall):.3f} ms")
    fitted.FittedProfile.judge = plain_judge
    served.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["cold", "union", "overlap", "bounds"])
    args = parser.parse_args()
    {"cold": cold, "union": union, "overlap": overlap, "bounds": bounds}[args.probe]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
