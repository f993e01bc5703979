"""Embeds and fits profiles for one embedder, with the disk caches that make a restart cheap.

Exemplar vectors are cached per text (so teaching one exemplar embeds one text), and fits are keyed by the
exemplars (file plus taught exemplars, not the decision settings), the model id and the fit version, so an
unchanged profile is never re-embedded or refitted, and a moved target re-chooses the operating point from the
stored cross-validation instead of refitting.

Where fits live: fits of a profile file's own exemplars go to the profile cache (`profile_cache_dir`, by default
`~/.cache/mcp-latent/profiles`), which every data dir of the user shares, so `tools/dev.sh setup` fits the shipped
profiles once and a fresh data dir answers at once. Fits that include taught exemplars belong to one data dir and
go to its `taught_dir` (`<data_dir>/cache/profiles`). `profiles build --out DIR` also writes one beside the profile
file (`DIR/.fits/`), and a server reading profiles from DIR finds it there whatever its caches.
`ProfileFitter.for_settings` is the one place those folders are computed from the settings: the server, `build`,
`tune` and `list` all go through it, so they look for fits in the same places under the same model id.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcp_latent.atomic_files import replacing
from mcp_latent.embedding.base import Embedder
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.memory import Evidence
from mcp_latent.judge.selection import FIT_VERSION, Calibration
from mcp_latent.profiles.registry import Profile
from mcp_latent.profiles.spec import ProfileSpec

if TYPE_CHECKING:
    from mcp_latent.settings import Settings

log = logging.getLogger(__name__)

BESIDE_PROFILE = ".fits"  # folder next to a profile file holding fits written by `profiles build --out`
KEY_CHARS = 16
# Exemplars are embedded this many at a time by an embedder without a background mode (tests' fakes); the
# server's embedder (`CachedEmbedder.embed_background`) chunks them itself, behind every call.
EMBED_CHUNK = 32
SHARED_FITS_KEPT = 4  # fits per profile name kept in the shared cache (several data dirs, several file versions)


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)[-60:]


def _text_key(text: str) -> str:
    # Hex, not the raw digest: numpy's fixed-width bytes drop trailing NULs, so a raw digest ending in 0x00
    # (1 text in 256) would never be found again and be re-embedded on every load.
    return hashlib.sha1(text.encode()).hexdigest()


def _stored_key(key: bytes | str) -> str:
    """A key as read back from a cache file; files written before hex keys hold raw 20-byte digests."""
    return key if isinstance(key, str) else bytes(key).ljust(20, b"\0").hex()


class ExemplarVectors:
    """A per-profile, per-model file of exemplar embeddings keyed by text hash."""

    def __init__(self, path: Path):
        self.path = path

    def lookup(
        self,
        texts: list[str],
        embedder: Embedder,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors of `texts`, embedding the uncached ones as background work (calls needing the model go first)."""
        known: dict[str, np.ndarray] = {}
        if self.path.exists():
            try:
                with np.load(self.path) as data:
                    keys = (_stored_key(k) for k in data["keys"].tolist())
                    known = dict(zip(keys, data["vectors"], strict=True))
            except Exception as exc:  # a torn or foreign file only costs re-embedding
                log.warning("exemplar cache %s unreadable (%s); re-embedding", self.path, exc)
        keys = [_text_key(t) for t in texts]
        first_row: dict[str, int] = {}  # each distinct uncached text once, in file order
        for i, key in enumerate(keys):
            if key not in known:
                first_row.setdefault(key, i)
        missing = list(first_row.values())
        if missing:
            background = getattr(embedder, "embed_background", None)
            if background is not None:
                vectors = background([texts[i] for i in missing], progress)
            else:
                vectors = np.zeros((0, embedder.dim), dtype=np.float32)
                for start in range(0, len(missing), EMBED_CHUNK):
                    chunk = embedder.embed([texts[i] for i in missing[start : start + EMBED_CHUNK]])
                    vectors = np.concatenate([vectors, chunk])
                    if progress:
                        progress(len(chunk))
            for i, vector in zip(missing, vectors, strict=True):
                known[keys[i]] = vector
            self._save(known)
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32)

    def _save(self, known: dict[str, np.ndarray]) -> None:
        keys = np.array(list(known), dtype="U40")
        try:
            with replacing(self.path) as tmp, tmp.open("wb") as out:
                np.savez(out, keys=keys, vectors=np.stack(list(known.values())).astype(np.float32))
        except OSError as exc:  # an unwritable cache costs re-embedding next time, never the fit in hand
            log.warning("could not cache exemplar vectors in %s (%s)", self.path, exc)


