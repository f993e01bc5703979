#!/usr/bin/env python3
"""Append jointly labelled proposals to the shipped risk, roi and category profiles.

    .venv/bin/python tools/merge_exemplars.py tools/data/exemplars/joint.jsonl --dry-run
    .venv/bin/python tools/merge_exemplars.py tools/data/exemplars/joint.jsonl --second-judge judge2.jsonl
    .venv/bin/python tools/merge_exemplars.py joint2.jsonl --second-judge joint2_judge2.jsonl --drop-disagreed
    .venv/bin/python tools/merge_exemplars.py tools/data/exemplars/minimal_pairs.jsonl --pairs --profiles risk roi
    .venv/bin/python tools/merge_exemplars.py tools/data/realistic/train.jsonl --inline-second-judge \
        --group-field source --off-topic-label off_topic --off-topic-file tools/data/exemplars/off_topic_work.txt

Each line of the joint file is {"id", "text", "risk", "roi", "category", ...}: one proposal labelled on all
three profiles at once. With --second-judge (lines {"id" or "text", "risk", "roi", "category"}, labelled blind
by another judge), an item goes into a profile only where both judges gave that profile the same label: a
disagreement there means the item is ambiguous for that profile, and an ambiguous exemplar teaches the fit
noise. A judge may leave a profile out (or give null) to abstain on it; the item is then skipped there.

With --drop-disagreed, items of the joint file that are already in a profile (merged earlier on one judge's
word) leave it where the second judge disagrees there or did not judge them, so a batch merged before its second
judge finished ends up as if it had been merged with both.

With --inline-second-judge the second judge's labels are the items' own `<profile>_judge2` fields (the shape of
tools/data/realistic/*.jsonl). With --group-field, each added exemplar records the item's value of that field
(its writer or source) in the label's `groups`: the fit holds a group out whole when it cross-validates, so the
operating point is chosen on text whose writer it never saw (issue 24). Grouped exemplars are kept first in a
label, the hand-written ones after them (a `groups` list shorter than `examples` covers the first ones only).
With --off-topic-label, an item whose judges both give a profile null (it proposes nothing) goes to that abstain
label, and --off-topic-file (the reviewable source of the shipped off-topic label) gets the new texts too.

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
    inline_second: bool = False,
    group_field: str | None = None,
    off_topic_label: str | None = None,
    as_pairs: bool = False,
) -> dict[str, Counter]:
    by_id, by_text = second_judge_index(second) if second is not None else ({}, {})
    report: dict[str, Counter] = {}
    for profile in profiles:
        path = profiles_dir / f"{profile}.toml"
        spec = read_profile_file(path)
        labels = {label.name: label for label in spec.labels}
        present = {normalise(e) for label in spec.labels for e in label.examples + label.pair_examples}
        counts: Counter = Counter()
        for item in joint:
            label = item.get(profile)
            if label is None and off_topic_label is not None:
                label = off_topic_label
            if label is None and profile not in item:  # labelled for other profiles only (a minimal pair of one)
                counts["not labelled for this profile"] += 1
                continue
            if label not in labels:
                raise SystemExit(f"item {item.get('id')}: {profile} label {label!r} is not one of {sorted(labels)}")
            if inline_second:
                second_label = item.get(f"{profile}_judge2")
                if second_label is None and off_topic_label is not None and f"{profile}_judge2" in item:
                    second_label = off_topic_label
                if second_label != label:
                    counts["not judged twice" if f"{profile}_judge2" not in item else "judges disagree"] += 1
                    continue
            elif second is not None:
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
            target = labels[label]
            # The off-topic label stays in the order of its source file (it is that file, line for line).
            group = str(item.get(group_field) or "") if group_field and label != off_topic_label else ""
            if as_pairs:  # the memory's evidence only (`pair_examples`), never the head's
                target.pair_examples.append(item["text"].strip())
            elif group:  # grouped exemplars first: `groups` covers a prefix of `examples`
                at = len(target.groups)
                target.examples.insert(at, item["text"].strip())
                target.groups.insert(at, group)
            elif target.groups and len(target.groups) == len(target.examples):
                target.examples.append(item["text"].strip())
                target.groups.append("")
            else:
                target.examples.append(item["text"].strip())
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
        groups = label.groups + [""] * (len(label.examples) - len(label.groups))
        kept = [(e, g) for e, g in zip(label.examples, groups, strict=True) if normalise(e) != key]
        removed += len(label.examples) - len(kept)
        label.examples[:] = [e for e, _ in kept]
        label.groups[:] = [g for _, g in kept][: len(label.groups)]
    return removed


def append_off_topic(joint: list[dict], path: Path, dry_run: bool) -> int:
    """Add the items every judge left null on every profile (they propose nothing) to the off-topic source file;
    how many were new."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    present = {normalise(line) for line in lines if line.strip()}
    new = []
    for item in joint:
        if all(item.get(p) is None and item.get(f"{p}_judge2", None) is None for p in PROFILES):
            if normalise(item["text"]) not in present:
                present.add(normalise(item["text"]))
                new.append(item["text"].strip())
    if new and not dry_run:
        path.write_text("\n".join(lines + new) + "\n", encoding="utf-8")
    return len(new)


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
    parser.add_argument(
        "--inline-second-judge", action="store_true", help="the second judge's labels are the `<profile>_judge2` fields"
    )
    parser.add_argument("--group-field", help="record this field of each item (its writer or source) as its group")
    parser.add_argument("--off-topic-label", help="abstain label for items both judges left null on a profile")
    parser.add_argument("--off-topic-file", type=Path, help="also append such items to this file (one per line)")
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="add the items to the labels' `pair_examples` (minimal pairs: the memory's evidence, not exemplars)",
    )
    args = parser.parse_args(argv)
    if args.drop_disagreed and not args.second_judge:
        parser.error("--drop-disagreed needs --second-judge")
    if args.off_topic_file and not args.off_topic_label:
        parser.error("--off-topic-file needs --off-topic-label")
    joint = read_jsonl(args.joint)
    second = read_jsonl(args.second_judge) if args.second_judge else None
    report = merge(
        joint,
        second,
        args.profiles_dir,
        args.dry_run,
        tuple(args.profiles),
        args.drop_disagreed,
        args.inline_second_judge,
        args.group_field,
        args.off_topic_label,
        args.pairs,
    )
    if args.off_topic_file:
        print(f"{args.off_topic_file}: added {append_off_topic(joint, args.off_topic_file, args.dry_run)}")
    for profile, counts in report.items():
        print(f"{profile}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
