"""Evaluator profiles: TOML files of labeled exemplars, validated with pydantic; plus exemplars taught at run time."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .atomic_files import replacing
from .errors import NotFound, ProfileError, StoreError

if TYPE_CHECKING:
    from .store import LatentStore, TaughtExemplar

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TAUGHT_SUFFIX = ".taught.jsonl"  # where versions before the store kept taught exemplars (imported once)


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
    # An abstain label holds texts the profile must not judge (small talk, questions, vague one-liners): the fit
    # learns it like any label, and a text it wins is answered `unsure` with reason out_of_scope. It gives profiles
    # with few labels real out-of-scope evidence, which the hidden-label simulation cannot make for them.
    abstain: bool = Field(False, description="texts like these belong to no label: abstain (out of scope) on them")
    # May start empty (a cold-start profile: label names and descriptions only); it abstains until taught.
    examples: list[str] = Field(default_factory=list)

    @field_validator("examples")
    @classmethod
    def _no_blank_examples(cls, examples: list[str]) -> list[str]:
        cleaned = [e.strip() for e in examples]
        if any(not e for e in cleaned):
            raise ValueError("examples must not be empty strings")
        return cleaned


class OperatingPointRecord(BaseModel):
    """The point the fit chose for a profile's targets, with its cross-validated estimates: written by
    `profiles build` and `profiles tune` for readers of the file. The fit reads the targets (or a fixed
    `threshold`/`min_similarity`), never this record."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(description="which probabilities are thresholded: `ensemble` or `head alone`")
    threshold: float
    min_similarity: float
    coverage: float = Field(description="share of in-scope texts answered (cross-validated)")
    answered_accuracy: float | None = None
    out_of_scope_recall: float | None = Field(None, description="on the hidden-label simulation")
    reachable: bool = Field(True, description="false: the target accuracy holds only below 50% coverage")
    knee_accuracy: float | None = Field(None, description="the target at the knee of the curve")


# Settings that choose where a fitted profile answers, not what it learns: changing them never refits.
DECISION_FIELDS = frozenset(
    {"description", "target_accuracy", "target_out_of_scope_recall", "threshold", "min_similarity", "operating_point"}
)


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
    operating_point: OperatingPointRecord | None = None
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
        answers = self.answer_labels
        if len(answers) < 2:
            raise ValueError("a profile needs at least 2 labels that are not `abstain = true`")
        if any(label.value is not None for label in self.labels if label.abstain):
            raise ValueError("an `abstain = true` label has no `value` (it is never an answer)")
        with_value = [label.value is not None for label in answers]
        if any(with_value) and not all(with_value):
            raise ValueError("either every label has a `value` (ordinal profile) or none does")
        return self

    @property
    def answer_labels(self) -> list[LabelSpec]:
        """The labels a verdict can answer with (every label but the abstain ones)."""
        return [label for label in self.labels if not label.abstain]

    @property
    def ordinal(self) -> bool:
        return self.answer_labels[0].value is not None

    def _canonical(self, exclude: set[str] | None = None) -> str:
        data = self.model_dump(mode="json", exclude=exclude)
        for label in data["labels"]:  # files from before abstain labels keep their hashes (and cached fits)
            if not label.get("abstain"):
                label.pop("abstain", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":") if exclude is None else None)

    def content_hash(self) -> str:
        return hashlib.sha256(self._canonical().encode()).hexdigest()[:16]

    def fit_hash(self) -> str:
        """Hash of what a fit learns from (labels and exemplars), not of where it answers (DECISION_FIELDS)."""
        return hashlib.sha256(self._canonical(set(DECISION_FIELDS)).encode()).hexdigest()[:16]


@dataclass
class Profile:
    """A loaded profile: its spec (taught exemplars merged in), where it came from, and whether it is shipped.

    `base` is the file's own content and `taught_entries` the (label, text) pairs taught at run time (from the
    store), in order: a server's `LiveProfile` starts from these and owns the profile's exemplars from then on."""

    spec: ProfileSpec
    path: Path
    builtin: bool
    taught: int = 0
    base: ProfileSpec | None = None
    taught_entries: list[tuple[str, str]] = field(default_factory=list)

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
        if not label.get("abstain"):
            label.pop("abstain", None)
    with replacing(path) as tmp:
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")