@dataclass(frozen=True)
class NamedModel:
    """Stands in for the embedder where only stored fits are read: they are found by the model's id alone, so
    the model need not be loaded."""

    model_id: str
    dim: int = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError(f"model {self.model_id} is not loaded here; only stored fits can be read")


class ProfileFitter:
    """Disk caches of one embedder's exemplar vectors and fits. Holds no lock: every file is written atomically
    (a unique temporary name, then a rename), so concurrent writers of one file (two profiles' owners, two
    servers on a data dir) never tear it, and the profile's owner (`LiveProfile`) makes fits single-flight."""

    def __init__(self, cache_dir: Path, embedder: Embedder, taught_dir: Path | None = None):
        self.embedder = embedder
        self.cache_dir = Path(cache_dir) / _slug(embedder.model_id)  # shared: fits of files' own exemplars
        # This data dir's fits with taught exemplars (None: the shared cache holds them too, as for one-off tools).
        self.taught_dir = Path(taught_dir) / _slug(embedder.model_id) if taught_dir is not None else None

    @classmethod
    def for_settings(cls, settings: Settings, embedder: Embedder | None = None) -> ProfileFitter:
        """The fit caches of these settings: `profile_cache_dir` (shared by every data dir of the user) and the data
        dir's `taught_fit_dir`, under the id of the model they configure. Without an embedder only stored fits can
        be read (found by that id, the model is not loaded)."""
        from mcp_latent.embedding.model_source import configured_model_id

        assert settings.profile_cache_dir is not None  # filled by the settings' validator
        model = embedder or NamedModel(configured_model_id(settings))
        return cls(settings.profile_cache_dir, model, settings.taught_fit_dir)

    def fit_key(self, profile: Profile | ProfileSpec, taught_digest: str = "") -> str:
        """Content key of a fit: what it learns from (labels and exemplars, taught ones by digest; not the decision
        settings), model, fit version."""
        spec = profile.spec if isinstance(profile, Profile) else profile
        material = f"{spec.fit_hash()}|{taught_digest}|{self.embedder.model_id}|{FIT_VERSION}"
        return hashlib.sha256(material.encode()).hexdigest()[:KEY_CHARS]

    def _fit_name(self, name: str, key: str) -> str:
        return f"{name}-{key}.fit.npz"

    def beside(self, profile_path: Path) -> Path:
        """The fit folder next to a profile file (written by `profiles build --out`)."""
        return profile_path.parent / BESIDE_PROFILE / _slug(self.embedder.model_id)

    def load(self, name: str, key: str, spec: ProfileSpec, texts: list[str], profile_path: Path | None = None):
        """The cached fit with this key (the data dir's cache first, then beside the profile file), or None."""
        places = [self.cache_dir] + ([self.beside(profile_path)] if profile_path is not None else [])
        if self.taught_dir is not None:
            places.insert(0, self.taught_dir)
        for folder in places:
            path = folder / self._fit_name(name, key)
            if not path.exists():
                continue
            try:
                fitted = FittedProfile.load(path, spec, texts)
                if fitted.n == len(texts):
                    if fitted.memory_compared_at_load and folder == self.cache_dir:
                        fitted.save(path)  # a fit stored before memory: its exemplars are compared once, not per start
                    return fitted
                log.warning("cached fit %s has %d rows for %d exemplars; refitting", path, fitted.n, len(texts))
            except Exception as exc:  # a torn cache file only costs a refit
                log.warning("cached fit %s unreadable (%s); refitting", path, exc)
        return None

    def has_fit(self, name: str, keys: list[str], profile_path: Path | None = None) -> bool:
        """Whether a stored fit with one of these keys is there to load (a stat per place; nothing is read)."""
        places = [self.cache_dir] + ([self.beside(profile_path)] if profile_path is not None else [])
        if self.taught_dir is not None:
            places.append(self.taught_dir)
        return any((folder / self._fit_name(name, key)).exists() for folder in places for key in keys)

    def vectors(self, name: str, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings of exemplar texts, from the per-text cache where possible."""
        return ExemplarVectors(self.cache_dir / f"{name}.exemplars.npz").lookup(texts, self.embedder, progress)

    def evidence(self, spec: ProfileSpec) -> Evidence | None:
        """The profile file's `pair_examples` (vectors, texts, label ids) for the memory's fit, or None."""
        texts, y = flatten(spec, pairs=True)
        if not texts:
            return None
        return self.vectors(f"{spec.name}.pair-examples", texts), texts, y

    def save(
        self, name: str, key: str, fitted: FittedProfile, folder: Path | None = None, taught: bool = False
    ) -> Path | None:
        """Store a full fit and remove this profile's older fits there (only this profile's: `kind` never touches
        the fits of `kind-v2`). In the shared cache the newest SHARED_FITS_KEPT are kept: two data dirs whose
        `kind.toml` differ would otherwise delete each other's fit at every start. A cache that cannot be written
        only costs a refit next time (logged), never the fit in hand: None then."""
        if folder is None:
            folder = self.taught_dir if taught and self.taught_dir is not None else self.cache_dir
        path = folder / self._fit_name(name, key)
        try:
            fitted.save(path)
        except OSError as exc:
            log.warning(
                "could not cache the fit of profile %s in %s (%s); it is refitted at the next start", name, path, exc
            )
            return None
        own = re.compile(rf"{re.escape(name)}-[0-9a-f]{{{KEY_CHARS}}}\.fit\.npz")
        stale = [other for other in folder.glob("*.fit.npz") if other != path and own.fullmatch(other.name)]
        keep = 0 if folder == self.taught_dir else SHARED_FITS_KEPT - 1
        stale.sort(key=lambda other: other.stat().st_mtime if other.exists() else 0.0, reverse=True)
        for old in stale[keep:]:
            old.unlink(missing_ok=True)
        return path

    def cached(self, profile: Profile) -> FittedProfile | None:
        """The stored full fit of the profile file's exemplars (taught ones aside: `profiles build` wrote it), at
        the operating point for the file's current targets, or None. Never embeds."""
        texts, _ = flatten(profile.spec)
        return self.load(profile.name, self.fit_key(profile.spec), profile.spec, texts, profile.path)

    def cached_calibration(self, profile: Profile) -> Calibration | None:
        """The calibration of `cached`, reading neither the exemplar vectors nor the model (for `profiles list`)."""
        name = self._fit_name(profile.name, self.fit_key(profile.spec))
        for folder in (self.cache_dir, self.beside(profile.path)):
            try:
                with np.load(folder / name) as data:  # an .npz reads only the arrays asked for
                    return Calibration.from_arrays(data).retarget(profile.spec)
            except FileNotFoundError:
                continue
            except Exception as exc:
                log.warning("cached fit %s unreadable (%s)", folder / name, exc)
        return None

    def fitted(self, profile: Profile, progress: Callable[[int], None] | None = None) -> FittedProfile:
        """The profile file's cached full fit, else a new one (cached): for one-off use (CLI, tools). Taught
        exemplars are not in it: a server's profiles go through their `LiveProfile` instead."""
        texts, y = flatten(profile.spec)
        key = self.fit_key(profile)
        fitted = self.load(profile.name, key, profile.spec, texts, profile.path)
        if fitted is None:
            vectors = self.vectors(profile.name, texts, progress)
            fitted = FittedProfile.fit(profile.spec, vectors, texts, y, evidence=self.evidence(profile.spec))
            self.save(profile.name, key, fitted)
            log.info("profile %s fitted: %s", profile.name, fitted.calibration)
        return fitted


def flatten(spec: Profile | ProfileSpec, pairs: bool = False) -> tuple[list[str], np.ndarray]:
    """Exemplar texts and their label indexes, in label order (pairs: the `pair_examples` instead)."""
    spec = spec.spec if isinstance(spec, Profile) else spec
    texts: list[str] = []
    y: list[int] = []
    for index, label in enumerate(spec.labels):
        own = label.pair_examples if pairs else label.examples
        texts.extend(own)
        y.extend([index] * len(own))
    return texts, np.array(y, dtype=np.int64)
