"""What the engine needs from an embedding model, and the per-text cache every backend sits behind."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the engine needs from an embedding model."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit-length rows."""
        ...


class CachedEmbedder:
    """Wraps any embedder with a bounded LRU cache so an identical text is never embedded twice, and puts calls
    (`embed`: a verdict waits for it) ahead of bulk work (`embed_background`: a profile's exemplars).

    The model runs one batch at a time, and its lock is not fair: a bulk loop would take it back at once. So bulk
    work goes in small chunks, each started only while no call is embedding: a verdict waits for at most the one
    chunk already running (measured before: 0.3-0.9 s per verdict behind 32-text chunks of a 15k-exemplar profile
    on a loaded 2-core machine). `_gate` guards `_calls` (calls in progress); any thread may take it, never for
    longer than a counter update, and never on the event loop (callers are worker threads).

    Memory: the cached vectors live in one (capacity x dim) float32 block, written once here, so the cache holds
    its bound from the start (6.3 MB at the default 4,096 texts of 384 dimensions) instead of growing toward it
    over a server's first hours (the soak of docs/load-and-faults.md: 7.8 MB, full only after 20 minutes), and an
    eviction reuses its row instead of freeing a 1.5 KB block into the heap between other allocations (which glibc
    then keeps: fragmentation). `_slots` (text -> row, in LRU order; rows 0..len-1 are taken, in order) belongs to
    `_lock`, as do the rows it points at."""

    def __init__(self, inner: Embedder, capacity: int, background_chunk: int = 8):
        self.inner = inner
        self.capacity = capacity
        self.background_chunk = background_chunk
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._rows = np.empty((capacity, inner.dim), dtype=np.float32)
        self._rows.fill(0.0)  # written now, so its pages are resident (and counted) from the start
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
                row = self._slots.get(text)
                if row is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._slots.move_to_end(text)
                    out[i] = self._rows[row]
            self.hits += len(texts) - sum(len(rows) for rows in missing.values())
            self.misses += len(missing)
        if not missing:
            return out
        fresh = self.inner.embed(list(missing))
        with self._lock:
            for vector, (text, rows) in zip(fresh, missing.items(), strict=True):
                out[rows] = vector
                if self.capacity:
                    self._rows[self._row_for(text)] = vector  # a copy: nothing keeps `fresh` alive
        return out

    def _row_for(self, text: str) -> int:
        """The row that will hold `text`'s vector, now the most recently used (under `_lock`): its own (another
        thread embedded it meanwhile), a row never used yet, or the least recently used text's."""
        row = self._slots.get(text)
        if row is None:
            full = len(self._slots) >= self.capacity
            row = self._slots.popitem(last=False)[1] if full else len(self._slots)
            self._slots[text] = row
        self._slots.move_to_end(text)
        return row
