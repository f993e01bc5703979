"""Evaluator profiles: TOML files of labeled exemplars, validated with pydantic; plus exemplars taught at run time."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .atomic_files import replacing
from .errors import NotFound, ProfileError

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TAUGHT_SUFFIX = ".taught.jsonl"


def builtin_profiles_dir() -> Path:
    """Profiles shipped with mcp-latent: inside the wheel, or `profiles/` of a source checkout."""
    packaged = Path(__file__).parent / "_builtin_profiles"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "profiles"


class LabelSpec(BaseModel):
    """One label of a profile and the exemplar texts that define it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    value: float | None = Field(None, description="numeric value for ordinal profiles (gives an expected score)")
    examples: list[str] = Field(min_length=1)

    @field_validator("examples")
    @classmethod
    def _no_blank_examples(cls, examples: list[str]) -> list[str]:
        cleaned = [e.strip() for e in examples]
        if any(not e for e in cleaned):
            raise ValueError("examples must not be empty strings")
        return cleaned


class ProfileSpec(BaseModel):
    """A profile file's content."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    target_accuracy: float = Field(
        0.9, gt=0, le=1, description="answered accuracy the abstention threshold is fitted to reach"
    )
    target_out_of_scope_recall: float = Field(
        0.8,
        ge=0,
        le=1,
        description="share of out-of-scope texts to flag, on a simulation that hides labels from the fit",
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="fixed confidence threshold; overrides the fitted one"
    )
    min_similarity: float | None = Field(
        None, ge=-1, le=1, description="nearest-exemplar similarity below which a text is out of scope; default fitted"
    )
    labels: list[LabelSpec] = Field(min_length=2)

    @field_validator("name")
    @classmethod
    def _name_shape(cls, name: str) -> str:
        if not PROFILE_NAME_RE.match(name):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return name

    @model_validator(mode="after")
    def _consistent_labels(self) -> ProfileSpec:
        names = [label.name for label in self.labels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"label names must be unique; repeated: {duplicates}")
        with_value = [label.value is not None for label in self.labels]
        if any(with_value) and not all(with_value):
            raise ValueError("either every label has a `value` (ordinal profile) or none does")
        return self

    @property
    def ordinal(self) -> bool:
        return self.labels[0].value is not None

    def content_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class Profile:
    """A loaded profile: its spec (taught exemplars merged in), where it came from, and whether it is shipped."""

    spec: ProfileSpec
    path: Path
    builtin: bool
    taught: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.spec.description,
            "labels": [label.name for label in self.spec.labels],
            "ordinal": self.spec.ordinal,
            "exemplars": sum(len(label.examples) for label in self.spec.labels),
            "taught": self.taught,
            "builtin": self.builtin,
        }


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(file)"
        problems.append(f"{where}: {err['msg']}")
    return f"invalid profile {path}: " + "; ".join(problems)


def read_profile_file(path: Path) -> ProfileSpec:
    """Parse and validate one profile file; errors name the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError(f"invalid profile {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"invalid profile {path}: TOML syntax error: {exc}") from exc
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    try:
        spec = ProfileSpec.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_format_validation_error(path, exc)) from exc
    if spec.name != path.stem:
        raise ProfileError(f"invalid profile {path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec


def write_profile_file(spec: ProfileSpec, path: Path) -> None:
    """Write a profile as TOML (atomically)."""
    data = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    for label in data["labels"]:
        if not label.get("description"):
            label.pop("description", None)
    with replacing(path) as tmp:
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")


def _merge_taught(spec: ProfileSpec, taught_path: Path) -> tuple[ProfileSpec, int]:
    """Add exemplars from the profile's taught log (one JSON object per line: {"label", "text"})."""
    if not taught_path.exists():
        return spec, 0
    extra: dict[str, list[str]] = {}
    count = 0
    for line in taught_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            extra.setdefault(entry["label"], []).append(entry["text"])
            count += 1
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a torn last line after a crash: the rest still counts
    labels = [
        label.model_copy(update={"examples": label.examples + extra.get(label.name, [])}) for label in spec.labels
    ]
    return spec.model_copy(update={"labels": labels}), count


class ProfileRegistry:
    """Finds profiles: the user's directory first (it may shadow a shipped profile), then the shipped ones."""

    def __init__(self, user_dir: Path, include_builtin: bool = True):
        self.user_dir = Path(user_dir)
        self.builtin_dir = builtin_profiles_dir() if include_builtin else None
        self._profiles: dict[str, Profile] = {}

    def _files(self) -> Iterator[tuple[Path, bool]]:
        """Every profile file with whether it is shipped; user files come last, so they shadow shipped ones."""
        for directory, builtin in ((self.builtin_dir, True), (self.user_dir, False)):
            if directory is not None and directory.is_dir():
                for path in sorted(directory.glob("*.toml")):
                    yield path, builtin

    def load_all(self) -> dict[str, Profile]:
        """(Re)read every profile file; raises ProfileError for the first invalid one."""
        found: dict[str, Profile] = {}
        for path, builtin in self._files():
            spec = read_profile_file(path)
            spec, taught = _merge_taught(spec, self.taught_path(spec.name))
            found[spec.name] = Profile(spec=spec, path=path, builtin=builtin, taught=taught)
        self._profiles = found
        return found

    def check_all(self) -> list[tuple[Path, str | None]]:
        """Validate every file without stopping at the first error: (path, error or None)."""
        results: list[tuple[Path, str | None]] = []
        for path, _ in self._files():
            try:
                read_profile_file(path)
                results.append((path, None))
            except ProfileError as exc:
                results.append((path, str(exc)))
        return results

    @property
    def profiles(self) -> dict[str, Profile]:
        return self._profiles

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            available = ", ".join(sorted(self._profiles)) or "none"
            raise NotFound(f"profile {name!r} not found; available: {available}.") from None

    def taught_path(self, name: str) -> Path:
        return self.user_dir / f"{name}{TAUGHT_SUFFIX}"

    def append_taught(self, name: str, label: str, text: str) -> Profile:
        """Persist one taught exemplar and update the in-memory profile."""
        profile = self.get(name)
        self.user_dir.mkdir(parents=True, exist_ok=True)
        with self.taught_path(name).open("a", encoding="utf-8") as log:
            log.write(json.dumps({"label": label, "text": text}, ensure_ascii=False) + "\n")
            log.flush()
        labels = [
            lab.model_copy(update={"examples": lab.examples + [text]}) if lab.name == label else lab
            for lab in profile.spec.labels
        ]
        profile.spec = profile.spec.model_copy(update={"labels": labels})
        profile.taught += 1
        return profile
