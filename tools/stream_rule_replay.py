#!/usr/bin/env python3
"""The stream threshold rule replayed on recorded stream runs (tools/learning_curve.py's items.jsonl): what the
last third would have escalated, and at what answered agreement, had the threshold been the current rule's
(`judge.stream`'s threshold on p, lowered per label where `judge.stream_rank`'s ranking by p and the best label's
exemplars shows the label more reliable), the rule of 6 Dec (by p alone), the threshold cut on that ranking instead
(4f69b64, not adopted) or the rule before 6 Dec (sharpness at most 1, fitted on every labelled verdict of the window).

    .venv/bin/python tools/stream_rule_replay.py tools/results/stream_after/*/

Every 25 items from the 200th (as `STREAM_RESTATE_EVERY` restates it) the rule runs on the evidence the server
held then: the last `--window` in-scope verdicts (p; whether the best label was right for the escalated ones,
which the protocol taught) and the escalated verdicts' checks. A last-third item counts as answered when its
recorded p is at or above the threshold of that moment (before the first threshold: as recorded).

Not counterfactual: a lower threshold would also have taught fewer texts, so later verdicts would differ (an
offline replay through the server's LiveProfile, tools/encoder_tuning_study.py --arms frozen, measures that). It
ranks rules on the evidence of real runs in seconds, and ranked them as the full replays did on seed 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mcp_latent.judge.stream import sharpness_log_likelihood, stream_sharpness, stream_threshold  # noqa: E402
from mcp_latent.judge.stream_rank import fit_ranking  # noqa: E402
from mcp_latent.judge.stream_rule import MIN_SHARPNESS, MIN_STREAM_CHECKS, STREAM_RESTATE_EVERY  # noqa: E402

TARGET = 0.975  # tools/learning_curve.py's profile target
OLD_GRID = np.linspace(MIN_SHARPNESS / 2, 1.0, 76)


def sharpness_before(p: np.ndarray, right: np.ndarray) -> float | None:
    """The rule before 6 Dec: at most 1, fitted on every check of the window."""
    if len(p) < MIN_STREAM_CHECKS:
        return None
    return float(OLD_GRID[int(np.argmax(sharpness_log_likelihood(p, right, OLD_GRID)))])


def replay(items: list[dict], sharpness, window: int, ranked: str | None = None) -> tuple[float, float]:
    """(escalated share, answered agreement) of the last third under the rule with this sharpness function;
    `ranked`, the ranking by p and the best label's exemplars then (`stream_rank`, fitted as `StreamRecord` does):
    "lowered" (the rule now): the stream's threshold on p, lowered per label where the ranking shows it more
    reliable (`Ranking.lowered`); "cut" (4f69b64, not adopted): the threshold set on the ranked probability q and
    answered where q reaches it."""
    p = np.array([i["p"] for i in items])
    escalated = np.array([i["label"] is None for i in items])
    out = np.array([i["reason"] == "out_of_scope" for i in items])
    right = np.array([i["best"] == i["gold"] for i in items], dtype=np.float64)
    log_n = np.log(np.maximum(1, np.array([i["best_exemplars"] for i in items], dtype=np.float64)))
    threshold, at, score, ranking = None, np.full(len(items), np.nan), p.copy(), None
    for k in range(len(items)):
        if k >= 200 and k % STREAM_RESTATE_EVERY == 0:
            recent = np.arange(max(0, k - 4 * window), k)[~out[max(0, k - 4 * window) : k]][-window:]
            checks = np.nonzero(escalated[:k] & ~out[:k])[0][-window:]
            s = sharpness(p[checks], right[checks])
            known = np.where(escalated[recent], right[recent], np.nan)
            usable = s is not None and s >= MIN_SHARPNESS
            ranking = fit_ranking(p[checks], log_n[checks], right[checks], log_n[recent]) if ranked else None
            if usable and ranking is not None and ranked == "cut":
                threshold = stream_threshold(ranking.q(p[recent], log_n[recent]), TARGET, known, 1.0)
            else:
                threshold = stream_threshold(p[recent], TARGET, known, s) if usable else None
                ranking = ranking if threshold is not None else None
        at[k] = np.nan if threshold is None else threshold
        if ranking is not None and ranked == "cut":
            score[k] = ranking.q(p[k : k + 1], log_n[k : k + 1])[0]
        elif ranking is not None:  # p against its label's lowered threshold
            at[k] = ranking.lowered(threshold, log_n[k : k + 1])[0]
    last = slice(2 * len(items) // 3, len(items))
    answered = np.where(
        np.isnan(at[last]), ~escalated[last], (score[last] >= np.nan_to_num(at[last], nan=2.0)) & ~out[last]
    )
    return 1.0 - float(answered.mean()), float(right[last][answered].mean())


def recorded_runs(folders: list[str]):
    """(folder, its recorded items) for each folder holding a learning_curve.py items.jsonl; others are named on
    stderr and skipped (shared with tools/stream_estimate_check.py)."""
    for folder in folders:
        path = Path(folder) / "items.jsonl"
        if not path.is_file():
            print(f"{folder}: no items.jsonl, skipped", file=sys.stderr)
            continue
        yield folder, [json.loads(line) for line in path.read_text().splitlines()]


def runs_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments both replay tools take: recorded run folders and the stream's calibration window."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", help="folders with a learning_curve.py items.jsonl")
    parser.add_argument("--window", type=int, default=1000, help="MCP_LATENT_STREAM_CALIBRATION_WINDOW")
    return parser


def main() -> int:
    args = runs_arguments(__doc__.splitlines()[0]).parse_args()
    print("| run | recorded | rule before 6 Dec | rule of 6 Dec (p) | q cut (not adopted) | lowered per label (now) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for folder, items in recorded_runs(args.runs):
        last = items[2 * len(items) // 3 :]
        answered = [i for i in last if i["label"] is not None]
        recorded = (1 - len(answered) / len(last), np.mean([i["label"] == i["gold"] for i in answered]))
        cells = [recorded, replay(items, sharpness_before, args.window), replay(items, stream_sharpness, args.window)]
        cells += [replay(items, stream_sharpness, args.window, ranked) for ranked in ("cut", "lowered")]
        print(f"| {Path(folder).name} | " + " | ".join(f"{e:.1%} at {a:.1%}" for e, a in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
