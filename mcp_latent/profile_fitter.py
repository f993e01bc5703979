"""Turns loaded profiles into fitted evaluators, caching exemplar embeddings and fits on disk.

Exemplar vectors are cached per text (so teaching one exemplar embeds one text), and fits are keyed by the
profile content, the model id and the fit version, so an unchanged profile is never re-embedded or refitted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic_files import replacing
from .calibration import FIT_VERSION, Calibration
from .embedder import Embedder
from .evaluator import FittedProfile
from .profiles import Profile

log = logging.getLogger(__name__)


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

    def lookup(self, texts: list[str], embedder: Embedder, progress: Callable[[int], None] | None = None) -> np.ndarray:
        known: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as data:
                known = dict(zip((_stored_key(k) for k in data["keys"].tolist()), data["vectors"], strict=True))
        keys = [_text_key(t) for t in texts]
        first_row: dict[str, int] = {}  # each distinct uncached text once, in file order
        for i, key in enumerate(keys):
            if key not in known:
                first_row.setdefault(key, i)
        missing = list(first_row.values())
        if missing:
            batch = 256
            for start in range(0, len(missing), batch):
                rows = missing[start : start + batch]
                for i, vector in zip(rows, embedder.embed([texts[i] for i in rows]), strict=True):
                    known[keys[i]] = vector
                if progress:
                    progress(len(rows))
            self._save(known)
        return np.stack([known[k] for k in keys]).astype(np.float32)

    def _save(self, known: dict[str, np.ndarray]) -> None:
        keys = np.array(list(known), dtype="U40")
        with replacing(self.path) as tmp, tmp.open("wb") as out:
            np.savez(out, keys=keys, vectors=np.stack(list(known.values())).astype(np.float32))


class ProfileFitter:
    """Fits (or loads cached fits of) profiles for one embedder."""

    def __init__(self, cache_dir: Path, embedder: Embedder):
        self.embedder = embedder
        self.cache_dir = Path(cache_dir) / _slug(embedder.model_id)
        self._lock = threading.Lock()  # guards the cache files (fitting itself runs outside it)

    def fit_key(self, profile: Profile) -> str:
        material = f"{profile.spec.content_hash()}|{self.embedder.model_id}|{FIT_VERSION}"
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def fitted(
        self,
        profile: Profile,
        progress: Callable[[int], None] | None = None,
        reuse_calibration: Calibration | None = None,
    ) -> FittedProfile:
        """The profile's cached fit, else a new one. With `reuse_calibration` and no cached fit: a provisional
        quick refit (head and index only), not cached, so a full fit still follows."""
        texts, y = flatten(profile)
        fit_path = self.cache_dir / f"{profile.name}-{self.fit_key(profile)}.fit.npz"
        with self._lock:
            if fit_path.exists():
                try:
                    return FittedProfile.load(fit_path, profile.spec, texts)
                except Exception as exc:  # a torn cache file only costs a refit
                    log.warning("cached fit %s unreadable (%s); refitting", fit_path, exc)
            vectors = ExemplarVectors(self.cache_dir / f"{profile.name}.exemplars.npz").lookup(
                texts, self.embedder, progress
            )
        # Fitting runs outside the lock: a minute-long full fit in the background must not hold up a quick one.
        if reuse_calibration is not None:
            return FittedProfile.fit(profile.spec, vectors, texts, y, reuse_calibration)
        fitted = FittedProfile.fit(profile.spec, vectors, texts, y)
        with self._lock:
            for stale in self.cache_dir.glob(f"{profile.name}-*.fit.npz"):
                stale.unlink(missing_ok=True)
            fitted.save(fit_path)
        log.info("profile %s fitted: %s", profile.name, fitted.calibration)
        return fitted


def flatten(profile: Profile) -> tuple[list[str], np.ndarray]:
    """Exemplar texts and their label indexes, in label order."""
    texts: list[str] = []
    y: list[int] = []
    for index, label in enumerate(profile.spec.labels):
        texts.extend(label.examples)
        y.extend([index] * len(label.examples))
    return texts, np.array(y, dtype=np.int64)
