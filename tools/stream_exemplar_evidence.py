#!/usr/bin/env python3
"""The calibration of a recorded stream run's exemplars under the server's own cross-validation, at the top: how
sure the recalibration's out-of-fold verdicts at p >= 0.9 were, as a scale of p's log-odds (the sharpness), at
item k of a tools/learning_curve.py run. The stream rule cannot see the answered top's calibration in the taught
(escalated) verdicts; this measures whether the exemplars' evidence, which every recalibration already computes,
does (docs/learning.md "Why the stream rule misses").

    .venv/bin/python tools/stream_exemplar_evidence.py tools/results/stream_main_20261206/hwu64_s0 --at 2000

Rebuilds the exemplars the server held at item k (the 5-per-label seed and every escalated item before k, taught its
gold label, in the protocol's stream order), embeds them with the configured model and runs `fit_calibration`
(1.5-6 minutes per fit on a loaded 2-core machine). Assumes learning_curve.py's defaults (5 seeds per label, 3,000
items, no held-out labels) and its data set beside the run's name: $STREAM_DATA/<set>/<set>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
import learning_curve  # noqa: E402

from mcp_latent.embedding.factory import load_configured_embedder  # noqa: E402
from mcp_latent.judge.selection import fit_calibration  # noqa: E402
from mcp_latent.judge.stream import SHARPNESS_GRID, sharpness_log_likelihood  # noqa: E402
from mcp_latent.profiles.spec import ProfileSpec  # noqa: E402
from mcp_latent.settings import Settings  # noqa: E402


def sharpness(p: np.ndarray, right: np.ndarray) -> float:
    """The maximum-likelihood scale of p's log-odds."""
    return float(SHARPNESS_GRID[int(np.argmax(sharpness_log_likelihood(p, right)))])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="folders <set>_s<seed> with a learning_curve.py items.jsonl")
    parser.add_argument("--at", type=int, default=2000, help="the stream item whose exemplars are cross-validated")
    parser.add_argument("--data", default=os.environ.get("STREAM_DATA", str(ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    embedder = load_configured_embedder(Settings())
    print("| run | item | family | exemplars | out-of-fold p >= 0.9: n / right / mean p / sharpness |")
    print("| --- | ---: | --- | ---: | --- |")
    for folder in args.runs:
        name = Path(folder).name
        data_set, seed = name.rsplit("_s", 1)
        rows = learning_curve.read_rows(Path(args.data) / data_set / f"{data_set}.jsonl")
        train = [r for r in rows if r.get("split") == "train"]
        seeds, stream = learning_curve.seed_and_stream(train, set(), 5, 3000, int(seed))
        items = [json.loads(line) for line in (Path(folder) / "items.jsonl").read_text().splitlines()]
        if any(item["gold"] != row["label"] for item, row in zip(items, stream, strict=False)):
            print(f"{folder}: its items are not this protocol's stream, skipped", file=sys.stderr)
            continue
        labels = sorted(seeds)
        index = {label: i for i, label in enumerate(labels)}
        taught = [i for i in range(min(args.at, len(items))) if items[i]["label"] is None and items[i]["gold"]]
        texts = [t for label in labels for t in seeds[label]] + [stream[i]["text"] for i in taught]
        y = np.array(
            [index[label] for label in labels for _ in seeds[label]] + [index[stream[i]["label"]] for i in taught]
        )
        spec = ProfileSpec.model_validate(
            {
                "name": "learner",
                "description": "learning-curve exemplars",
                "target_accuracy": 0.975,
                "labels": [{"name": label, "examples": seeds[label]} for label in labels],
            }
        )
        calibration = fit_calibration(embedder.embed(texts), y, len(labels), spec, texts)
        family = next(f for f in calibration.evidence.families if f.name == calibration.family)
        top = family.p >= 0.9
        p, right = family.p[top], family.correct[top].astype(np.float64)
        print(
            f"| {name} | {args.at} | {calibration.family} | {len(y)} | "
            f"{len(p)} / {right.mean():.1%} / {p.mean():.1%} / {sharpness(p, right):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
