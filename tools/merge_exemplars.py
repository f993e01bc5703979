#!/usr/bin/env python3
"""Append jointly labelled proposals to the shipped risk, roi and category profiles.

    .venv/bin/python tools/merge_exemplars.py tools/data/exemplars/joint.jsonl --dry-run
    .venv/bin/python tools/merge_exemplars.py tools/data/exemplars/joint.jsonl --second-judge judge2.jsonl
    .venv/bin/python tools/merge_exemplars.py joint2.jsonl --second-judge joint2_judge2.jsonl --drop-disagreed

Each line of the joint file is {"id", "text", "risk", "roi", "category", ...}: one proposal labelled on all
three profiles at once. With --second-judge (lines {"id" or "text", "risk", "roi", "category"}, labelled blind
by another judge), an item goes into a profile only where both judges gave that profile the same label: a
disagreement there means the item is ambiguous for that profile, and an ambiguous exemplar teaches the fit
noise. A judge may leave a profile out (or give null) to abstain on it; the item is then skipped there.

With --drop-disagreed, items of the joint file that are already in a profile (merged earlier on one judge's
word) leave it where the second judge disagrees there or did not judge them, so a batch merged before its second
judge finished ends up as if it had been merged with both.

Texts already in the profile (under any label, compared lowercased with punctuation and spacing ignored) are
skipped, so running it twice changes nothing. Profiles are written with mcp_latent.profiles.write_profile_file
and read back with read_profile_file to check they stay valid. write_profile_file emits plain TOML, so the
comment lines at the top of a profile are kept but comments between exemplars are not; the joint JSONL beside
the profiles is the reviewable source for what was added.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_latent.profiles.spec import ProfileSpec, read_profile_file, write_profile_file

PROFILES = ("risk", "roi", "category")


def normalise(text: str) -> str:
    """The form two texts are compared in: case, punctuation and spacing do not make a new exemplar."""
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()


def read_jsonl(path: Path) -> list[dict]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise SystemExit(f"{path}:{number}: expected a JSON object per line")
        items.append(item)
    return items


def second_judge_index(items: list[dict]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The second judge's labels by id and by normalised text (a judge may key its lines either way)."""
    by_id, by_text = {}, {}
    for item in items:
        if "id" in item:
            by_id[str(item["id"])] = item
        if "text" in item:
            by_text[normalise(item["text"])] = item
    return by_id, by_text


def header_comments(path: Path) -> str:
    """The comment block a profile file starts with (write_profile_file would drop it)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def merge(
    joint: list[dict],
    second: list[dict] | None,
    profiles_dir: Path,
    dry_run: bool,
    profiles: tuple[str, ...] = PROFILES,
    drop_disagreed: bool = False,
) -> dict[str, Counter]:
    by_id, by_text = second_judge_index(second) if second is not None else ({}, {})
    report: dict[str, Counter] = {}
    for profile in profiles:
        path = profiles_dir / f"{profile}.toml"
        spec = read_profile_file(path)
        labels = {label.name: label for label in spec.labels}
        present = {normalise(e) for label in spec.labels for e in label.examples}
        counts: Counter = Counter()
        for item in joint:
            label = item.get(profile)
            if label not in labels:
                raise SystemExit(f"item {item.get('id')}: {profile} label {label!r} is not one of {sorted(labels)}")
            if second is not None:
                other = by_id.get(str(item.get("id"))) or by_text.get(normalise(item["text"]))
                second_label = None if other is None else other.get(profile)
                if second_label != label:
                    counts["not judged twice" if second_label is None else "judges disagree"] += 1
                    if drop_disagreed:
                        counts["removed"] += _remove(spec, normalise(item["text"]))
                        present.discard(normalise(item["text"]))
                    continue
            key = normalise(item["text"])
            if key in present:
                counts["already present"] += 1
                continue
            present.add(key)
            labels[label].examples.append(item["text"].strip())
            counts[f"added to {label}"] += 1
        report[profile] = counts
        if dry_run:
            continue
        comments = header_comments(path)
        write_profile_file(ProfileSpec.model_validate(spec.model_dump()), path)
        if comments:
            path.write_text(comments + path.read_text(encoding="utf-8"), encoding="utf-8")
        reread = read_profile_file(path)  # raises ProfileError if the file no longer validates
        if reread.model_dump() != spec.model_dump():
            raise SystemExit(f"{path}: did not round-trip; restore it with git checkout")
    return report


def _remove(spec: ProfileSpec, key: str) -> int:
    """Remove every exemplar of the spec whose normalised text is `key`; how many were removed."""
    removed = 0
    for label in spec.labels:
        kept = [e for e in label.examples if normalise(e) != key]
        removed += len(label.examples) - len(kept)
        label.examples[:] = kept
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("joint", type=Path, help="JSONL of proposals labelled on risk, roi and category")
    parser.add_argument("--second-judge", type=Path, help="JSONL of a blind second judge's labels (by id or text)")
    parser.add_argument("--profiles-dir", type=Path, default=ROOT / "profiles")
    parser.add_argument("--dry-run", action="store_true", help="report what would be added; write nothing")
    parser.add_argument(
        "--profiles", nargs="+", choices=PROFILES, default=list(PROFILES), help="merge into these profiles only"
    )
    parser.add_argument(
        "--drop-disagreed",
        action="store_true",
        help="also remove items already in a profile where the second judge disagrees or did not judge them",
    )
    args = parser.parse_args(argv)
    if args.drop_disagreed and not args.second_judge:
        parser.error("--drop-disagreed needs --second-judge")
    joint = read_jsonl(args.joint)
    second = read_jsonl(args.second_judge) if args.second_judge else None
    report = merge(joint, second, args.profiles_dir, args.dry_run, tuple(args.profiles), args.drop_disagreed)
    for profile, counts in report.items():
        print(f"{profile}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
