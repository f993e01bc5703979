"""A thread-safe cosine HNSW index over int labels. Every hnswlib quirk is handled here and nowhere else."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import hnswlib
import numpy as np

from mcp_latent.atomic_files import replacing
from mcp_latent.errors import StoreError


class VectorIndex:
    """hnswlib cosine index that grows on demand and answers `search` with (labels, similarities)."""

    def __init__(self, dim: int, m: int = 16, ef_construction: int = 200, ef_search: int = 64, capacity: int = 1024):
        self.dim = dim
        self.m = m  # graph degree: recall and memory grow with it
        self.ef_construction = ef_construction  # build-time candidate list: better graph, slower insert
        self.ef_search = ef_search  # query-time candidate list; raised to >= k per query (hnswlib needs ef >= k)
        # hnswlib is not safe for add and query at once ("Cannot return the results in a contiguous 2D array").
        self._lock = threading.Lock()
        self._index = hnswlib.Index(space="cosine", dim=dim)
        if capacity:  # 0: `load` fills it (hnswlib warns on stderr when loading over an initialised index)
            self._index.init_index(max_elements=max(capacity, 16), M=m, ef_construction=ef_construction)
        self._set_ef(ef_search)
        self._deleted: set[int] = set()

    def _set_ef(self, ef: int) -> None:
        self._index.set_ef(ef)
        self._ef = ef  # hnswlib has no getter; remembering it saves two calls per query

    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    @property
    def deleted(self) -> int:
        """Labels marked deleted: they still take room in the graph until it is rebuilt."""
        return len(self._deleted)

    @property
    def labels(self) -> set[int]:
        """Live labels (for audits against the durable record)."""
        with self._lock:
            return set(self._index.get_ids_list()) - self._deleted

    def add(self, labels: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Insert (or overwrite) vectors under the given labels, growing capacity geometrically."""
        vectors = self._check(vectors)
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return
        with self._lock:
            needed = self._index.get_current_count() + len(labels)
            capacity = self._index.get_max_elements()
            if needed > capacity:
                self._index.resize_index(max(needed, capacity * 2))
            self._index.add_items(vectors, labels)

    def delete(self, labels: list[int]) -> None:
        with self._lock:
            for label in labels:
                if int(label) in self._deleted:
                    continue
                try:
                    self._index.mark_deleted(int(label))
                    self._deleted.add(int(label))
                except RuntimeError:
                    pass  # never present: deleting is idempotent

    def search(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest `k` labels to one vector with cosine similarity, best first; fewer when the index is smaller.
        `allowed`: only these labels are results (the graph walk still passes through the others)."""
        query = self._check(vector.reshape(1, -1))
        accept = None if allowed is None else allowed.__contains__
        with self._lock:
            k = min(k, len(self) if allowed is None else len(allowed - self._deleted))
            if k <= 0:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            ef = max(self.ef_search, k)
            while True:
                if ef != self._ef:
                    self._set_ef(ef)
                try:
                    # One query: a single thread (hnswlib would otherwise dispatch to a thread pool per call).
                    labels, distances = self._index.knn_query(query, k=k, num_threads=1, filter=accept)
                    break
                except RuntimeError:
                    # Raised when the graph walk finds fewer than k live items (deletions, tiny graphs):
                    # widen the walk, then ask for fewer.
                    if ef < 4 * max(k, self.ef_search):
                        ef *= 2
                    elif k > 1:
                        k -= max(1, k // 4)
                    else:
                        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            if self._ef != self.ef_search:
                self._set_ef(self.ef_search)
        # hnswlib's cosine distance is 1 - cos and can dip slightly below 0: clip into [-1, 1].
        similarities = np.clip(1.0 - distances[0], -1.0, 1.0).astype(np.float32)
        return labels[0].astype(np.int64), similarities

    def save(self, path: Path) -> None:
        """Write the graph and, beside it, the deleted labels (hnswlib keeps their marks but not a list)."""
        with self._lock:
            with replacing(path) as tmp:  # a crash mid-save leaves the previous file intact
                self._index.save_index(str(tmp))
            with replacing(path.with_suffix(path.suffix + ".deleted.json")) as tmp:
                tmp.write_text(json.dumps(sorted(self._deleted)))

    @classmethod
    def load(cls, path: Path, dim: int, m: int, ef_construction: int, ef_search: int) -> VectorIndex:
        index = cls(dim, m=m, ef_construction=ef_construction, ef_search=ef_search, capacity=0)
        try:
            index._index.load_index(str(path), allow_replace_deleted=False)
        except Exception as exc:
            raise StoreError(f"index file {path} is unreadable: {exc}") from exc
        index._set_ef(ef_search)  # load_index resets ef to 10
        deleted_path = path.with_suffix(path.suffix + ".deleted.json")
        if deleted_path.exists():
            index._deleted = set(json.loads(deleted_path.read_text()))
        return index

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise StoreError(f"vector shape {vectors.shape} does not match index dimension {self.dim}")
        return vectors
