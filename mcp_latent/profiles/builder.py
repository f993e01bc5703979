"""Build a profile file from labeled data (JSONL or CSV): read, clean, report, write TOML."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mcp_latent.errors import InvalidInput
from mcp_latent.profiles.spec import (
    DEFAULT_TARGET_OUT_OF_SCOPE_RECALL,
    OFF_TOPIC_LABEL,
    PROFILE_NAME_RE,
    ProfileSpec,
    off_topic_label,
    write_profile_file,
)

# Per-label texts are capped so a profile file stays loadable; past this, extra rows add little to kNN/linear fits.
MAX_EXAMPLES_PER_LABEL = 5000


@dataclass
class BuildReport:
    """What the builder read and what it kept."""

    rows: int = 0
    kept: int = 0
    empty: int = 0
    duplicates: int = 0
    conflicting: int = 0
    other_split: int = 0
    labels: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [
            f"read {self.rows} rows; kept {self.kept} exemplars in {len(self.labels)} labels",
            f"skipped: {self.empty} empty, {self.duplicates} duplicate, {self.conflicting} with conflicting labels, "
            f"{self.other_split} from other splits",
        ]
        if self.labels:
            fewest = min(self.labels.values())
            out.append(f"exemplars per label: {fewest} to {max(self.labels.values())}")
            if fewest < 5:
                thin = sorted(label for label, n in self.labels.items() if n < 5)
                out.append(f"warning: labels with fewer than 5 exemplars calibrate poorly: {', '.join(thin[:10])}")
        return out


def read_rows(path: Path) -> list[dict]:
    """Rows of a .jsonl/.ndjson or .csv file as dicts; errors say which line is wrong."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8, e.g. "
            "`iconv -f latin1 -t utf-8`."
        ) from exc
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return list(csv.DictReader(content.splitlines()))
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise InvalidInput(f"{path}: unknown format {suffix!r}; use .jsonl (one JSON object per line) or .csv.")
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object."
            ) from exc
        if not isinstance(row, dict):
            raise InvalidInput(f"{path}:{number}: expected a JSON object, got {type(row).__name__}.")
        rows.append(row)
    return rows


def collect_examples(
    rows: list[dict],
    text_field: str = "text",
    label_field: str = "label",
    split_field: str | None = None,
    split: str | None = None,
    exclude_labels: set[str] | None = None,
) -> tuple[dict[str, list[str]], BuildReport]:
    """Group cleaned texts by label; duplicates (same text, same label) and conflicts (same text, several labels)
    are dropped and counted."""
    report = BuildReport(rows=len(rows))
    if rows:
        missing = [f for f in (text_field, label_field) if f not in rows[0]]
        if missing:
            raise InvalidInput(
                f"field(s) {missing} not found; the rows have {sorted(rows[0])}. "
                "Name the right ones with --text-field / --label-field."
            )
        if split_field and split is not None and split_field not in rows[0]:
            raise InvalidInput(f"split field {split_field!r} not found; the rows have {sorted(rows[0])}.")
    labels_of_text: dict[str, set[str]] = {}
    order: list[tuple[str, str]] = []
    for row in rows:
        if split_field and split is not None and str(row.get(split_field)) != split:
            report.other_split += 1
            continue
        text = str(row.get(text_field) or "").strip()
        label = str(row.get(label_field) if row.get(label_field) is not None else "").strip()
        if not text or not label:
            report.empty += 1
            continue
        if exclude_labels and label in exclude_labels:
            report.other_split += 1
            continue
        seen = labels_of_text.setdefault(text, set())
        if label in seen:
            report.duplicates += 1
            continue
        seen.add(label)
        order.append((text, label))
    examples: dict[str, list[str]] = {}
    for text, label in order:
        if len(labels_of_text[text]) > 1:
            report.conflicting += 1
            continue
        bucket = examples.setdefault(label, [])
        if len(bucket) < MAX_EXAMPLES_PER_LABEL:
            bucket.append(text)
    report.labels = Counter({label: len(texts) for label, texts in examples.items()})
    report.kept = sum(report.labels.values())
    if len(examples) < 2:
        raise InvalidInput(f"found {len(examples)} label(s) with usable rows; a profile needs at least 2.")
    return examples, report


def build_profile(
    source: Path,
    name: str,
    out_dir: Path,
    description: str = "",
    text_field: str = "text",
    label_field: str = "label",
    split_field: str | None = "split",
    split: str | None = None,
    target_accuracy: float = 0.98,
    target_out_of_scope_recall: float = DEFAULT_TARGET_OUT_OF_SCOPE_RECALL,
    exclude_labels: set[str] | None = None,
    off_topic: bool = False,
) -> tuple[ProfileSpec, Path, BuildReport]:
    """Read labeled rows and write `<out_dir>/<name>.toml`; returns the spec, its path and the report. `off_topic`
    adds the shared off-topic texts as an abstain label (a small label set otherwise answers small talk too)."""
    if not PROFILE_NAME_RE.match(name):  # checked first: the name becomes a file name, and reading can take a while
        raise InvalidInput(
            f"profile name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it becomes the file name)."
        )
    rows = read_rows(source)
    examples, report = collect_examples(rows, text_field, label_field, split_field, split, exclude_labels)
    labels = [{"name": label, "examples": texts} for label, texts in examples.items()]
    if off_topic:
        if OFF_TOPIC_LABEL in examples:
            raise InvalidInput(
                f"the data has a label {OFF_TOPIC_LABEL!r}, the name --off-topic adds its abstain label under; "
                "rename that label, or leave --off-topic out."
            )
        labels.append(off_topic_label().model_dump())
    try:
        spec = ProfileSpec.model_validate(
            {
                "name": name,
                "description": description or f"Built from {Path(source).name} ({report.kept} exemplars).",
                "target_accuracy": target_accuracy,
                "target_out_of_scope_recall": target_out_of_scope_recall,
                "labels": labels,
            }
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors())
        raise InvalidInput(f"cannot build profile {name!r}: {problems}.") from exc
    path = Path(out_dir) / f"{name}.toml"
    write_profile_file(spec, path)
    return spec, path, report
