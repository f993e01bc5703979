"""Profile files: validation errors name the file and field; taught exemplars merge in."""

import pytest
from conftest import write_profile

from mcp_latent.errors import NotFound, ProfileError
from mcp_latent.profiles import ProfileRegistry, builtin_profiles_dir, read_profile_file


def test_shipped_profiles_are_valid_and_rich():
    registry = ProfileRegistry(builtin_profiles_dir().parent / "does-not-exist")
    profiles = registry.load_all()
    assert {"risk", "roi", "category"} <= set(profiles)
    for profile in profiles.values():
        assert all(len(label.examples) >= 25 for label in profile.spec.labels), profile.name
    assert profiles["risk"].spec.ordinal and [lab.name for lab in profiles["risk"].spec.labels] == [
        "low",
        "medium",
        "high",
    ]


def test_missing_field_names_file_and_field(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\n[[labels]]\nname = "a"\n[[labels]]\nname = "b"\nexamples = ["x"]\n')
    with pytest.raises(ProfileError) as err:
        read_profile_file(path)
    assert str(path) in str(err.value) and "labels.0.examples" in str(err.value)


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


def test_taught_exemplars_persist_and_merge(tmp_path):
    write_profile(tmp_path, "p", {"a": ["x"], "b": ["y"]})
    registry = ProfileRegistry(tmp_path, include_builtin=False)
    registry.load_all()
    registry.append_taught("p", "a", "new text")
    again = ProfileRegistry(tmp_path, include_builtin=False)
    profile = again.load_all()["p"]
    assert profile.spec.labels[0].examples == ["x", "new text"] and profile.taught == 1
    with pytest.raises(NotFound, match="available: p"):
        again.get("nope")


def test_user_profile_shadows_builtin(tmp_path):
    write_profile(tmp_path, "risk", {"ok": ["x"], "bad": ["y"]})
    profile = ProfileRegistry(tmp_path).load_all()["risk"]
    assert not profile.builtin and [lab.name for lab in profile.spec.labels] == ["ok", "bad"]
