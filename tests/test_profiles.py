"""Profile files: validation errors name the file and field; taught exemplars are read from the store only."""

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


def test_taught_exemplars_live_in_the_store_and_the_loaded_profile_holds_the_file_alone(tmp_path):
    # The registry used to keep a second copy: each profile's spec with the taught exemplars merged in, updated
    # only by `append_taught`/`merge_taught` (which only tests called), so a server's copy went stale at its
    # first teach. Now the store holds them and the owner (LiveProfile) starts from what the load read.
    path = write_profile(tmp_path, "p", {"a": ["x"], "b": ["y"]})
    store = SqliteStore(tmp_path / "data", 4, "m")
    store.add_taught("p", "a", "new text", source="teach")
    store.add_taught("p", "gone", "a label the file no longer has", source="teach")
    store.add_taught("p", "b", "another", source="teach")
    registry = ProfileRegistry(tmp_path, include_builtin=False, store=store)
    profile = registry.load_all()["p"]
    assert profile.spec == read_profile_file(path)  # the file's content, nothing taught merged in
    assert profile.taught_entries == [("a", "new text"), ("b", "another")] and profile.taught == 2
    assert profile.summary()["exemplars"] == 4 and registry.taught_cursor == store.taught()[-1].id
    assert not hasattr(registry, "append_taught") and not hasattr(registry, "merge_taught")
    assert not list(tmp_path.glob("*.taught.jsonl"))  # the store is the only place taught exemplars go
    with pytest.raises(NotFound, match="available: p"):
        registry.get("nope")
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
    assert profile.taught_entries == [("a", "first"), ("b", "second"), ("a", "first"), ("b", "third")]
    assert {t.source for t in store.taught()} == {"import:p.taught.jsonl"}
    store.close()


def test_user_profile_shadows_builtin(tmp_path):
    write_profile(tmp_path, "risk", {"ok": ["x"], "bad": ["y"]})
    profile = ProfileRegistry(tmp_path).load_all()["risk"]
    assert not profile.builtin and [lab.name for lab in profile.spec.labels] == ["ok", "bad"]
