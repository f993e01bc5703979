"""The profiles a server knows (shipped and user), each with the exemplars taught to it as the store holds them."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_latent.errors import NotFound, ProfileError
from mcp_latent.profiles.spec import ProfileSpec, builtin_profiles_dir, read_profile_file

if TYPE_CHECKING:
    from mcp_latent.store.base import LatentStore, TaughtExemplar


log = logging.getLogger(__name__)


TAUGHT_SUFFIX = ".taught.jsonl"  # where versions before the store kept taught exemplars (imported once)


@dataclass
class Profile:
    """A loaded profile: its file's content (`spec`), where it came from, whether it is shipped, and the exemplars
    taught to it that the store held when the registry loaded.

    Taught exemplars live in the store, nowhere else durable. `taught_entries` ((label, text) pairs, in the order
    taught) is that load's read, handed to the profile's owner (`service.live_profile.LiveProfile`), which keeps
    the running list from then on; the registry never adds to it, and `spec` never includes them."""

    spec: ProfileSpec
    path: Path
    builtin: bool
    taught_entries: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def taught(self) -> int:
        return len(self.taught_entries)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.spec.description,
            "labels": [label.name for label in self.spec.labels],
            "ordinal": self.spec.ordinal,
            "exemplars": sum(len(label.examples) for label in self.spec.labels) + self.taught,
            "taught": self.taught,
            "builtin": self.builtin,
        }


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
        self.builtin_dir = builtin_profiles_dir() if include_builtin else None
        self._profiles: dict[str, Profile] = {}
        self.skipped: dict[Path, str] = {}  # invalid files of the last load, with why (written by `load_all` only)

    def _files(self) -> Iterator[tuple[Path, bool]]:
        """Every profile file with whether it is shipped; user files come last, so they shadow shipped ones."""
        for directory, builtin in ((self.builtin_dir, True), (self.user_dir, False)):
            if directory is not None and directory.is_dir():
                for path in sorted(directory.glob("*.toml")):
                    yield path, builtin

    def load_all(self) -> dict[str, Profile]:
        """(Re)read every profile file. An invalid file is skipped with a warning naming the file and the field, and
        kept in `skipped` (path -> error): one bad user file used to fail every tool, the shipped profiles included.
        A bad user file that would have shadowed a shipped profile leaves the shipped one in place."""
        found: dict[str, Profile] = {}
        taught: dict[str, list[TaughtExemplar]] = {}
        stored = self.store.taught() if self.store is not None else []
        for exemplar in stored:
            taught.setdefault(exemplar.profile, []).append(exemplar)
        self.taught_cursor = stored[-1].id if stored else 0
        skipped: dict[Path, str] = {}
        for path, builtin in self._files():
            try:
                spec = read_profile_file(path)
            except ProfileError as exc:
                log.warning("profile file skipped: %s", exc)  # the error names the file and the field
                skipped[path] = str(exc)
                continue
            # An exemplar whose label the file no longer has is skipped: it no longer applies.
            entries = [(t.label, t.text) for t in taught.get(spec.name, []) if t.label in spec_labels(spec)]
            found[spec.name] = Profile(spec=spec, path=path, builtin=builtin, taught_entries=entries)
        self._profiles, self.skipped = found, skipped
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

    def put(self, spec: ProfileSpec, path: Path, taught: Sequence[TaughtExemplar]) -> Profile:
        """Add or replace one user profile (defined at run time) with its taught exemplars. The dict is replaced
        whole, so a reader that took it never sees it change size; the caller serialises writers."""
        entries = [(t.label, t.text) for t in taught if t.label in spec_labels(spec)]
        profile = Profile(spec=spec, path=path, builtin=False, taught_entries=entries)
        self._profiles = {**self._profiles, spec.name: profile}
        return profile

    def remove(self, name: str) -> None:
        """Forget one profile (its file is the caller's to delete); copy-on-write like `put`."""
        self._profiles = {key: value for key, value in self._profiles.items() if key != name}

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            invalid = [error for path, error in self.skipped.items() if path.stem == name]
            if invalid:  # its file is there but did not load: say why, not just "not found"
                raise NotFound(f"profile {name!r} did not load: {invalid[-1]}") from None
            available = ", ".join(sorted(self._profiles)) or "none"
            raise NotFound(f"profile {name!r} not found; available: {available}.") from None
