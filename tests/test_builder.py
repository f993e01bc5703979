"""`profiles build`: reading JSONL/CSV, reporting bad rows, writing a loadable profile."""

import json

import pytest

from mcp_latent.errors import InvalidInput
from mcp_latent.profiles.builder import build_profile, read_rows
from mcp_latent.profiles.spec import read_profile_file


def jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_builds_from_jsonl_with_split_and_reports(tmp_path):
    rows = [
        {"text": "card arrived", "label": "card", "split": "train"},
        {"text": "card arrived", "label": "card", "split": "train"},  # duplicate
        {"text": "where is my card", "label": "card", "split": "train"},
        {"text": "refund please", "label": "refund", "split": "train"},
        {"text": "   ", "label": "refund", "split": "train"},  # empty
        {"text": "ambiguous", "label": "card", "split": "train"},
        {"text": "ambiguous", "label": "refund", "split": "train"},  # conflict
        {"text": "test row", "label": "refund", "split": "test"},  # other split
    ]
    spec, path, report = build_profile(jsonl(tmp_path / "d.jsonl", rows), "bank", tmp_path / "out", split="train")
    assert (report.duplicates, report.empty, report.conflicting, report.other_split) == (1, 1, 2, 1)
    assert report.kept == 3
    loaded = read_profile_file(path)
    assert {lab.name: lab.examples for lab in loaded.labels} == {
        "card": ["card arrived", "where is my card"],
        "refund": ["refund please"],
    }


def test_csv_with_custom_fields_keeps_label_names(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("utterance,intent\nhello there,Greet Me\nbye now,say_bye!\n", encoding="utf-8")
    spec, _, _ = build_profile(path, "chat", tmp_path, text_field="utterance", label_field="intent", split_field=None)
    assert [lab.name for lab in spec.labels] == ["Greet Me", "say_bye!"]


def test_missing_fields_are_named(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"sentence": "x", "label": "a"}])
    with pytest.raises(InvalidInput, match=r"\['text'\] not found.*--text-field"):
        build_profile(path, "p", tmp_path)


def test_wrong_encoding_and_bad_json(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes('{"text": "caf\xe9", "label": "a"}\n'.encode("latin-1"))
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_rows(path)
    path.write_text('{"text": "ok", "label": "a"}\n{broken\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"d.jsonl:2: not valid JSON"):
        read_rows(path)


def test_empty_labels_and_single_label_are_refused(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": ""}, {"text": "y", "label": "a"}])
    with pytest.raises(InvalidInput, match="at least 2"):
        build_profile(path, "p", tmp_path)


def test_unknown_format(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("x")
    with pytest.raises(InvalidInput, match="unknown format"):
        read_rows(path)
