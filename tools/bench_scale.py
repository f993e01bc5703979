#!/usr/bin/env python3
"""Scale of the latent store: insert rate, memory, disk, search p50/p99 and recall@10 at 10k/100k/1M vectors.

    .venv/bin/python tools/bench_scale.py [--sizes 10000 100000 1000000] [--out bench-out/scale]

Vectors are real embeddings of the shared intent data (../shared/data), each copy perturbed (cosine about
0.9 to its source) and re-normalised: random vectors have no cluster structure and mislead HNSW.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.embedding.factory import load_embedder
from mcp_latent.judge.ensemble import exact_neighbours
from mcp_latent.settings import Settings
from mcp_latent.store.sqlite import SqliteStore

NOISE = 0.025  # per-dimension sigma: |noise| ~ 0.49 in 384 dims, cosine to the source ~ 0.9


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def base_vectors(shared: Path, cache: Path, count: int | None = None) -> np.ndarray:
    """Real embeddings of the shared intent data's texts (cached): the seeds every benchmark vector is derived
    from. `count`: only that many, drawn evenly (a sample keeps a run short)."""
    if cache.exists():
        return np.load(cache)
    texts = []
    for path in sorted(shared.glob("*/*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    if count is not None:
        texts = texts[:: max(1, len(texts) // count)][:count]
    settings = Settings()
    embedder = load_embedder(settings.model, "cpu", settings.effective_embed_threads, 128)
    vectors = np.concatenate([embedder.embed(texts[i : i + 512]) for i in range(0, len(texts), 512)])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def derived(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = base[np.arange(n) % len(base)] + rng.normal(scale=NOISE, size=(n, base.shape[1])).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def measure(n: int, base: np.ndarray, queries: int, ef: int) -> dict:
    vectors = derived(base, n, seed=n)
    data_dir = Path(tempfile.mkdtemp(prefix="latent-scale-"))
    rss_before = rss_mb()
    store = SqliteStore(data_dir, base.shape[1], "scale-bench", hnsw_ef_search=ef)
    started = time.perf_counter()
    for start in range(0, n, 5000):
        store.add("bench", vectors[start : start + 5000], [None] * len(vectors[start : start + 5000]))
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    store.similar("bench", vectors[0], 10)  # builds the index from the durable record
    build_s = time.perf_counter() - started
    probe = derived(base, queries, seed=7)  # fresh perturbations: not stored vectors
    latencies, found = [], []
    entry = store._indexes.entries["bench"]
    for q in probe:
        t = time.perf_counter()
        labels, _ = entry.index.search(q, 10)
        latencies.append(time.perf_counter() - t)
        found.append(labels)
    exact_ids, _ = exact_neighbours(probe, vectors, 10)
    seqs = np.array(sorted(entry.index.labels))  # seq labels are 1..n in insertion order
    recall = np.mean([len(set(f) & set(seqs[e])) / 10 for f, e in zip(found, exact_ids, strict=True)])
    t = time.perf_counter()
    for q in probe[:100]:
        store.similar("bench", q, 10)
    similar_ms = (time.perf_counter() - t) / 100 * 1000
    rss_after = rss_mb()
    store.close()
    disk = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
    shutil.rmtree(data_dir)
    lat = np.array(latencies) * 1000
    return {
        "vectors": n,
        "insert_per_s": n / insert_s,
        "index_build_s": build_s,
        "search_p50_ms": float(np.percentile(lat, 50)),
        "search_p99_ms": float(np.percentile(lat, 99)),
        "similar_tool_path_ms": similar_ms,
        "recall_at_10": float(recall),
        "memory_mb": rss_after - rss_before,
        "disk_mb": disk / 2**20,
        "ef_search": ef,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", type=int, default=Settings().hnsw_ef_search)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "scale")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = base_vectors(args.shared, args.out / "base_vectors.npy")
    rows = [measure(n, base, args.queries, args.ef) for n in args.sizes]
    lines = [
        "| vectors | insert/s | index build s | search p50 ms | p99 ms | similar() ms | recall@10 | memory MB | disk MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['vectors']:,} | {r['insert_per_s']:,.0f} | {r['index_build_s']:.1f} | {r['search_p50_ms']:.3f} | "
            f"{r['search_p99_ms']:.3f} | {r['similar_tool_path_ms']:.3f} | {r['recall_at_10']:.3f} | "
            f"{r['memory_mb']:,.0f} | {r['disk_mb']:,.0f} |"
        )
    table = (
        "\n".join(lines)
        + f"\n\nHNSW M={Settings().hnsw_m}, ef_construction={Settings().hnsw_ef_construction}, ef_search={args.ef}."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(rows, indent=2))
    (args.out / "scale.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
