"""Answers from memory: a text (nearly) identical to one of the profile's exemplars gets that exemplar's label, so
a decision taught with `teach` is answered as taught from the next call, whatever the head and the threshold say.

How near is "nearly identical" is fitted from the profile's own exemplars, never guessed:
- every exemplar's nearest other exemplar says how often two texts that close share a label; the radius is the
  lowest similarity at which that agreement, over every pair at least that close, still meets the profile's target
  accuracy (so answers from memory are right at least as often as the target asks);
- and it lies above every minimal pair: two exemplars of different labels (a proposal with its rollback plan and
  the same one without) are never copies of each other, so the radius clears the closest such pair by a margin.
Texts with identical vectors are the same text: of conflicting labels for one text, the latest taught wins.

Pure arithmetic on arrays (no threads, no I/O): `FittedProfile` holds a `Memory` and `LiveProfile` grows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Similarity at or above which two vectors are the same text (float32 round-off of identical embeddings).
IDENTICAL = 0.9999
# The radius never goes below this, whatever the exemplars say: a profile with few or clean exemplars measures
# perfect agreement far down, where a paraphrase with another outcome already sits (MiniLM: 0.85-0.95).
MIN_RADIUS = 0.9
# A near copy must be this much closer than the closest minimal pair of the profile's exemplars.
PAIR_MARGIN = 0.01
# Rows per block when comparing every exemplar with every other (bounds memory at n * block floats).
BLOCK = 1024


@dataclass(frozen=True)
class Memory:
    """The fitted radius and the evidence it came from. Immutable; `with_rows` gives the grown one."""

    pair_sim: np.ndarray  # (n,) each exemplar's nearest other exemplar's similarity (identical texts left out)
    pair_same: np.ndarray  # (n,) whether that neighbour has the same label
    minimal_pair: float  # similarity of the closest two exemplars of different labels (identical texts left out)
    target: float
    radius: float = 1.0
    accuracy: float = 1.0  # agreement of the exemplar pairs at least `radius` apart: the p of a memory answer

    @classmethod
    def fit(cls, vectors: np.ndarray, y: np.ndarray, target: float) -> Memory:
        """Compare every exemplar with every other (blocked: O(n^2 d), about a second for 10,000) and fit."""
        n = len(vectors)
        pair_sim = np.full(n, -1.0, dtype=np.float32)
        pair_same = np.zeros(n, dtype=bool)
        minimal_pair = -1.0
        for start in range(0, n, BLOCK):
            sims = vectors[start : start + BLOCK] @ vectors.T
            rows = np.arange(len(sims))
            sims[rows, rows + start] = -np.inf  # itself
            sims[sims >= IDENTICAL] = -np.inf  # the same text again (a duplicate, or a conflicting teach)
            if not sims.size:
                continue
            nearest = sims.argmax(axis=1)
            pair_sim[start : start + len(sims)] = sims[rows, nearest]
            pair_same[start : start + len(sims)] = y[nearest] == y[start : start + len(sims)]
            other = np.where(y[None, :] != y[start : start + len(sims), None], sims, -np.inf)
            minimal_pair = max(minimal_pair, float(other.max()) if other.size else -1.0)
        return cls(pair_sim, pair_same, minimal_pair, target).retarget(target)

    def retarget(self, target: float) -> Memory:
        """The radius for a target accuracy (from the stored evidence: no comparison is redone)."""
        order = np.argsort(-self.pair_sim, kind="stable")
        sims = self.pair_sim[order]
        agreement = np.cumsum(self.pair_same[order]) / np.arange(1, len(sims) + 1)
        meets = np.nonzero(agreement >= target - 1e-12)[0]
        # the widest radius whose pairs all together still meet the target, cut at the last exemplar of a tie
        by_accuracy = float(sims[meets[-1]]) if len(meets) else 1.0
        radius = min(IDENTICAL, max(MIN_RADIUS, by_accuracy, self.minimal_pair + PAIR_MARGIN))
        within = sims >= radius
        accuracy = float(agreement[np.nonzero(within)[0][-1]]) if within.any() else 1.0
        return replace(self, target=target, radius=radius, accuracy=max(accuracy, target))

    def with_rows(self, old: np.ndarray, old_y: np.ndarray, new: np.ndarray, new_y: np.ndarray) -> Memory:
        """The memory once exemplars `new` (labels `new_y`) join `old`: a taught text that is a minimal pair of an
        exemplar (close, another label) pushes the radius above it at once; the agreement evidence of the new rows
        joins at the next fit (`fit`)."""
        pool = np.concatenate([old, new]) if len(old) else new
        pool_y = np.concatenate([old_y, new_y]) if len(old) else new_y
        sims = new @ pool.T
        sims[np.arange(len(new)), len(old) + np.arange(len(new))] = -np.inf
        sims[sims >= IDENTICAL] = -np.inf
        other = np.where(pool_y[None, :] != new_y[:, None], sims, -np.inf)
        closest = float(other.max()) if other.size else -1.0
        if closest <= self.minimal_pair:
            return self
        return replace(self, minimal_pair=closest).retarget(self.target)

    def recall(self, ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Per query, the exemplar row to answer from (-1: none within the radius). ids/sims: its nearest
        exemplars, best first; among identical ones (the same text taught again), the latest row wins."""
        out = np.full(len(ids), -1, dtype=np.int64)
        if not ids.shape[1]:
            return out
        for q in np.nonzero(sims[:, 0] >= self.radius)[0]:
            tied = sims[q] >= sims[q, 0] - (1.0 - IDENTICAL)
            out[q] = int(ids[q][tied].max())
        return out

    # --- storage beside the fit ----------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "memory_pair_sim": self.pair_sim,
            "memory_pair_same": self.pair_same,
            "memory_minimal_pair": np.array(self.minimal_pair),
        }

    @classmethod
    def from_arrays(cls, data, target: float) -> Memory | None:
        if "memory_pair_sim" not in data:
            return None
        pair_sim, same, minimal = data["memory_pair_sim"], data["memory_pair_same"], data["memory_minimal_pair"]
        return cls(pair_sim, same.astype(bool), float(minimal), target).retarget(target)
