#!/usr/bin/env python3
"""The stream rule with the exemplars' prior on the answered top's sharpness, replayed on recorded stream runs that
carry a trace (tools/learning_curve.py writes OUT/trace.jsonl: `MCP_LATENT_STREAM_TRACE`): for each prior weight
(labelled verdicts the prior counts as: `stream.stream_sharpness`'s `weight`; 0, what the server does) and cut (the
exemplars' out-of-fold p it starts at), and margin (standard errors, `STREAM_MARGIN_ERRORS`), what the last third
would have escalated and at what answered agreement.

    .venv/bin/python tools/stream_prior_replay.py tools/results/stream_s6_rec/*_s? --weights 0 250 1000 --cuts 0.9

As tools/stream_rule_replay.py (every 25 items from the 200th, on the evidence the server held then; the per-label
lowering of `stream_rank` as served; not counterfactual), with the sharpness fitted by `stream.stream_sharpness` on
the escalated verdicts' checks plus the prior from the exemplar evidence of the calibration the server held then
(the trace's line for the learning profile, from the stream item it was written at: its `observed` count, less the
warm-up text).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from stream_rule_replay import TARGET, recorded_runs, runs_arguments  # noqa: E402

from mcp_latent.judge.stream import stream_sharpness, stream_threshold  # noqa: E402
from mcp_latent.judge.stream_rank import fit_ranking  # noqa: E402
from mcp_latent.judge.stream_rule import MIN_SHARPNESS, STREAM_MARGIN_ERRORS, STREAM_RESTATE_EVERY  # noqa: E402


def calibrations(folder: str, profile: str = "learner") -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(first stream item, exemplar p, exemplar right) of each calibration the learning profile served, in order."""
    path = Path(folder) / "trace.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("profile") == profile and "exemplar_p" in row:
            start = max(0, int(row["observed"]) - 1)  # the warm-up text is the first verdict recorded
            out.append((start, np.array(row["exemplar_p"]), np.array(row["exemplar_right"], dtype=np.float64)))
    return out


def replay(
    items: list[dict], priors: list, weight: float, cut: float, window: int, margin: float = STREAM_MARGIN_ERRORS
) -> tuple[float, float]:
    """(escalated share, answered agreement) of the last third under the served rule (per-label lowering included)
    with the sharpness's prior of this weight and cut."""
    p = np.array([i["p"] for i in items])
    escalated = np.array([i["label"] is None for i in items])
    out = np.array([i["reason"] == "out_of_scope" for i in items])
    right = np.array([i["best"] == i["gold"] for i in items], dtype=np.float64)
    log_n = np.log(np.maximum(1, np.array([i["best_exemplars"] for i in items], dtype=np.float64)))
    threshold, at, ranking = None, np.full(len(items), np.nan), None
    for k in range(len(items)):
        if k >= 200 and k % STREAM_RESTATE_EVERY == 0:
            recent = np.arange(max(0, k - 4 * window), k)[~out[max(0, k - 4 * window) : k]][-window:]
            checks = np.nonzero(escalated[:k] & ~out[:k])[0][-window:]
            held = [(ep, er) for start, ep, er in priors if start <= k]
            prior = held[-1] if held else None
            s = stream_sharpness(p[checks], right[checks], prior, weight, cut)
            known = np.where(escalated[recent], right[recent], np.nan)
            usable = s is not None and s >= MIN_SHARPNESS
            threshold = stream_threshold(p[recent], TARGET, known, s, margin) if usable else None
            ranking = fit_ranking(p[checks], log_n[checks], right[checks], log_n[recent]) if threshold else None
        at[k] = np.nan if threshold is None else threshold
        if ranking is not None:
            at[k] = ranking.lowered(threshold, log_n[k : k + 1])[0]
    last = slice(2 * len(items) // 3, len(items))
    answered = np.where(
        np.isnan(at[last]), ~escalated[last], (p[last] >= np.nan_to_num(at[last], nan=2.0)) & ~out[last]
    )
    return 1.0 - float(answered.mean()), float(right[last][answered].mean())


def main() -> int:
    parser = runs_arguments(__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 100, 250, 500, 1000, 1e6])
    parser.add_argument("--cuts", type=float, nargs="+", default=[0.9])
    parser.add_argument("--margins", type=float, nargs="+", default=[STREAM_MARGIN_ERRORS], help="standard errors")
    args = parser.parse_args()
    arms = [(w, c, m) for m in args.margins for c in args.cuts for w in args.weights]
    print("| run | recorded | " + " | ".join(f"w {w:g}, cut {c:g}, margin {m:g}" for w, c, m in arms) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in arms) + " |")
    totals: list[list[tuple[float, float]]] = [[] for _ in arms]
    for folder, items in recorded_runs(args.runs):
        priors = calibrations(folder)
        if not priors:
            print(f"{folder}: no trace.jsonl with exemplar evidence, skipped", file=sys.stderr)
            continue
        last = items[2 * len(items) // 3 :]
        answered = [i for i in last if i["label"] is not None]
        cells = [(1 - len(answered) / len(last), float(np.mean([i["label"] == i["gold"] for i in answered])))]
        for a, (w, c, m) in enumerate(arms):
            cells.append(replay(items, priors, w, c, args.window, m))
            totals[a].append(cells[-1])
        print(f"| {Path(folder).name} | " + " | ".join(f"{e:.1%} at {x:.1%}" for e, x in cells) + " |")
    if totals[0]:
        print(
            "| mean escalated / least agreement | | "
            + " | ".join(f"{np.mean([e for e, _ in t]):.1%} / {min(x for _, x in t):.1%}" for t in totals)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
