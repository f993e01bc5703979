"""Answers from memory: a text (nearly) identical to one of the profile's exemplars gets that exemplar's label, so
a decision taught with `teach` is answered as taught from the next call, whatever the head and the threshold say.

How near is "nearly identical" is fitted from the profile's own exemplars, never guessed:
- every exemplar's nearest other exemplar says how often two texts that close share a label; the radius is the
  lowest similarity at which that agreement, over every pair at least that close, still meets the profile's target
  accuracy (so answers from memory are right at least as often as the target asks);
- and it lies above every minimal pair: two exemplars of different labels (a proposal with its rollback plan and
  the same one without) are never copies of each other, so the radius clears the closest such pair by a margin;
- similarity alone cannot tell such a pair from a copy (all-MiniLM-L6-v2: "...with a tested rollback plan and a
  verified backup" vs "...without any rollback plan or backup" 0.958, the same text lower-cased 0.969), so a text
  that is not identical must also read like the exemplar to the words expert: the words in which they differ may
  not move its log-odds towards another label by more than a limit fitted the same way, on the exemplars' close
  pairs (sorted by that shift, the widest limit at which the pairs within it still agree as often as the target).
Texts with identical vectors are the same text: of conflicting labels for one text, the latest taught wins.

Pure arithmetic on arrays (no threads, no I/O): `FittedProfile` holds a `Memory` and `LiveProfile` grows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mcp_latent.judge.words import WordsModel, featurize

# Similarity at or above which two vectors are the same text (float32 round-off of identical embeddings).
IDENTICAL = 0.9999
# The radius never goes below this, whatever the exemplars say: a profile with few or clean exemplars measures
# perfect agreement far down, where a paraphrase with another outcome already sits (MiniLM: 0.85-0.95).
MIN_RADIUS = 0.9
# A near copy must be this much closer than the closest minimal pair of the profile's exemplars.
PAIR_MARGIN = 0.01
# Rows per block when comparing every exemplar with every other (bounds memory at n * block floats).
BLOCK = 1024
# Close pairs of exemplars at least this similar are the evidence for the words limit (fewer than MIN_PAIRS such
# pairs: the limit is 0, only texts whose differing words favour no other label are copies).
SHIFT_BAND = 0.85
MIN_PAIRS = 10
SHIFT_FOLDS = 5  # the words shifts of exemplar pairs are measured out of fold


@dataclass(frozen=True)
class Memory:
    """The fitted radius and the evidence it came from. Immutable; `with_rows` gives the grown one."""

    pair_sim: np.ndarray  # (n,) each exemplar's nearest other exemplar's similarity (identical texts left out)
    pair_same: np.ndarray  # (n,) whether that neighbour has the same label
    minimal_pair: float  # similarity of the closest two exemplars of different labels (identical texts left out)
    target: float
    pair_shift: np.ndarray | None = None  # (n,) the words' shift from the neighbour's label (None: no words)
    radius: float = 1.0
    accuracy: float = 1.0  # agreement of the exemplar pairs at least `radius` apart: the p of a memory answer
    shift_limit: float | None = None  # the largest words shift of a near copy (None: no words expert)

    @classmethod
    def fit(cls, vectors: np.ndarray, y: np.ndarray, target: float, words=None, texts=None) -> Memory:
        """Compare every exemplar with every other (blocked: O(n^2 d), about a second for 10,000) and fit; with
        the words expert (`words`, and the exemplars' `texts`), its limit too."""
        n = len(vectors)
        pair_sim = np.full(n, -1.0, dtype=np.float32)
        pair_of = np.zeros(n, dtype=np.int64)
        minimal_pair = -1.0
        for start in range(0, n, BLOCK):
            sims = vectors[start : start + BLOCK] @ vectors.T
            rows = np.arange(len(sims))
            sims[rows, rows + start] = -np.inf  # itself
            sims[sims >= IDENTICAL] = -np.inf  # the same text again (a duplicate, or a conflicting teach)
            if not sims.size:
                continue
            pair_of[start : start + len(sims)] = sims.argmax(axis=1)
            pair_sim[start : start + len(sims)] = sims[rows, pair_of[start : start + len(sims)]]
            other = np.where(y[None, :] != y[start : start + len(sims), None], sims, -np.inf)
            minimal_pair = max(minimal_pair, float(other.max()) if other.size else -1.0)
        pair_shift = None
        if words is not None and texts is not None and len(texts) == n and n > 1:
            log_probs = _out_of_fold(list(texts), y, words.n_labels)
            pair_shift = words_shift(log_probs, log_probs[pair_of], y[pair_of])
        memory = cls(pair_sim, y[pair_of] == y, minimal_pair, target, pair_shift)
        return memory.retarget(target)

    def retarget(self, target: float) -> Memory:
        """The radius for a target accuracy (from the stored evidence: no comparison is redone)."""
        order = np.argsort(-self.pair_sim, kind="stable")
        sims = self.pair_sim[order]
        agreement = np.cumsum(self.pair_same[order]) / np.arange(1, len(sims) + 1)
        meets = np.nonzero(agreement >= target - 1e-12)[0]
        # The widest radius whose pairs all together still meet the target. None meets it when the closest pair
        # disagrees: then no pair at all is as close as a copy, and the minimal-pair bound decides.
        by_accuracy = float(sims[meets[-1]]) if len(meets) else -1.0
        radius = min(IDENTICAL, max(MIN_RADIUS, by_accuracy, self.minimal_pair + PAIR_MARGIN))
        if (self.pair_sim >= SHIFT_BAND).sum() < MIN_PAIRS:  # nothing measured about close texts: identical only
            radius = IDENTICAL
        within = sims >= radius
        # no exemplar pair that close: no measured agreement, claim the target's
        accuracy = float(agreement[np.nonzero(within)[0][-1]]) if within.any() else target
        return replace(self, target=target, radius=radius, accuracy=max(accuracy, target), shift_limit=self._limit())

    def _limit(self) -> float | None:
        """The widest words shift at which close exemplar pairs (similarity >= SHIFT_BAND) within it agree on their
        label at least as often as the target, and never below 0 (None: no words expert)."""
        if self.pair_shift is None:
            return None
        close = (self.pair_sim >= SHIFT_BAND) & np.isfinite(self.pair_shift)
        if close.sum() < MIN_PAIRS:
            return 0.0
        order = np.argsort(self.pair_shift[close], kind="stable")
        shifts, same = self.pair_shift[close][order], self.pair_same[close][order]
        agreement = np.cumsum(same) / np.arange(1, len(same) + 1)
        meets = np.nonzero((agreement >= self.target - 1e-12) & np.append(shifts[1:] != shifts[:-1], True))[0]
        # Words that move towards no other label at all (a copy with other case or punctuation) always pass.
        return max(0.0, float(shifts[meets[-1]])) if len(meets) else 0.0

    def with_rows(self, old: np.ndarray, old_y: np.ndarray, new: np.ndarray, new_y: np.ndarray) -> Memory:
        """The memory once exemplars `new` (labels `new_y`) join `old`: a taught text that is a minimal pair of an
        exemplar (close, another label) pushes the radius above it at once; the agreement evidence of the new rows
        joins at the next fit (`fit`)."""
        closest = -1.0
        for pool, pool_y, itself in ((old, old_y, False), (new, new_y, True)):  # no copy of the exemplars per teach
            if not len(pool):
                continue
            sims = new @ pool.T
            if itself:
                np.fill_diagonal(sims, -np.inf)
            sims[sims >= IDENTICAL] = -np.inf  # the same text (relabelled: the latest wins, no pair)
            other = np.where(pool_y[None, :] != new_y[:, None], sims, -np.inf)
            closest = max(closest, float(other.max()) if other.size else -1.0)
        if closest <= self.minimal_pair:
            return self
        return replace(self, minimal_pair=closest).retarget(self.target)

    def recall(self, ids: np.ndarray, sims: np.ndarray, shift=None) -> np.ndarray:
        """Per query, the exemplar row to answer from (-1: none). ids/sims: its nearest exemplars, best first;
        among identical ones (the same text taught again), the latest row wins. A query within the radius that is
        not identical is a copy only when `shift(query index, row)` (the words expert's shift from the row's label,
        None without words) is within the limit."""
        out = np.full(len(ids), -1, dtype=np.int64)
        if not ids.shape[1]:
            return out
        for q in np.nonzero(sims[:, 0] >= self.radius)[0]:
            tied = sims[q] >= sims[q, 0] - (1.0 - IDENTICAL)
            row = int(ids[q][tied].max())
            if sims[q, 0] < IDENTICAL and self.pair_shift is not None:  # fitted with words: they must agree
                moved = None if shift is None or self.shift_limit is None else shift(q, row)
                if moved is None or moved > self.shift_limit:
                    continue
            out[q] = row
        return out

    # --- storage beside the fit ----------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {
            "memory_pair_sim": self.pair_sim,
            "memory_pair_same": self.pair_same,
            "memory_minimal_pair": np.array(self.minimal_pair),
        }
        if self.pair_shift is not None:
            out["memory_pair_shift"] = self.pair_shift
        return out

    @classmethod
    def from_arrays(cls, data, target: float) -> Memory | None:
        if "memory_pair_sim" not in data:
            return None
        pair_sim, same, minimal = data["memory_pair_sim"], data["memory_pair_same"], data["memory_minimal_pair"]
        shift = data["memory_pair_shift"] if "memory_pair_shift" in data else None
        return cls(pair_sim, same.astype(bool), float(minimal), target, shift).retarget(target)


