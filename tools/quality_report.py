#!/usr/bin/env python3
"""Measure verdict quality on the shared intent data (issue protocol) and write one markdown table + plots.

    .venv/bin/python tools/quality_report.py [--shared ../shared/data] [--out eval-out]

Protocols: BANKING77, HWU64 and SNIPS closed set (profile from `train`, evaluated on `test`), and BANKING77
out-of-scope (sorted labels[3::4] held out of the profile; their test rows count as out of scope).
Everything is chosen on train (cross-validation); the test split is read once per protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.eval.quality import run_evaluation
from mcp_latent.profiles.builder import build_profile, read_rows
from mcp_latent.settings import Settings


def protocols(shared: Path) -> list[tuple[str, Path, set[str]]]:
    banking = shared / "banking77" / "banking77.jsonl"
    labels = sorted({r["label"] for r in read_rows(banking)})
    return [
        ("banking77", banking, set()),
        ("hwu64", shared / "hwu64" / "hwu64.jsonl", set()),
        ("banking77_oos", banking, set(labels[3::4])),
        ("snips", shared / "snips" / "snips.jsonl", set()),  # 7 labels: too few for the out-of-scope simulation
    ]


def summary_table(results: dict[str, dict]) -> str:
    """One table: each protocol's default point against the head-alone rule at every threshold, same run."""

    def point(v: dict) -> str:
        recall = v["out_of_scope_recall"]
        return f"{100 * v['coverage']:.1f} / {100 * v['answered_accuracy']:.1f}" + (
            "" if recall is None else f" / {100 * recall:.1f}"
        )

    names = list(results)
    rows = [
        "### Default point against the head alone (coverage / answered accuracy [/ out-of-scope recall], %)",
        "",
        "| rule | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
        "| **default (fitted)** | " + " | ".join(f"**{point(results[n])}**" for n in names) + " |",
    ]
    for key in results[names[0]]["anchor_points"]:
        if key.startswith("linear head"):
            cells = [
                point(results[n]["anchor_points"][key]) + (" (dominates)" if key in results[n]["dominated_by"] else "")
                for n in names
            ]
            rows.append(f"| {key} | " + " | ".join(cells) + " |")
    rows.append(
        "| default dominated by the head alone | "
        + " | ".join("**yes**" if results[n]["dominated_by"] else "no" for n in names)
        + " |"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "eval-out")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "eval-out" / "data")
    parser.add_argument(
        "--protocol",
        action="append",
        help="run only this protocol (repeatable; several runs may go side by side); the table is assembled from "
        "every protocol's summary.json under --out",
    )
    args = parser.parse_args()
    profiles_dir = args.out / "profiles"
    settings = Settings(data_dir=args.data_dir, profiles_dir=profiles_dir, builtin_profiles=False)
    every = protocols(args.shared)
    for name, source, held_out in every:
        if args.protocol and name not in args.protocol:
            continue
        build_profile(source, name, profiles_dir, split="train", exclude_labels=held_out, target_accuracy=0.98)
        summary = run_evaluation(settings, name, source, "test", out_dir=args.out / name)
        print(summary["markdown"], flush=True)
    results = {
        name: json.loads((args.out / name / "summary.json").read_text())
        for name, _, _ in every
        if (args.out / name / "summary.json").exists()
    }
    sections = [summary_table(results), *(summary["markdown"] for summary in results.values())]
    print(sections[0], flush=True)
    (args.out / "quality.md").write_text("\n\n".join(sections) + "\n")
    (args.out / "quality.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
