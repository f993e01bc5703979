"""tools/merge_exemplars.py: joint labels land in the right profile labels, a second judge's disagreement keeps
an item out of that profile only, reruns add nothing, and the written profiles stay valid."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from mcp_latent.profiles.spec import read_profile_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import merge_exemplars  # noqa: E402

JOINT = [
    {
        "id": "j0001",
        "text": "ship the migration tonight, no backup",
        "risk": "high",
        "roi": "low",
        "category": "engineering",
    },
    {
        "id": "j0002",
        "text": "Enforce MFA on the 7 admin accounts",
        "risk": "low",
        "roi": "high",
        "category": "security",
    },
]


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    target = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", target)
    return target


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def examples(profiles_dir: Path, profile: str, label: str) -> list[str]:
    spec = read_profile_file(profiles_dir / f"{profile}.toml")
    return next(lab.examples for lab in spec.labels if lab.name == label)


def test_joint_items_are_added_once_to_each_profile(profiles_dir: Path, tmp_path: Path) -> None:
    joint = write_jsonl(tmp_path / "joint.jsonl", JOINT)
    before = (profiles_dir / "risk.toml").read_text(encoding="utf-8").splitlines()[0]
    assert merge_exemplars.main([str(joint), "--profiles-dir", str(profiles_dir)]) == 0
    assert "ship the migration tonight, no backup" in examples(profiles_dir, "risk", "high")
    assert "ship the migration tonight, no backup" in examples(profiles_dir, "roi", "low")
    assert "Enforce MFA on the 7 admin accounts" in examples(profiles_dir, "category", "security")
    assert (profiles_dir / "risk.toml").read_text(encoding="utf-8").splitlines()[0] == before  # header comment kept
    sizes = {p: (profiles_dir / f"{p}.toml").read_text(encoding="utf-8") for p in merge_exemplars.PROFILES}
    write_jsonl(joint, [dict(JOINT[0], text="SHIP the migration tonight -- no backup!")] + JOINT[1:])
    report = merge_exemplars.merge(merge_exemplars.read_jsonl(joint), None, profiles_dir, dry_run=False)
    assert report["risk"]["already present"] == 2
    assert {p: (profiles_dir / f"{p}.toml").read_text(encoding="utf-8") for p in sizes} == sizes


def test_second_judge_disagreement_skips_only_that_profile(profiles_dir: Path, tmp_path: Path) -> None:
    joint = write_jsonl(tmp_path / "joint.jsonl", JOINT)
    judge2 = write_jsonl(
        tmp_path / "judge2.jsonl",
        [
            {"id": "j0001", "risk": "high", "roi": "medium", "category": "engineering"},
            {"text": "enforce MFA on the 7 admin accounts.", "risk": "low", "roi": "high"},
        ],
    )
    report = merge_exemplars.merge(
        merge_exemplars.read_jsonl(joint), merge_exemplars.read_jsonl(judge2), profiles_dir, dry_run=False
    )
    assert report["roi"]["judges disagree"] == 1 and report["category"]["not judged twice"] == 1
    assert "ship the migration tonight, no backup" in examples(profiles_dir, "risk", "high")
    assert all("ship the migration tonight" not in e for e in examples(profiles_dir, "roi", "low"))
    assert "Enforce MFA on the 7 admin accounts" in examples(profiles_dir, "roi", "high")
    assert all("Enforce MFA on the 7" not in e for e in examples(profiles_dir, "category", "security"))


def test_unknown_label_is_refused_before_anything_is_written(profiles_dir: Path, tmp_path: Path) -> None:
    joint = write_jsonl(tmp_path / "joint.jsonl", [dict(JOINT[0], risk="severe")])
    before = (profiles_dir / "risk.toml").read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match="severe"):
        merge_exemplars.main([str(joint), "--profiles-dir", str(profiles_dir)])
    assert (profiles_dir / "risk.toml").read_text(encoding="utf-8") == before


def test_an_item_labelled_for_one_profile_only_is_skipped_by_the_others(profiles_dir: Path, tmp_path: Path) -> None:
    # minimal pairs are written for one profile (tools/data/exemplars/minimal_pairs.jsonl): no other label at all
    pair = [
        {"id": "mp-1a", "text": "Drop the old table after a snapshot and two weeks renamed", "risk": "low"},
        {"id": "mp-1b", "text": "Drop the old table today without a snapshot", "risk": "high"},
    ]
    joint = write_jsonl(tmp_path / "pairs.jsonl", pair)
    roi = (profiles_dir / "roi.toml").read_text(encoding="utf-8")
    report = merge_exemplars.merge(merge_exemplars.read_jsonl(joint), None, profiles_dir, dry_run=False)
    assert report["roi"]["not labelled for this profile"] == 2 and report["risk"]["added to high"] == 1
    assert "Drop the old table today without a snapshot" in examples(profiles_dir, "risk", "high")
    assert (profiles_dir / "roi.toml").read_text(encoding="utf-8") == roi
    # a null label given explicitly is still a mistake to report, not an item to skip
    write_jsonl(joint, [dict(pair[0], roi=None)])
    with pytest.raises(SystemExit, match="roi label None"):
        merge_exemplars.merge(merge_exemplars.read_jsonl(joint), None, profiles_dir, dry_run=True)


def test_profiles_option_merges_into_the_named_profiles_only(profiles_dir: Path, tmp_path: Path) -> None:
    joint = write_jsonl(tmp_path / "joint.jsonl", JOINT)
    category = (profiles_dir / "category.toml").read_text(encoding="utf-8")
    assert merge_exemplars.main([str(joint), "--profiles-dir", str(profiles_dir), "--profiles", "risk", "roi"]) == 0
    assert "Enforce MFA on the 7 admin accounts" in examples(profiles_dir, "roi", "high")
    assert (profiles_dir / "category.toml").read_text(encoding="utf-8") == category
    # the abstain label survives the rewrite
    assert [lab.name for lab in read_profile_file(profiles_dir / "risk.toml").labels if lab.abstain] == ["off_topic"]


def test_drop_disagreed_removes_items_merged_before_the_second_judge(profiles_dir: Path, tmp_path: Path) -> None:
    joint = write_jsonl(tmp_path / "joint.jsonl", JOINT)
    assert merge_exemplars.main([str(joint), "--profiles-dir", str(profiles_dir), "--profiles", "risk", "roi"]) == 0
    judge2 = write_jsonl(
        tmp_path / "judge2.jsonl",
        [
            {"id": "j0001", "risk": "high", "roi": "medium", "category": "engineering"},
            {"id": "j0002", "risk": "low", "roi": "high"},
        ],
    )
    args = [str(joint), "--second-judge", str(judge2), "--profiles-dir", str(profiles_dir), "--drop-disagreed"]
    assert merge_exemplars.main(args + ["--profiles", "risk", "roi"]) == 0
    assert "ship the migration tonight, no backup" in examples(profiles_dir, "risk", "high")  # agreed: stays
    assert all("ship the migration tonight" not in e for e in examples(profiles_dir, "roi", "low"))  # removed
    assert "Enforce MFA on the 7 admin accounts" in examples(profiles_dir, "roi", "high")
    report = merge_exemplars.merge(
        merge_exemplars.read_jsonl(joint), merge_exemplars.read_jsonl(judge2), profiles_dir, False, ("roi",), True
    )
    assert report["roi"]["removed"] == 0 and report["roi"]["already present"] == 1  # a rerun changes nothing
    with pytest.raises(SystemExit):
        merge_exemplars.main([str(joint), "--profiles-dir", str(profiles_dir), "--drop-disagreed"])


def test_inline_second_judge_groups_and_off_topic(profiles_dir: Path, tmp_path: Path) -> None:
    rows = [
        {"id": "r1", "text": "Move the nightly export to the read replica", "source": "acme/repo"}
        | {"risk": "low", "roi": "medium", "category": "engineering"}
        | {"risk_judge2": "low", "roi_judge2": "high", "category_judge2": "engineering"},
        {"id": "r2", "text": "thanks, merged!", "source": "acme/repo"}
        | {p: None for p in merge_exemplars.PROFILES}
        | {f"{p}_judge2": None for p in merge_exemplars.PROFILES},
    ]
    joint = write_jsonl(tmp_path / "realistic.jsonl", rows)
    off_topic = tmp_path / "off_topic.txt"
    off_topic.write_text("hello\n", encoding="utf-8")
    argv = [str(joint), "--profiles-dir", str(profiles_dir), "--inline-second-judge", "--group-field", "source"]
    assert merge_exemplars.main(argv + ["--off-topic-label", "off_topic", "--off-topic-file", str(off_topic)]) == 0
    low = read_profile_file(profiles_dir / "risk.toml").labels[0]
    assert low.name == "low" and low.examples[len(low.groups) - 1] == rows[0]["text"]
    assert low.groups[-1] == "acme/repo"  # grouped exemplars lead the label, with their group
    roi = read_profile_file(profiles_dir / "roi.toml")
    assert rows[0]["text"] not in [e for lab in roi.labels for e in lab.examples]  # the judges disagree on roi
    assert "thanks, merged!" in examples(profiles_dir, "category", "off_topic")
    assert off_topic.read_text(encoding="utf-8").splitlines() == ["hello", "thanks, merged!"]
