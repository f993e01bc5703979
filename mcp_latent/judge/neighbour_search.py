"""Exact neighbours of one query (`FittedProfile.neighbours`), and one similarity product shared by the several
snapshots a call judges with (`SharedRows`).

Why a shared product: a first verdict is memory traffic, not arithmetic. Each profile's exact neighbours read all
of its exemplar vectors (2,600-2,900 rows, 4 MB of float32 for a shipped profile), usually evicted from the CPU's
caches by the calls in between. The shipped profiles share many exemplars (8,360 rows, 4,944 distinct), so a call
judging one text with several profiles (`handoff` + verdicts, `evaluate` with several profiles) reads each distinct
row once: one product over the distinct rows, each snapshot's similarities gathered from it.

A similarity from the shared product is the same dot product summed by BLAS inside another matrix, so it may differ
from the snapshot's own product in the last bits (a few 1e-8): decisions are the same, p within 1e-6
(`tests/test_verdict_cost.py` checks this rule on the shipped profiles)."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from mcp_latent.judge.ensemble import exact_neighbours, top_of_row
from mcp_latent.judge.exemplar_rows import ExemplarRows


def nearest_of_one(query: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`exact_neighbours` of one query (1, d), 1 <= k <= len(pool): the same product, partition and sort on the one
    row, so the same ids and similarities to the bit."""
    return top_of_row((query @ pool.T)[0], k)


def nearest(
    vectors: np.ndarray,
    pool: np.ndarray,
    k: int,
    sims: np.ndarray | None = None,
    rows: ExemplarRows | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest `k` rows of `pool` for each of `vectors` (m, d): (ids, similarities), each (m, <= k), best
    first. sims: the one vector's (n,) similarities to every row, when already computed (`SharedRows`); rows: the
    storage `pool` is the first rows of, whose int8 copy (`quantized_rows`) bounds one vector's similarities so
    that few rows are read in float32."""
    if len(vectors) == 1 and 1 <= k <= len(pool):
        if sims is not None:
            return top_of_row(sims, k)
        quantized = None if rows is None else rows.quantized(len(pool))
        found = None if quantized is None else quantized.nearest(vectors, pool, k)
        return found if found is not None else nearest_of_one(vectors, pool, k)
    return exact_neighbours(vectors, pool, k)


class SharedRows:
    """The distinct exemplar rows of several snapshots' pools in one matrix, and where each pool's rows are in it.
    Immutable once built; read from any thread."""

    def __init__(self, pools: Sequence[np.ndarray]):
        index: dict[bytes, int] = {}
        distinct: list[np.ndarray] = []
        self.where: list[np.ndarray] = []
        for pool in pools:
            ids = np.empty(len(pool), dtype=np.int64)
            for i, row in enumerate(pool):
                key = row.tobytes()
                at = index.get(key)
                if at is None:
                    at = index[key] = len(distinct)
                    distinct.append(row)
                ids[i] = at
            self.where.append(ids)
        dim = pools[0].shape[1] if pools else 0
        self.matrix = np.array(distinct, dtype=np.float32).reshape(len(distinct), dim)
        self.rows = sum(len(pool) for pool in pools)

    def similarities(self, query: np.ndarray) -> list[np.ndarray]:
        """Each pool's (n,) cosine similarities to one query, in the pool's row order, from one product."""
        row = (query.reshape(1, -1) @ self.matrix.T)[0]
        return [row[where] for where in self.where]


class SharedProducts:
    """The `SharedRows` of the last few sets of snapshots judged together.

    A set's rows are built on a background thread the first time the set is judged (about 25 ms of CPU for the
    shipped profiles' 8,360 rows: too long for the call that meets a new set, e.g. the first after a teach, which
    judges with each snapshot's own product meanwhile). A snapshot is immutable (a teach makes a new one), so a
    set's rows never go stale; a set is kept by weak references to the snapshots' exemplar storages (with their row
    counts) and dropped when any of them is gone.
    Ownership: `_lock` guards `_sets` and `_building`; one builder thread at a time, started by the call that
    finds its set missing and no build under way."""

    def __init__(self, size: int):
        self.size = size
        self._sets: OrderedDict[tuple[int, ...], tuple[tuple[weakref.ref, ...], SharedRows]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: threading.Thread | None = None
        self.built = 0  # sets built (for tests and the curious)

    def similarities(self, snapshots: Sequence, query: np.ndarray) -> list[np.ndarray] | None:
        """Each snapshot's (n,) similarities to `query` from one shared product, or None (each then reads its own)
        when sharing is off, fewer than two snapshots have exemplars, or the set's rows are still being built."""
        if self.size <= 0 or len(snapshots) < 2 or any(s.n == 0 for s in snapshots):
            return None
        # Keyed by each snapshot's exemplar storage and row count, not the snapshot: a new threshold makes a new
        # snapshot over the same rows, which the set serves as it is.
        storages = [s._rows for s in snapshots]
        key = tuple(x for s, rows in zip(snapshots, storages, strict=True) for x in (id(rows), s.n))
        with self._lock:
            kept = self._sets.get(key)
            if kept is not None and all(ref() is rows for ref, rows in zip(kept[0], storages, strict=True)):
                self._sets.move_to_end(key)
                return kept[1].similarities(query)
            if self._building is None:
                pools = [s.vectors for s in snapshots]
                self._building = threading.Thread(
                    target=self._build, args=(key, pools, storages), name="shared-rows", daemon=True
                )
                self._building.start()
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the build under way (if any): True when none is left running."""
        with self._lock:
            building = self._building
        if building is not None:
            building.join(timeout)
        return building is None or not building.is_alive()

    def _build(self, key: tuple[int, ...], pools: list[np.ndarray], storages: list) -> None:
        try:
            shared = SharedRows(pools)
            refs = tuple(weakref.ref(rows) for rows in storages)
            with self._lock:
                self.built += 1
                self._sets[key] = (refs, shared)
                self._sets.move_to_end(key)
                for stale in [k for k, (rs, _) in self._sets.items() if any(r() is None for r in rs)]:
                    del self._sets[stale]
                while len(self._sets) > self.size:
                    self._sets.popitem(last=False)
        finally:
            with self._lock:
                self._building = None
