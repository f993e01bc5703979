"""The profile-data checks (tools/check_profile_data.py) find what they claim to, and the shipped profiles pass
the ones that need no model: no duplicate exemplars, balanced labels, the rubric stated."""

import importlib.util
import sys

import numpy as np
import pytest
from conftest import ROOT

from mcp_latent.profiles.spec import ProfileSpec, builtin_profiles_dir, read_profile_file

_spec = importlib.util.spec_from_file_location("check_profile_data", ROOT / "tools" / "check_profile_data.py")
check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check  # dataclasses look their module up there
_spec.loader.exec_module(check)


def spec_of(labels: dict[str, list[str]]) -> ProfileSpec:
    return ProfileSpec(name="t", labels=[{"name": n, "examples": e} for n, e in labels.items()])


def test_duplicates_ignore_case_and_punctuation_and_cross_labels():
    spec = spec_of({"a": ["Fix the bug.", "ship it"], "b": ["fix the BUG", "other"]})
    found = check.exact_duplicates(spec)
    assert len(found) == 1 and "[b] 'fix the BUG'" in found[0].detail


def test_near_duplicates_use_the_cutoff_and_name_cross_label_pairs_first():
    spec = spec_of({"a": ["one", "two"], "b": ["three"]})
    vectors = np.array([[1.0, 0.0], [0.96, 0.28], [0.97, 0.243]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = check.near_duplicates(spec, vectors, cutoff=0.95)
    assert [f.kind for f in found] == ["near-duplicate across labels", "near-duplicate across labels", "near-duplicate"]
    assert check.near_duplicates(spec, vectors, cutoff=0.9999) == []


def test_balance_flags_a_lopsided_profile():
    assert check.balance(spec_of({"a": ["x"] * 3, "b": ["y"] * 2})) == []
    assert check.balance(spec_of({"a": ["x"] * 4, "b": ["y"] * 2}))[0].kind == "imbalance"


@pytest.mark.parametrize("path", sorted(builtin_profiles_dir().glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_profile_has_no_duplicates_balanced_labels_and_its_rubric(path):
    spec = read_profile_file(path)
    assert check.exact_duplicates(spec) == []
    assert check.balance(spec) == []
    assert spec.description and all(label.description for label in spec.labels)


def test_balance_counts_hand_written_exemplars_not_a_grouped_sample_with_its_prior():
    labels = [
        {"name": "a", "examples": ["r1", "r2", "r3", "x", "x2"], "groups": ["src", "src", "other"]},
        {"name": "b", "examples": ["y", "y2"]},
    ]
    assert check.balance(ProfileSpec(name="t", labels=labels)) == []
    labels[0]["groups"] = []
    assert check.balance(ProfileSpec(name="t", labels=labels))[0].kind == "imbalance"


def test_balance_ignores_abstain_labels():
    spec = ProfileSpec(
        name="t",
        labels=[
            {"name": "a", "examples": ["x"] * 2},
            {"name": "b", "examples": ["y"] * 2},
            {"name": "none", "abstain": True, "examples": ["z"] * 9},
        ],
    )
    assert check.balance(spec) == []


@pytest.mark.parametrize("name", ["risk", "roi", "category"])
def test_shipped_off_topic_label_is_the_reviewable_source(name):
    # The generic texts (what `define_profile` also gets), then work chatter that proposes nothing (status, bots,
    # symptom-only bug reports): off-topic for a proposal's risk, roi and category, not for every profile.
    exemplars = ROOT / "tools" / "data" / "exemplars"
    source = [
        *(exemplars / "off_topic.txt").read_text(encoding="utf-8").splitlines(),
        *(exemplars / "off_topic_work.txt").read_text(encoding="utf-8").splitlines(),
    ]
    spec = read_profile_file(builtin_profiles_dir() / f"{name}.toml")
    abstain = [label for label in spec.labels if label.abstain]
    assert [label.name for label in abstain] == ["off_topic"]
    assert abstain[0].examples == [line.strip() for line in source if line.strip()]
