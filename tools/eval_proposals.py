#!/usr/bin/env python3
"""Measure the shipped evaluators (risk, roi, category) on the held-out proposals, the way issue 10 counts:
answered agreement and coverage on in-scope proposals, abstention on off-topic and vague texts, and the
minimal pairs (does the risk score move the way the labels say?).

    .venv/bin/python tools/eval_proposals.py                       # shipped profiles, real model
    .venv/bin/python tools/eval_proposals.py --profiles-dir DIR    # your own risk/roi/category files
    .venv/bin/python tools/eval_proposals.py --out tools/results    # also write proposals.md / proposals.json
    .venv/bin/python tools/eval_proposals.py --data tools/data/realistic/heldout.jsonl   # other writers (issue 24)

Verdicts come from `LatentService.evaluate`, the call the `evaluate` tool makes, so the figures measure the code
the server runs. Agreement is reported twice: against the writer's labels, and on the "consensus" subset where
a second judge, labelling blind (`heldout_blind.jsonl`, or the `*_judge2` fields of a file that has them, like
`tools/data/realistic/heldout.jsonl`), gave the same label.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings

DATA = ROOT / "tools" / "data" / "proposals"
PROFILES = ("risk", "roi", "category")
GOALS = {  # issue 10: answered agreement, coverage of in-scope proposals
    "risk": (0.90, 0.60),
    "roi": (0.90, 0.60),
    "category": (0.95, 0.85),
}
OFF_TOPIC_GOAL = 0.90


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def measure(rows: list[dict], verdicts: dict[str, dict], blind: dict[str, dict]) -> dict:
    """Per profile: coverage, answered agreement and closed-set accuracy (all and consensus), off-topic abstention."""
    report: dict = {}
    for profile in PROFILES:
        figures: dict = {}
        for subset in ("all", "consensus"):
            in_scope = [r for r in rows if r[profile] is not None]
            if subset == "consensus":
                in_scope = [r for r in in_scope if blind.get(r["id"], {}).get(profile) == r[profile]]
            answered = [r for r in in_scope if not verdicts[r["id"]][profile].get("unsure")]
            agree = sum(verdicts[r["id"]][profile]["label"] == r[profile] for r in answered)
            closed = sum(verdicts[r["id"]][profile]["top"][0][0] == r[profile] for r in in_scope)
            figures[subset] = {
                "in_scope": len(in_scope),
                "coverage": share(len(answered), len(in_scope)),
                "answered_agreement": share(agree, len(answered)),
                "closed_set_accuracy": share(closed, len(in_scope)),
            }
        off_topic = [r for r in rows if r[profile] is None]
        abstained = sum(bool(verdicts[r["id"]][profile].get("unsure")) for r in off_topic)
        figures["off_topic"] = {"n": len(off_topic), "abstained": share(abstained, len(off_topic))}
        report[profile] = figures
    return report


def blind_labels(rows: list[dict], data: Path) -> dict[str, dict]:
    """The second judge's labels by id: the rows' own `*_judge2` fields, else the file beside the default set."""
    if rows and all(f"{p}_judge2" in r for r in rows for p in PROFILES):
        return {r["id"]: {p: r[f"{p}_judge2"] for p in PROFILES} for r in rows}
    return {r["id"]: r for r in read_jsonl(data.parent / "heldout_blind.jsonl")}


def minimal_pairs(rows: list[dict], verdicts: dict[str, dict], data: Path) -> dict:
    """Pairs whose risk labels differ: share where the risk score orders them the same way as the labels."""
    order = {"low": 0, "medium": 1, "high": 2}
    by_id = {r["id"]: r for r in rows}
    pairs_path = data.parent / "heldout_pairs.jsonl"
    if data.name != "heldout.jsonl" or not pairs_path.exists() or data.parent != DATA:
        return {"pairs": 0, "risk_score_ordered": None}
    pairs = read_jsonl(pairs_path)
    judged = right = 0
    for pair in pairs:
        a, b = (by_id[i] for i in pair["ids"])
        if a["risk"] is None or b["risk"] is None or a["risk"] == b["risk"]:
            continue
        judged += 1
        score_a, score_b = (verdicts[r["id"]]["risk"].get("score") for r in (a, b))
        if score_a is not None and (score_a - score_b) * (order[a["risk"]] - order[b["risk"]]) > 0:
            right += 1
    return {"pairs": judged, "risk_score_ordered": share(right, judged)}


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict, pairs: dict, judges: dict) -> str:
    lines = [
        "| profile | subset | in scope | coverage | answered agreement | closed-set accuracy | goal |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for profile in PROFILES:
        agreement_goal, coverage_goal = GOALS[profile]
        for subset in ("all", "consensus"):
            f = report[profile][subset]
            goal = f">= {pct(agreement_goal)} at >= {pct(coverage_goal)}" if subset == "all" else ""
            lines.append(
                f"| {profile} | {subset} | {f['in_scope']} | {pct(f['coverage'])} | {pct(f['answered_agreement'])} "
                f"| {pct(f['closed_set_accuracy'])} | {goal} |"
            )
    lines += ["", "| profile | off-topic texts abstained (goal >= 90%) |", "| --- | --- |"]
    lines += [
        f"| {p} | {pct(report[p]['off_topic']['abstained'])} of {report[p]['off_topic']['n']} |" for p in PROFILES
    ]
    lines += [
        "",
        f"Minimal pairs with different risk labels: {pairs['pairs']}; risk score ordered like the labels in "
        f"{pct(pairs['risk_score_ordered'])}.",
        "",
        "Agreement of the two judges (writer vs blind re-labelling), in-scope proposals: "
        + ", ".join(f"{p} {pct(judges[p])}" for p in PROFILES)
        + ".",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--profiles-dir", type=Path, help="directory with risk/roi/category TOML files instead of the shipped ones"
    )
    parser.add_argument("--data-dir", type=Path, help="data dir (fit caches); default: a temporary one")
    parser.add_argument(
        "--data", type=Path, default=DATA / "heldout.jsonl", help="JSONL of labelled texts (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, help="write proposals.md and proposals.json here")
    args = parser.parse_args()

    rows = read_jsonl(args.data)
    blind = blind_labels(rows, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp)
        settings = Settings(
            data_dir=data_dir,
            profiles_dir=args.profiles_dir or data_dir / "profiles",
            builtin_profiles=args.profiles_dir is None,
        )
        service = LatentService(settings)
        service.start()
        service.wait_ready()
        try:
            verdicts = {
                r["id"]: service.evaluate(text=r["text"], profiles=list(PROFILES), detail=True)["verdicts"]
                for r in tqdm(rows, desc="evaluating", unit="text")
            }
        finally:
            service.close()
    report = measure(rows, verdicts, blind)
    pairs = minimal_pairs(rows, verdicts, args.data)
    in_scope = [r for r in rows if r["risk"] is not None]
    judges = {p: share(sum(blind[r["id"]][p] == r[p] for r in in_scope), len(in_scope)) for p in PROFILES}
    table = markdown(report, pairs, judges)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "proposals.md").write_text(table + "\n", encoding="utf-8")
        payload = {"profiles": report, "minimal_pairs": pairs, "judge_agreement": judges}
        (args.out / "proposals.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