def _out_of_fold(texts: list[str], y: np.ndarray, n_labels: int) -> np.ndarray:
    """Each exemplar's words log-probabilities from a words expert that did not count it (SHIFT_FOLDS folds): one
    that did reads a minimal pair as further apart than a new text of the same kind would be."""
    counts = featurize(texts)
    fold = np.arange(len(texts)) % SHIFT_FOLDS
    out = np.zeros((len(texts), n_labels), dtype=np.float64)
    for f in range(SHIFT_FOLDS):
        held, kept = np.nonzero(fold == f)[0], np.nonzero(fold != f)[0]
        if len(held) and len(kept):
            out[held] = WordsModel.fit(counts.subset(kept), y[kept], n_labels).log_probs(counts.subset(held))
    return out


def words_shift(query: np.ndarray, exemplar: np.ndarray, label: np.ndarray) -> np.ndarray:
    """How far the words of each query move the words expert from its exemplar's `label` towards the likeliest
    other label: the largest gain in log-odds of another label over it (0 for the same words). query, exemplar:
    (n, L) log-probabilities; label: (n,)."""
    delta = np.atleast_2d(query) - np.atleast_2d(exemplar)
    rows = np.arange(len(delta))
    gain = delta - delta[rows, label][:, None]
    gain[rows, label] = -np.inf
    return gain.max(axis=1) if gain.shape[1] > 1 else np.zeros(len(delta))
