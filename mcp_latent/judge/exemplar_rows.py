"""The exemplar table that successive snapshots of one profile share (`fitted.FittedProfile`): vectors, label ids
and texts, grown by teaches without copying what readers hold."""

from __future__ import annotations

import threading

import numpy as np


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
        return grown.appended(n, vectors, y, texts)
