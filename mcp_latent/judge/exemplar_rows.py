"""The exemplar table that successive snapshots of one profile share (`fitted.FittedProfile`): vectors, label ids
and texts, grown by teaches without copying what readers hold."""

from __future__ import annotations

import threading

import numpy as np

from mcp_latent.judge.quantized_rows import MIN_ROWS, QuantizedRows

QUANTIZE_AFTER = 8  # single-query searches of a storage before its int8 copy is built
# Whether storages build their int8 copy at all: process-wide, set from the `int8_neighbours` setting when a service
# starts (`service.lifecycle`). Off by default: through the server it saved no measurable time on a near-quiet
# machine and the build imports `onnx` (+22 MB serving RSS; docs/benchmarks.md, "Reading less memory").
INT8 = {"enabled": False}


def use_int8_neighbours(enabled: bool) -> None:
    """Turn the int8 copies on or off for storages searched from now on (copies built already keep serving)."""
    INT8["enabled"] = bool(enabled)


class ExemplarRows:
    """Append-only exemplar storage shared by successive snapshots of one profile.

    A snapshot sees rows [0, n); appending writes row n and beyond, which no existing snapshot reads, so readers
    never need a lock. Only a snapshot holding the newest row may append in place (`used == n`); any other
    gets a copy, so two lines of snapshots can never write the same row."""

    def __init__(self, vectors: np.ndarray, y: np.ndarray, texts: list[str], spare: int = 0):
        n = len(vectors)
        self.vectors = np.empty((n + spare, vectors.shape[1]), dtype=np.float32)
        self.vectors[:n] = vectors
        self.y = np.empty(n + spare, dtype=np.int64)
        self.y[:n] = y
        self.texts = list(texts)  # list.append is atomic; readers index below their n only
        self.used = n
        self.lock = threading.Lock()  # owned by appenders of this storage (the profile's owner, one at a time)
        # The int8 copy of rows [0, m) that one query's neighbours are bounded with (`quantized_rows`): built once on
        # a background thread (`_building` guards that; `lock` too), started by the QUANTIZE_AFTER-th single-query
        # search, not the first: a fresh server's first verdict does not share the interpreter with the build (and
        # its import of `onnx`); shared with grown copies (their rows below m are the same values).
        self._quantized: QuantizedRows | None = None
        self._building: threading.Thread | None = None
        self._searches = 0  # single-query searches before the build starts (racy increments only delay it)

    def quantized(self, n: int) -> QuantizedRows | None:
        """The int8 copy for a snapshot seeing rows [0, n), or None (too few rows, not built yet, or no
        onnxruntime): the float32 product then serves."""
        quantized = self._quantized
        if quantized is None and self._building is None and n >= MIN_ROWS and INT8["enabled"]:
            self._searches += 1
            if self._searches >= QUANTIZE_AFTER:
                self.start_quantizing(n)
        return quantized if quantized is not None and quantized.rows <= n else None

    def start_quantizing(self, n: int) -> None:
        """Build the int8 copy of rows [0, n) on a background thread, unless one is built or under way."""
        with self.lock:
            if self._building is None:
                self._building = threading.Thread(target=self._quantize, args=(n,), name="quantize", daemon=True)
                self._building.start()

    def wait_quantized(self, timeout: float | None = None) -> bool:
        """Wait for the int8 copy under way (tests, tools): True when it is there."""
        if self._building is not None:
            self._building.join(timeout)
        return self._quantized is not None

    def _quantize(self, n: int) -> None:
        try:
            self._quantized = QuantizedRows(self.vectors[:n])  # rows below n never change
        except ImportError:  # a torch-only install: the float32 product serves
            pass

    def appended(self, n: int, vectors: np.ndarray, y: np.ndarray, texts: list[str]) -> ExemplarRows:
        """Rows [0, n) plus the new ones: this storage when it can grow in place, else a doubled copy."""
        with self.lock:
            end = n + len(vectors)
            if self.used == n and end <= len(self.vectors):
                self.vectors[n:end] = vectors
                self.y[n:end] = y
                del self.texts[n:]
                self.texts.extend(texts)
                self.used = end
                return self
        grown = ExemplarRows(self.vectors[:n], self.y[:n], self.texts[:n], spare=max(n, len(vectors), 64))
        if self._quantized is not None and self._quantized.rows <= n:
            grown._quantized = self._quantized
        return grown.appended(n, vectors, y, texts)
