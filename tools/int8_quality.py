#!/usr/bin/env python3
"""Does int8 cost quality? BANKING77 and HWU64 closed-set accuracy, fp32 ONNX against int8 ONNX vectors, through the
harness's own decision code (profile_builder -> FittedProfile -> quality.metrics); writes a markdown table.

    .venv/bin/python tools/int8_quality.py [--out int8-out] [--data ../shared/data] [--sets banking77,hwu64]

Both variants are fitted with the same calibration (head C=10, kNN weight 0.3: the middle of the fitter's
grids), so the only difference is the vectors; the fitter's cross-validated search would pick per variant and
cost ~1 minute per profile on a quiet 2-core machine. Vectors are cached in --out (npz), so a rerun only fits.
The torch path gives the fp32 ONNX path's vectors to cosine >= 0.9999 (tests/test_onnx_embedder.py), so fp32
stands for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.embedding.factory import load_embedder
from mcp_latent.eval.quality import metrics
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.selection import Calibration
from mcp_latent.profiles.builder import collect_examples, read_rows
from mcp_latent.profiles.spec import ProfileSpec

SAME_CALIBRATION = Calibration(10.0, 0.3, 1.0, 0.5, -1.0, None, None, None)
VARIANTS = {"fp32": False, "int8": True}


def vectors_for(texts: list[str], variant: str, embedder, cache: Path) -> np.ndarray:
    """Embed once per variant and data set; later runs read the npz."""
    if cache.exists():
        with np.load(cache) as data:
            if data["texts"].tolist() == texts:
                return data["vectors"]
    from tqdm import tqdm

    out = np.concatenate(
        [
            embedder.embed(texts[i : i + 256])
            for i in tqdm(range(0, len(texts), 256), desc=f"{cache.stem}", unit="batch")
        ]
    )
    np.savez(cache, texts=np.array(texts), vectors=out)
    return out


def evaluate(dataset: str, data: Path, out: Path, embedders: dict) -> dict:
    rows = read_rows(data / dataset / f"{dataset}.jsonl")
    examples, _ = collect_examples(rows, "text", "label", "split", "train", None)
    spec = ProfileSpec.model_validate(
        {"name": dataset, "labels": [{"name": label, "examples": texts} for label, texts in examples.items()]}
    )
    train_texts = [t for label in spec.labels for t in label.examples]
    y = np.array([i for i, label in enumerate(spec.labels) for _ in label.examples])
    test = [r for r in rows if str(r.get("split")) == "test"]
    test_texts, test_labels = [str(r["text"]) for r in test], [str(r["label"]) for r in test]
    result = {}
    for variant, embedder in embedders.items():
        train_vectors = vectors_for(train_texts, variant, embedder, out / f"{dataset}-train-{variant}.npz")
        test_vectors = vectors_for(test_texts, variant, embedder, out / f"{dataset}-test-{variant}.npz")
        started = time.perf_counter()
        fitted = FittedProfile.fit(spec, train_vectors, train_texts, y, reuse_calibration=SAME_CALIBRATION)
        m = metrics(fitted, test_vectors, test_labels, with_baselines=True)
        result[variant] = {
            "model": embedder.model_id,
            "accuracy": m["accuracy"],
            "baselines": m["baselines"],
            "fit_s": time.perf_counter() - started,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "int8-out")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", default="banking77,hwu64")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    embedders = {v: load_embedder("", "cpu", 2, 64, backend="onnx", int8=int8) for v, int8 in VARIANTS.items()}
    results = {d: evaluate(d, args.data, args.out, embedders) for d in args.sets.split(",")}
    (args.out / "int8_quality.json").write_text(json.dumps(results, indent=1))
    lines = [
        "| data set (test split) | decision | fp32 | int8 | int8 - fp32 (points) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for d, r in results.items():
        rows = [("server ensemble (C=10, kNN 0.3)", r["fp32"]["accuracy"], r["int8"]["accuracy"])]
        rows += [(name, r["fp32"]["baselines"][name], r["int8"]["baselines"][name]) for name in r["fp32"]["baselines"]]
        for name, a, b in rows:
            lines.append(f"| {d} | {name} | {100 * a:.2f} | {100 * b:.2f} | {100 * (b - a):+.2f} |")
    table = "\n".join(lines)
    (args.out / "int8_quality.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
