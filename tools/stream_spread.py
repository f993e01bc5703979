#!/usr/bin/env python3
"""The spread over repeated `tools/learning_curve.py` runs: one row per run, then min / median / max per data set.

    .venv/bin/python tools/stream_spread.py tools/results/stream_runs/hwu64_* tools/results/stream_runs/banking77_* \
        --out tools/results/stream_runs/spread

Each run folder holds learning_curve.py's summary.json and items.jsonl, and load.txt (`uptime` before and after the
run, as tools/stream_runs.sh writes it). Per run: the last third's escalated share and its answered
agreement, the whole stream's answered agreement, items/s, the load, and from the per-item records what the last
third's escalations are (reason; the best label right or not; the hindsight threshold that would hold 97%).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

GOAL_ESCALATED, GOAL_AGREEMENT, GOAL_SPEED = 0.25, 0.97, 10.0


def load_pair(text: str, when: str) -> str:
    """The 1-minute load average on the `before`/`after` line of load.txt ('?' when absent)."""
    match = re.search(rf"^{when} .*load average: ([0-9.]+)", text, re.M)
    return match.group(1) if match else "?"


def hindsight(last: list[dict], agreement: float) -> tuple[float, float | None]:
    """The lowest escalated share of the last third whose answered verdicts (best label, p >= t, not cut as out of
    scope) are right at least `agreement` of the time, over every threshold t the verdicts' p take: an upper bound."""
    candidates = sorted({i["p"] for i in last}, reverse=True)
    best: tuple[float, float | None] = (1.0, None)
    for t in candidates:
        answered = [i for i in last if i["p"] >= t and i["reason"] != "out_of_scope"]
        if answered and sum(i["best"] == i["gold"] for i in answered) / len(answered) >= agreement:
            best = min(best, (1 - len(answered) / len(last), t))
    return best