def _merge_taught(spec: ProfileSpec, taught: Sequence[TaughtExemplar]) -> tuple[ProfileSpec, int]:
    """Add taught exemplars (from the store) to their labels; one whose label the file no longer has is skipped."""
    extra: dict[str, list[str]] = {}
    for exemplar in taught:
        extra.setdefault(exemplar.label, []).append(exemplar.text)
    labels = [
        label.model_copy(update={"examples": label.examples + extra.get(label.name, [])}) for label in spec.labels
    ]
    return spec.model_copy(update={"labels": labels}), sum(len(extra.get(label.name, [])) for label in spec.labels)


def spec_labels(spec: ProfileSpec) -> set[str]:
    return {label.name for label in spec.labels}


def import_taught_logs(store: LatentStore, directory: Path) -> int:
    """Move taught exemplars of older versions (`<profile>.taught.jsonl` files) into the store; returns how many
    were new. Safe to repeat and to race: each line's import key makes a second import add nothing, and lines an
    older server appends later are picked up by the next import. The files are left in place."""
    imported = 0
    for path in sorted(Path(directory).glob(f"*{TAUGHT_SUFFIX}")):
        profile = path.name[: -len(TAUGHT_SUFFIX)]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                entry = json.loads(line)
                label, text = entry["label"], entry["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # blank, or a torn last line after a crash
            key = f"{path.name}:{number}:{hashlib.sha256(line.encode()).hexdigest()[:16]}"
            if store.add_taught(profile, label, text, source=f"import:{path.name}", import_key=key) is not None:
                imported += 1
    return imported


class ProfileRegistry:
    """Finds profiles: the user's directory first (it may shadow a shipped profile), then the shipped ones."""

    def __init__(self, user_dir: Path, include_builtin: bool = True, store: LatentStore | None = None):
        self.user_dir = Path(user_dir)
        self.store = store  # where taught exemplars live; without one, profiles load with none
        self.taught_cursor = 0  # the newest taught exemplar (store id) the loaded profiles include
        self._merged: set[int] = set()  # ids merged since the load: a teach is seen here and again from the store
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
        taught: dict[str, list[TaughtExemplar]] = {}
        stored = self.store.taught() if self.store is not None else []
        for exemplar in stored:
            taught.setdefault(exemplar.profile, []).append(exemplar)
        self.taught_cursor, self._merged = (stored[-1].id if stored else 0), set()
        for path, builtin in self._files():
            base = read_profile_file(path)
            spec, taught_count = _merge_taught(base, taught.get(base.name, []))
            entries = [(t.label, t.text) for t in taught.get(base.name, []) if t.label in spec_labels(base)]
            found[base.name] = Profile(
                spec=spec, path=path, builtin=builtin, taught=taught_count, base=base, taught_entries=entries
            )
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

    def append_taught(self, name: str, label: str, text: str) -> Profile:
        """Persist one taught exemplar in the store (every server on it sees it) and update the in-memory profile."""
        self.get(name)
        if self.store is None:
            raise StoreError("taught exemplars need the latent store, which is not open; retry once the server is up.")
        exemplar = self.store.add_taught(name, label, text, source="teach")
        assert exemplar is not None  # only imports (with an import key) can be refused as already stored
        return self.merge_taught(exemplar)

    def merge_taught(self, exemplar: TaughtExemplar) -> Profile:
        """Add a stored exemplar (taught here or by another server on the store) to the in-memory profile, once."""
        profile = self.get(exemplar.profile)
        if exemplar.id <= self.taught_cursor or exemplar.id in self._merged:
            return profile
        self._merged.add(exemplar.id)
        profile.spec, added = _merge_taught(profile.spec, [exemplar])
        profile.taught += added
        return profile
