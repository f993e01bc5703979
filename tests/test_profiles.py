"""Profile files: validation errors name the file and field; taught exemplars merge in."""

import json

import pytest
from conftest import write_profile

from mcp_latent.errors import NotFound, ProfileError
from mcp_latent.profiles.registry import ProfileRegistry, import_taught_logs
from mcp_latent.profiles.spec import builtin_profiles_dir, read_profile_file
from mcp_latent.store.sqlite import SqliteStore


def test_shipped_profiles_are_valid_and_rich():
    registry = ProfileRegistry(builtin_profiles_dir().parent / "does-not-exist")
    profiles = registry.load_all()
    assert {"risk", "roi", "category"} <= set(profiles)
    for profile in profiles.values():
        assert all(len(label.examples) >= 25 for label in profile.spec.labels), profile.name
    assert profiles["risk"].spec.ordinal and [lab.name for lab in profiles["risk"].spec.answer_labels] == [
        "low",
        "medium",
        "high",
    ]


def test_missing_field_names_file_and_field(tmp_path):
    path = tmp_path / "p.toml"
    # (`examples` may be missing: a cold-start profile has label names only and learns from `teach`.)
    path.write_text('name = "p"\n[[labels]]\nexamples = ["y"]\n[[labels]]\nname = "b"\nexamples = ["x"]\n')
    with pytest.raises(ProfileError) as err:
        read_profile_file(path)
    assert str(path) in str(err.value) and "labels.0.name" in str(err.value)


def test_empty_example_and_single_label_rejected(tmp_path):
    path = write_profile(tmp_path, "p", {"a": ["ok", " "], "b": ["fine"]})
    with pytest.raises(ProfileError, match="labels.0.examples"):
        read_profile_file(path)
    path = write_profile(tmp_path, "q", {"a": ["ok"]})
    with pytest.raises(ProfileError, match="labels"):
        read_profile_file(path)


def test_wrong_encoding_and_bad_toml(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes('name = "p" # caf\xe9'.encode("latin-1"))
    with pytest.raises(ProfileError, match="not UTF-8"):
        read_profile_file(path)
    path.write_text("name = ")
    with pytest.raises(ProfileError, match="TOML syntax"):
        read_profile_file(path)


def test_name_must_match_file_and_values_all_or_none(tmp_path):
    path = write_profile(tmp_path, "p", {"a": ["x"], "b": ["y"]})
    path.rename(tmp_path / "other.toml")
    with pytest.raises(ProfileError, match="must match the file name"):
        read_profile_file(tmp_path / "other.toml")
    path = tmp_path / "v.toml"
    path.write_text(
        'name = "v"\n[[labels]]\nname = "a"\nvalue = 1\nexamples = ["x"]\n[[labels]]\nname = "b"\nexamples = ["y"]\n'
    )
    with pytest.raises(ProfileError, match="every label has a `value`"):
        read_profile_file(path)


def test_taught_exemplars_persist_in_the_store_and_merge(tmp_path):
    write_profile(tmp_path, "p", {"a": ["x"], "b": ["y"]})
    store = SqliteStore(tmp_path / "data", 4, "m")
    registry = ProfileRegistry(tmp_path, include_builtin=False, store=store)
    registry.load_all()
    registry.append_taught("p", "a", "new text")
    assert registry.get("p").spec.labels[0].examples == ["x", "new text"]
    again = ProfileRegistry(tmp_path, include_builtin=False, store=store)
    profile = again.load_all()["p"]
    assert profile.spec.labels[0].examples == ["x", "new text"] and profile.taught == 1
    assert not list(tmp_path.glob("*.taught.jsonl"))  # the store is the only place taught exemplars go
    with pytest.raises(NotFound, match="available: p"):
        again.get("nope")
    store.close()


def test_taught_logs_of_older_versions_are_imported_once_without_loss(tmp_path):
    write_profile(tmp_path, "p", {"a": ["x"], "b": ["y"]})
    log = tmp_path / "p.taught.jsonl"
    lines = [{"label": "a", "text": "first"}, {"label": "b", "text": "second"}, {"label": "a", "text": "first"}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"label": "a", "te', encoding="utf-8")
    store = SqliteStore(tmp_path / "data", 4, "m")
    assert import_taught_logs(store, tmp_path) == 3  # the torn last line of a crash is skipped, repeats are kept
    assert import_taught_logs(store, tmp_path) == 0
    with log.open("a", encoding="utf-8") as more:  # an older server still appending
        more.write('\n{"label": "b", "text": "third"}\n')
    assert import_taught_logs(store, tmp_path) == 1
    registry = ProfileRegistry(tmp_path, include_builtin=False, store=store)
    profile = registry.load_all()["p"]
    assert profile.spec.labels[0].examples == ["x", "first", "first"] and profile.taught == 4
    assert {t.source for t in store.taught()} == {"import:p.taught.jsonl"}
    store.close()


def test_user_profile_shadows_builtin(tmp_path):
    write_profile(tmp_path, "risk", {"ok": ["x"], "bad": ["y"]})
    profile = ProfileRegistry(tmp_path).load_all()["risk"]
    assert not profile.builtin and [lab.name for lab in profile.spec.labels] == ["ok", "bad"]