def one_run(folder: Path) -> dict:
    s = json.loads((folder / "summary.json").read_text())
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines() if line.strip()]
    load = (folder / "load.txt").read_text() if (folder / "load.txt").exists() else ""
    commit = re.search(r"^commit (\S+)", load, re.M)
    last = items[-(len(items) // 3) :]
    answered = [i for i in last if i["label"] is not None]
    escalated = [i for i in last if i["label"] is None]
    low = [i for i in escalated if i["reason"] != "out_of_scope"]
    threshold_share, threshold = hindsight(last, GOAL_AGREEMENT)
    return {
        "run": folder.name,
        "set": Path(s["source"]).stem,
        "shuffle_seed": s["protocol"]["shuffle_seed"],
        "commit": commit.group(1) if commit else None,
        "escalated_last_third": s["learning"]["escalated_last_third"],
        "agreement_last_third": sum(i["label"] == i["gold"] for i in answered) / len(answered) if answered else None,
        "agreement_stream": s["learning"]["answered_agreement"],
        "no_learning_escalated_last_third": s["no_learning"]["escalated_last_third"],
        "items_per_s": s["speed"]["stream_items_per_s_learning_calls"],
        "items_per_s_wall": s["speed"]["stream_items_per_s_wall_with_anchors"],
        "items_per_cpu_second": s["speed"]["items_per_cpu_second"],
        "load_before": load_pair(load, "before"),
        "load_after": load_pair(load, "after"),
        "test_coverage": s["test"]["learning"]["coverage"],
        "test_accuracy": s["test"]["learning"]["answered_accuracy"],
        "escalated_out_of_scope": sum(i["reason"] == "out_of_scope" for i in last) / len(last),
        "escalated_low_confidence": len(low) / len(last),
        "escalated_best_right": sum(i["best"] == i["gold"] for i in escalated) / len(escalated) if escalated else None,
        "escalated_p_median": statistics.median(i["p"] for i in low) if low else None,
        "hindsight_escalated_at_97": threshold_share,
        "hindsight_threshold_at_97": threshold,
        "final_threshold": (s.get("profile_after_stream") or {}).get("threshold"),
    }


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(runs: list[dict]) -> str:
    lines = [
        "| set | run (seed) | last third escalated | agreement, last third | agreement, stream | items/s (wall) "
        "| load 1-min before -> after | no learning, last third | hindsight at 97% |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    sets = sorted({r["set"] for r in runs})
    for set_name in sets:
        for r in (r for r in runs if r["set"] == set_name):
            lines.append(
                f"| {set_name} | {r['run']} ({r['shuffle_seed']}) | {pct(r['escalated_last_third'])} "
                f"| {pct(r['agreement_last_third'])} | {pct(r['agreement_stream'])} "
                f"| {r['items_per_s']:.1f} ({r['items_per_s_wall']:.1f}) | {r['load_before']} -> {r['load_after']} "
                f"| {pct(r['no_learning_escalated_last_third'])} | {pct(r['hindsight_escalated_at_97'])} |"
            )
    lines += [
        "",
        "| set | runs | last third escalated | agreement, last third | agreement, stream | items/s |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for set_name in sets:
        mine = [r for r in runs if r["set"] == set_name]
        cells = []
        for key, fmt in (
            ("escalated_last_third", pct),
            ("agreement_last_third", pct),
            ("agreement_stream", pct),
            ("items_per_s", lambda x: f"{x:.1f}"),
        ):
            values = [r[key] for r in mine if r[key] is not None]
            cells.append(" / ".join(fmt(f(values)) for f in (min, statistics.median, max)) if values else "n/a")
        lines.append(f"| {set_name} (min / median / max) | {len(mine)} | " + " | ".join(cells) + " |")
    goal_met = all(
        r["escalated_last_third"] <= GOAL_ESCALATED
        and (r["agreement_last_third"] or 0) >= GOAL_AGREEMENT
        and r["items_per_s"] >= GOAL_SPEED
        for r in runs
    )
    lines += [
        "",
        f"Goal (every run: last third <= {GOAL_ESCALATED:.0%} escalated at >= {GOAL_AGREEMENT:.0%} agreement, "
        f">= {GOAL_SPEED:.0f} items/s): {'met' if goal_met else 'not met'}.",
    ]
    return "\n".join(lines) + "\n"


def plot(folders: list[Path], path: Path) -> None:
    """Each run's escalation share per window (learning: solid, its no-learning anchor: dashed), one panel per set."""
    from mcp_latent.plotting import figure

    summaries = [json.loads((f / "summary.json").read_text()) for f in folders if (f / "summary.json").exists()]
    sets = sorted({Path(s["source"]).stem for s in summaries})
    with figure(path, figsize=(6 * len(sets), 4), ncols=len(sets), squeeze=False) as (_, axes):
        for ax, set_name in zip(axes[0], sets, strict=True):
            mine = [s for s in summaries if Path(s["source"]).stem == set_name]
            for n, s in enumerate(mine):
                w = s["windows"]
                x = [(i + 1) * w["size"] for i in range(len(w["learning"]))]
                seed = s["protocol"]["shuffle_seed"]
                ax.plot(
                    x, w["learning"], "-o", color=f"C{n}", markersize=3, label=f"seed {seed}: teach every escalation"
                )
                ax.plot(x, w["no_learning"], "--", color=f"C{n}", alpha=0.5, label=f"seed {seed}: no learning")
            ax.axhline(GOAL_ESCALATED, color="grey", linewidth=0.8, linestyle="-.")
            ax.axvspan(2 * len(mine[0]["windows"]["learning"]) * mine[0]["windows"]["size"] // 3, x[-1], alpha=0.08)
            ax.set_title(f"{set_name}: {len(mine)} runs, escalated per {mine[0]['windows']['size']} items")
            ax.set_xlabel("stream items (shaded: the last third; dash-dot: the 25% goal)")
            ax.set_ylabel("escalated to the LLM")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="learning_curve.py output folders")
    parser.add_argument("--out", type=Path, help="write spread.json, spread.md and spread.png here")
    args = parser.parse_args()
    runs = [one_run(f) for f in args.runs if (f / "summary.json").exists()]
    text = markdown(runs)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "spread.json").write_text(json.dumps(runs, indent=2))
        (args.out / "spread.md").write_text(text)
        plot(args.runs, args.out / "spread.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
