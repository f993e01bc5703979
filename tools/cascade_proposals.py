#!/usr/bin/env python3
"""The cascade on a realistic stream (issue 24 item 6): the shipped risk, roi and category profiles judge a team's
stream of proposals by other writers, a scripted judge decides every escalation from the labels in the file, and
each decision is taught back; how much is answered, and how right, as the stream goes on.

    .venv/bin/python tools/cascade_proposals.py --out docs/figures/cascade        # writes summary.json/.md, PNG
    .venv/bin/python tools/cascade_proposals.py --profiles-dir DIR --data-dir DIR  # other profiles; keep fit caches

Stream: the held-out realistic texts (`tools/data/realistic/heldout.jsonl`, other writers than the shipped
exemplars'; 60 of them propose nothing), shuffled with a fixed seed, plus recurring proposals: `--recurring` of
the in-scope texts come back once or twice later in the stream with small edits (a follow-up prefix, a changed
number, a dropped last sentence, an added note), as a real team's tracker and chat repeat work.

Each item is judged by `LatentService.evaluate` (the call the `evaluate` tool makes, through the live profiles'
decision code). A profile's unsure verdict is an escalation: the judge gives the writer's label (the texts that
propose nothing: the profile's off-topic label) and it is taught with one `teach` call; answered verdicts are not
taught. Agreement counts only labels both blind judges gave (the file's `*_judge2` fields). Reported per third of
the stream and in windows (the curve): answered share and agreement per profile, and off-topic texts abstained.
The profiles are copied into a temporary profiles dir (a user's own copy, so teaching is allowed); the shipped
files are never written.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings

DATA = ROOT / "tools" / "data" / "realistic" / "heldout.jsonl"
PROFILES = ("risk", "roi", "category")
OFF_TOPIC = "off_topic"
GOALS = {"risk": (0.60, 0.90), "roi": (0.60, 0.90), "category": (0.85, 0.95)}  # last third: answered, agreement
PREFIXES = ("Follow-up: ", "Re: ", "Bumping this: ", "Reminder: ", "Revisiting: ")
SUFFIXES = (" Thoughts?", " (raised again after last week's sync)", " cc @team", " Any objections?")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def edit(text: str, rng: random.Random) -> str:
    """A small edit of a proposal, as the same work comes back in a real stream: one or two of a follow-up
    prefix, a changed number, a dropped last sentence (when there are several), an added note."""
    out = text
    moves = rng.sample(["prefix", "number", "drop", "suffix"], k=rng.choice([1, 2]))
    for move in moves:
        if move == "prefix":
            out = rng.choice(PREFIXES) + out[0].lower() + out[1:] if out else out
        elif move == "number" and re.search(r"\d+", out):
            out = re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)), out, count=1)
        elif move == "drop":
            sentences = re.split(r"(?<=[.!?])\s+", out)
            if len(sentences) > 2:
                out = " ".join(sentences[:-1])
        else:
            out = out.rstrip() + rng.choice(SUFFIXES)
    return out if out != text else rng.choice(PREFIXES) + text


def build_stream(rows: list[dict], recurring: float, seed: int) -> list[dict]:
    """The held-out rows shuffled, with a share of in-scope ones recurring later with small edits."""
    rng = random.Random(seed)
    stream = [dict(r, recurrence=0) for r in rows]
    rng.shuffle(stream)
    in_scope = [r for r in rows if r["risk"] is not None]
    for row in rng.sample(in_scope, round(recurring * len(in_scope))):
        first = next(i for i, r in enumerate(stream) if r["id"] == row["id"])
        for n in range(1, rng.choice([1, 2]) + 1):
            at = rng.randint(first + 1, len(stream))
            stream.insert(at, dict(row, id=f"{row['id']}~{n}", text=edit(row["text"], rng), recurrence=n))
    return stream


def judge_label(row: dict, profile: str) -> str:
    """The scripted judge's decision for an escalation: the writer's label, or the off-topic label."""
    return row[profile] if row[profile] is not None else OFF_TOPIC


def agreed(row: dict, profile: str) -> str | None:
    """The label both blind judges gave (None: disputed, or a text that proposes nothing)."""
    label = row[profile]
    return label if label is not None and label == row.get(f"{profile}_judge2") else None


def tally(items: list[dict]) -> dict:
    """Per profile: answered share and agreement on agreed in-scope items; off-topic abstained."""
    out: dict = {}
    for profile in PROFILES:
        scored = [i for i in items if i["gold"][profile] is not None]
        answered = [i for i in scored if not i["verdicts"][profile]["unsure"]]
        right = sum(i["verdicts"][profile]["label"] == i["gold"][profile] for i in answered)
        off = [i for i in items if i["off_topic"]]
        out[profile] = {
            "n": len(scored),
            "answered": len(answered) / len(scored) if scored else None,
            "agreement": right / len(answered) if answered else None,
            "off_topic_abstained": (sum(i["verdicts"][profile]["unsure"] for i in off) / len(off)) if off else None,
        }
    return out


def run(args: argparse.Namespace) -> dict:
    rows = read_jsonl(args.data)
    stream = build_stream(rows, args.recurring, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        profiles_dir = Path(tmp) / "profiles"
        shutil.copytree(args.profiles_dir, profiles_dir)
        settings = Settings(data_dir=data_dir, profiles_dir=profiles_dir, builtin_profiles=False)
        service = LatentService(settings)
        service.start()
        service.wait_ready()
        items, teaches, started = [], 0, time.monotonic()
        try:
            for n, row in enumerate(stream, start=1):
                if args.settle_every and n % args.settle_every == 0:
                    service.wait_refitted()  # the background refits catch up: the same figures on any machine load
                verdicts = service.evaluate(text=row["text"], profiles=list(PROFILES))["verdicts"]
                decided = {p: judge_label(row, p) for p in PROFILES if verdicts[p].get("unsure")}
                if decided:
                    service.teach(text=row["text"], labels=decided)
                    teaches += 1
                items.append(
                    {
                        "id": row["id"],
                        "recurrence": row["recurrence"],
                        "off_topic": row["risk"] is None,
                        "gold": {p: agreed(row, p) for p in PROFILES},
                        "verdicts": {
                            p: {"label": verdicts[p]["label"], "unsure": bool(verdicts[p].get("unsure"))}
                            for p in PROFILES
                        },
                    }
                )
        finally:
            service.close()
    third = len(items) // 3
    thirds = [items[:third], items[third : 2 * third], items[2 * third :]]
    window = args.window
    curve = [
        {"end": end, **tally(items[max(0, end - window) : end])} for end in range(window, len(items) + 1, window // 2)
    ]
    fresh = [i for i in thirds[2] if i["recurrence"] == 0]
    return {
        "last_third_first_sightings": tally(fresh),
        "stream": len(items),
        "recurring_items": sum(i["recurrence"] > 0 for i in items),
        "teach_calls": teaches,
        "seconds": round(time.monotonic() - started, 1),
        "thirds": [tally(t) for t in thirds],
        "all": tally(items),
        "curve": curve,
        "window": window,
        "seed": args.seed,
        "settle_every": args.settle_every,
    }


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(s: dict) -> str:
    lines = [
        f"Stream of {s['stream']} items ({s['recurring_items']} recurring with small edits), {s['teach_calls']} "
        f"teach calls, {s['seconds']} s, seed {s['seed']}, settle every {s['settle_every'] or 'never'}.",
        "",
        "| profile | third | answered | agreement when answered | off-topic abstained | goal (last third) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for profile in PROFILES:
        for n, t in enumerate(s["thirds"], start=1):
            f = t[profile]
            answered_goal, agreement_goal = GOALS[profile]
            goal = f">= {pct(answered_goal)} at >= {pct(agreement_goal)}" if n == 3 else ""
            lines.append(
                f"| {profile} | {n} | {pct(f['answered'])} | {pct(f['agreement'])} | "
                f"{pct(f['off_topic_abstained'])} | {goal} |"
            )
    lines += ["", "Last third, first sightings only (no recurring proposal):", ""]
    lines += [
        f"- {p}: answered {pct(f['answered'])} at {pct(f['agreement'])} agreement"
        for p, f in s["last_third_first_sightings"].items()
    ]
    return "\n".join(lines)


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ends = [c["end"] for c in s["curve"]]
    for profile in PROFILES:
        axes[0].plot(ends, [c[profile]["answered"] for c in s["curve"]], label=profile)
        axes[1].plot(ends, [c[profile]["agreement"] for c in s["curve"]], label=profile)
    axes[0].set_title(f"answered (in-scope, agreed labels; window {s['window']})")
    axes[1].set_title("agreement when answered")
    for ax in axes:
        ax.set_xlabel("stream position")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="labelled texts to stream (default: %(default)s)")
    parser.add_argument("--profiles-dir", type=Path, default=ROOT / "profiles", help="risk/roi/category files")
    parser.add_argument("--data-dir", type=Path, help="data dir (fit caches); default: a temporary one")
    parser.add_argument("--recurring", type=float, default=0.4, help="share of in-scope texts that come back")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=60, help="items per point of the curve")
    parser.add_argument(
        "--settle-every",
        type=int,
        default=0,
        help="every N items, wait until the background refits are done (0: never, as a live loop runs; a loaded "
        "machine then refits less often and the figures depend on its load)",
    )
    parser.add_argument("--out", type=Path, help="write summary.json, summary.md and cascade.png here")
    args = parser.parse_args()
    summary = run(args)
    table = markdown(summary)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (args.out / "summary.md").write_text(table + "\n", encoding="utf-8")
        plot(summary, args.out / "cascade.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
