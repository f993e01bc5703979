#!/usr/bin/env python3
"""Does a taught decision stick? Teach N labelled texts through the same service code the server runs (a real
`LatentService`, the real model, a throwaway data dir), then judge (a) the taught texts, (b) paraphrases of them,
(c) the untaught rest, before teaching, right after it (no refit yet) and after the background refits settled.

    .venv/bin/python tools/teach_sticks.py [--data tools/data/proposals/heldout.jsonl]
        [--paraphrases tools/data/proposals/paraphrases.jsonl] [--teach 80] [--seed 0] [--cache /tmp/sticks-cache]
        [--json OUT.json] [--plot OUT.png]

Data: JSON lines with "id", "text" and one field per profile (risk, roi, category) holding the label, or null for
an off-topic text (judged too; it counts towards "off-topic abstained"). Paraphrases: {"id": original, "text"}; a line with `"minimal_pair": true` is a rewrite of the original that changes a
fact (a rollback plan removed) and carries its own labels (e.g. "risk"): it is judged as "minimal pairs", where the
figure that matters is how often it is answered with the original's taught label ("taught label %", of all of them).
Answered: share of texts given a label (not unsure). Agreement: share of answered texts whose label is the one in
the data (for taught texts: the one taught). `--cache` keeps the shipped profiles' fits between runs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("risk", "roi", "category")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def judge(service, texts: list[str]) -> list[dict]:
    return [service.evaluate(text=text, profiles=list(PROFILES), detail=True)["verdicts"] for text in texts]


def score(verdicts: list[dict], gold: list[dict], profile: str) -> tuple[int, float | None, float | None]:
    """(texts with a label for this profile, answered share, agreement among answered)."""
    pairs = [(v[profile], g[profile]) for v, g in zip(verdicts, gold, strict=True) if g.get(profile)]
    if not pairs:
        return 0, None, None
    answered = [(v, label) for v, label in pairs if not v.get("unsure")]
    agreement = sum(v["label"] == label for v, label in answered) / len(answered) if answered else None
    return len(pairs), len(answered) / len(pairs), agreement


def taught_label(verdicts: list[dict], rewrites: list[dict], profile: str) -> float | None:
    """Of the minimal-pair rewrites whose label for this profile differs from the one taught for their original,
    the share answered with the taught label (a wrong answer from memory of the original)."""
    rows = [
        (v[profile], r["taught"][profile])
        for v, r in zip(verdicts, rewrites, strict=True)
        if r.get(profile) and r["taught"].get(profile) and r[profile] != r["taught"][profile]
    ]
    if not rows:
        return None
    return sum(not v.get("unsure") and v["label"] == taught for v, taught in rows) / len(rows)


def off_topic_abstained(verdicts: list[dict], gold: list[dict]) -> float | None:
    rows = [v for v, g in zip(verdicts, gold, strict=True) if all(g.get(p) is None for p in PROFILES)]
    if not rows:
        return None
    return sum(all(v[p].get("unsure") for p in PROFILES) for v in rows) / len(rows)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def draw(data: Path, paraphrase_file: Path, teach: int, seed: int) -> tuple[list[dict], dict[str, list[dict]]]:
    """The texts to teach (`teach` drawn with `seed`) and the sets judged: taught, paraphrases of them,
    minimal-pair rewrites of them (with the original as "taught"), untaught."""
    rows = read_jsonl(data)
    labelled = [r for r in rows if any(r.get(p) for p in PROFILES)]
    taught = random.Random(seed).sample(labelled, teach)
    taught_ids = {r["id"] for r in taught}
    untaught = [r for r in rows if r["id"] not in taught_ids]
    by_id = {r["id"]: r for r in taught}
    paraphrases, minimal_pairs = [], []
    if paraphrase_file.exists():
        for p in read_jsonl(paraphrase_file):
            if p["id"] not in by_id:
                continue
            if p.get("minimal_pair"):  # its own labels; the original's are what a wrong memory would answer
                labels = {k: p.get(k) for k in PROFILES}
                minimal_pairs.append({"id": p["id"], "text": p["text"], **labels, "taught": by_id[p["id"]]})
            else:
                paraphrases.append({**by_id[p["id"]], "text": p["text"]})
    sets = {"taught": taught, "paraphrases": paraphrases, "minimal pairs": minimal_pairs, "untaught": untaught}
    return taught, sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "tools/data/proposals/heldout.jsonl")
    parser.add_argument("--paraphrases", type=Path, default=ROOT / "tools/data/proposals/paraphrases.jsonl")
    parser.add_argument("--teach", type=int, default=80, help="labelled texts to teach (chosen at random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcp-latent-sticks-cache")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, help="draw answered/agreement per phase (needs matplotlib)")
    args = parser.parse_args()

    from mcp_latent.service.api import LatentService  # imported late: loads the model runtime
    from mcp_latent.settings import Settings

    taught, sets = draw(args.data, args.paraphrases, args.teach, args.seed)
    paraphrases, minimal_pairs, untaught = sets["paraphrases"], sets["minimal pairs"], sets["untaught"]

    with tempfile.TemporaryDirectory() as data_dir:
        service = LatentService(Settings(data_dir=Path(data_dir), profile_cache_dir=args.cache))
        started = time.monotonic()
        service.start()
        service.wait_ready(5)
        print(f"service ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        results: dict[str, dict] = {}

        def measure(phase: str) -> None:
            for name, items in sets.items():
                if not items:
                    continue
                verdicts = judge(service, [r["text"] for r in items])
                results.setdefault(phase, {})[name] = {
                    **{p: score(verdicts, items, p) for p in PROFILES},
                    "off_topic_abstained": off_topic_abstained(verdicts, items),
                }
                if name == "minimal pairs":
                    results[phase][name]["taught_label"] = {p: taught_label(verdicts, items, p) for p in PROFILES}
            print(f"{phase}: measured", file=sys.stderr)

        def operating() -> dict[str, list]:
            out = {}
            for p in PROFILES:
                snapshot = service.live[p].snapshot
                if not hasattr(snapshot, "memory"):  # the code before issue 24 (to measure the baseline with)
                    out[p] = [round(snapshot.calibration.threshold, 3), "?", None]
                    continue
                threshold, source = snapshot.threshold(True)
                radius = None if snapshot.memory is None else round(snapshot.memory.radius, 3)
                out[p] = [round(threshold, 3), source, radius]
            return out

        operating_points = {"before": operating()}
        measure("before")
        for r in taught:
            service.teach(labels={p: r[p] for p in PROFILES if r.get(p)}, text=r["text"])
        measure("at once")
        service.wait_refitted(900)
        measure("after refits")
        stats = service.profile_stats()["stats"]
        # Each profile's spot checks (p of the verdict just before the teach, whether the teach confirmed it): what
        # moved or held its threshold (`judge/spot_checks.py`), for the JSON.
        spot = {p: [list(c) for c in service.live[p].stream.spot] for p in PROFILES}
        operating_points["after"] = operating()
        service.close()

    print(
        f"\n{args.data.name}: taught {len(taught)} (seed {args.seed}), {len(paraphrases)} paraphrases of them, "
        f"{len(minimal_pairs)} minimal-pair rewrites, {len(untaught)} untaught ({sum(1 for r in untaught if not any(r.get(p) for p in PROFILES))} off-topic)\n"
    )
    print("| set | profile | " + " | ".join(f"{ph} answered % | {ph} agreement %" for ph in results) + " |")
    print("| --- | --- | " + " | ".join("---: | ---:" for _ in results) + " |")
    for name in sets:
        for p in PROFILES:
            cells = []
            for phase in results:
                if name not in results[phase]:
                    continue
                _, answered, agreement = results[phase][name][p]
                cells += [pct(answered), pct(agreement)]
            if cells:
                print(f"| {name} | {p} | " + " | ".join(cells) + " |")
    for phase in results:
        wrong = results[phase].get("minimal pairs", {}).get("taught_label")
        if wrong:
            print(
                f"minimal pairs answered with the original's taught label ({phase}):",
                {p: pct(wrong[p]) for p in PROFILES},
            )
    for phase in results:
        share = results[phase].get("untaught", {}).get("off_topic_abstained")
        print(f"off-topic abstained ({phase}): {pct(share)}%")
    for phase, points in operating_points.items():
        print(f"threshold, source, memory radius ({phase}):", points)
    for p in PROFILES:  # as latent://stats shows them
        print(f"latent://stats {p}:", json.dumps(stats[p], separators=(",", ":")))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "results": results,
                    "points": operating_points,
                    "stats": stats,
                    "spot_checks": spot,
                }
            )
        )
    if args.plot:
        plot(results, args.plot)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = list(results)
    fig, axes = plt.subplots(1, len(PROFILES), figsize=(4 * len(PROFILES), 3.4), sharey=True)
    for ax, p in zip(axes, PROFILES, strict=True):
        for name in ("taught", "paraphrases", "untaught"):
            if name not in results[phases[0]]:
                continue
            answered = [100 * (results[ph][name][p][1] or 0) for ph in phases]
            agreement = [100 * (results[ph][name][p][2] or 0) for ph in phases]
            line = ax.plot(phases, answered, marker="o", label=f"{name} answered")[0]
            ax.plot(phases, agreement, marker="x", linestyle="--", color=line.get_color(), label=f"{name} agreement")
        ax.set_title(p)
        ax.set_ylim(0, 101)
    axes[0].set_ylabel("%")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
