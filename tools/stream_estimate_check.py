#!/usr/bin/env python3
"""Why the stream rule's threshold misses, on recorded stream runs (tools/learning_curve.py's items.jsonl): at each
checkpoint, the accuracy the rule expected of the verdicts it would answer without a label, against what they were
(the recorded gold: hindsight), and the sharpness the rule fitted on the escalated (taught) verdicts against the one
that fits the answered top in hindsight.

    .venv/bin/python tools/stream_estimate_check.py tools/results/stream_main_20261206/*_s?

At each checkpoint k the rule runs on what the server held at item k, as tools/stream_rule_replay.py replays it:
the last `--window` in-scope verdicts (p; right or wrong for the escalated ones, which the protocol taught) and the
escalated verdicts' checks. Columns: t, the rule's threshold; s, its sharpness (`judge.stream.stream_sharpness`);
s top, the sharpness that fits the unlabelled verdicts at p >= t in hindsight (the answered ones nobody taught);
n, how many of those; expected and were, their accuracy as the rule counted it and as it was; error, the
difference (positive: the rule expected more than there was, too bold; negative: too cautious); s checks >= 0.9,
the sharpness of the escalated verdicts at p >= 0.9 alone (the band nearest the answered top); and the last row per
run the mean and root mean square of the errors. docs/learning.md "Why the stream rule misses".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mcp_latent.judge.stream import (  # noqa: E402
    SHARPNESS_GRID,
    sharpened,
    sharpness_log_likelihood,
    stream_sharpness,
    stream_threshold,
)
from mcp_latent.judge.stream_rule import MIN_SHARPNESS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_rule_replay import recorded_runs, runs_arguments  # noqa: E402

TARGET = 0.975  # tools/learning_curve.py's profile target


def best_sharpness(p: np.ndarray, right: np.ndarray) -> float:
    """The maximum-likelihood scale of p's log-odds (no interval, no cap but the grid's)."""
    if not len(p):
        return float("nan")
    return float(SHARPNESS_GRID[int(np.argmax(sharpness_log_likelihood(p, right)))])


def check(items: list[dict], window: int, every: int) -> list[dict]:
    p = np.array([i["p"] for i in items])
    escalated = np.array([i["label"] is None for i in items])
    out = np.array([i["reason"] == "out_of_scope" for i in items])
    right = np.array([i["best"] == i["gold"] for i in items], dtype=np.float64)
    rows = []
    for k in range(every, len(items) + 1, every):
        recent = np.arange(max(0, k - 4 * window), k)[~out[max(0, k - 4 * window) : k]][-window:]
        checks = np.nonzero(escalated[:k] & ~out[:k])[0][-window:]
        s = stream_sharpness(p[checks], right[checks])
        if s is None or s < MIN_SHARPNESS:
            continue
        known = np.where(escalated[recent], right[recent], np.nan)
        t = stream_threshold(p[recent], TARGET, known, s)
        if t is None:
            continue
        unlabelled = recent[(p[recent] >= t) & np.isnan(known)]
        high = checks[p[checks] >= 0.9][-500:]
        expected, were = float(sharpened(p[unlabelled], s).mean()), float(right[unlabelled].mean())
        rows.append(
            {
                "k": k,
                "t": t,
                "s": s,
                "s_top": best_sharpness(p[unlabelled], right[unlabelled]),
                "n": len(unlabelled),
                "expected": expected,
                "were": were,
                "error": expected - were,
                "s_checks_09": best_sharpness(p[high], right[high]),
            }
        )
    return rows


def main() -> int:
    parser = runs_arguments(__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=500, help="checkpoint every this many items")
    args = parser.parse_args()
    print("| run | k | t | s | s top (hindsight) | n | expected | were | error | s checks >= 0.9 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for folder, items in recorded_runs(args.runs):
        rows = check(items, args.window, args.every)
        for r in rows:
            print(
                f"| {Path(folder).name} | {r['k']} | {r['t']:.3f} | {r['s']:.2f} | {r['s_top']:.2f} | {r['n']} | "
                f"{r['expected']:.1%} | {r['were']:.1%} | {r['error']:+.1%} | {r['s_checks_09']:.2f} |"
            )
        errors = np.array([r["error"] for r in rows if r["k"] >= 1500])
        if len(errors):
            print(
                f"| {Path(folder).name} | from 1500: mean {errors.mean():+.1%}, rms {np.sqrt((errors**2).mean()):.1%} "
                "| | | | | | | | |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
