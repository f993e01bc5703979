"""The evidence `memory.Memory` fits how near a copy is from: which exemplars are close to which, and how far the
profile's own model reads each of them apart.

- `close_pairs`: every ordered pair of exemplars at least SHIFT_BAND similar (identical texts left out), and each
  exemplar's nearest other exemplar (the unguarded rule's evidence);
- `out_of_fold_log_probs`: each exemplar's ensemble log-probabilities (linear head plus the words expert at the
  fit's weight, no kNN) from a model that did not count it (SHIFT_FOLDS folds): a model that did reads a minimal
  pair as further apart than a new text of the same kind would be, and a taught text is judged by a model that
  has not counted the query either;
- `log_odds_shift`: how far one text's log-probabilities lie from an exemplar's towards another label.

Pure arithmetic on arrays (the fold heads are fitted here: about a second each on 2,500 exemplars).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcp_latent.judge.ensemble import fit_head, log_softmax
from mcp_latent.judge.words import WordsModel, featurize

# Similarity at or above which two vectors are the same text (float32 round-off of identical embeddings).
IDENTICAL = 0.9999
# Rows per block when comparing every exemplar with every other (bounds memory at n * block floats).
BLOCK = 1024
# Pairs of exemplars at least this similar are the evidence for the guard and the radius (MiniLM: a paraphrase of
# a proposal sits at 0.85-0.97 from it, a minimal pair at 0.8-0.95; below, texts are other proposals).
SHIFT_BAND = 0.85
SHIFT_FOLDS = 5  # exemplars' log-probabilities are measured out of fold


@dataclass(frozen=True)
class Head:
    """What a fit's ensemble reads text with, without the kNN expert: the linear head (its C, and the fitted
    weights to warm-start the fold heads from) and the words expert with its weight (None / 0: vectors alone)."""

    c: float
    weights: np.ndarray
    bias: np.ndarray
    words: WordsModel | None = None
    words_weight: float = 0.0

    def log_probs(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """The ensemble's log-probabilities (head plus weighted words) of new texts, (n, L)."""
        out = log_softmax(np.atleast_2d(vectors) @ self.weights + self.bias).astype(np.float64)
        if self.words is not None and self.words_weight and texts is not None:
            out = out + self.words_weight * self.words.log_probs(texts)
        return out


def close_pairs(vectors: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(nearest: (n,) each exemplar's nearest other exemplar, nearest_sim: (n,) its similarity, pairs: (m, 3)
    [i, k, sim] of every ordered pair at least SHIFT_BAND similar, minimal_pair: the closest two exemplars of
    different labels). Identical texts are never a pair (a duplicate, or a relabelled teach: the latest wins)."""
    n = len(vectors)
    nearest_sim = np.full(n, -1.0, dtype=np.float32)
    nearest = np.zeros(n, dtype=np.int64)
    minimal_pair = -1.0
    found: list[np.ndarray] = []
    for start in range(0, n, BLOCK):
        sims = vectors[start : start + BLOCK] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf  # itself
        sims[sims >= IDENTICAL] = -np.inf
        if not sims.size:
            continue
        nearest[start : start + len(sims)] = sims.argmax(axis=1)
        nearest_sim[start : start + len(sims)] = sims[rows, nearest[start : start + len(sims)]]
        other = np.where(y[None, :] != y[start : start + len(sims), None], sims, -np.inf)
        minimal_pair = max(minimal_pair, float(other.max()) if other.size else -1.0)
        i, k = np.nonzero(sims >= SHIFT_BAND)
        found.append(np.stack([i + start, k, sims[i, k]], axis=1).astype(np.float64))
    pairs = np.concatenate(found) if found else np.zeros((0, 3))
    return nearest, nearest_sim, pairs, minimal_pair


def out_of_fold_log_probs(vectors: np.ndarray, y: np.ndarray, head: Head, texts: list[str] | None) -> np.ndarray:
    """Each exemplar's ensemble log-probabilities from fold heads (and fold words) that did not count it."""
    n_labels = head.weights.shape[1]
    fold = np.arange(len(y)) % SHIFT_FOLDS
    out = np.zeros((len(y), n_labels), dtype=np.float64)
    counts = featurize(texts) if head.words is not None and head.words_weight and texts is not None else None
    for f in range(SHIFT_FOLDS):
        held, kept = np.nonzero(fold == f)[0], np.nonzero(fold != f)[0]
        if not len(held):
            continue
        if len(kept) and len(np.unique(y[kept])) > 1:
            weights, bias = fit_head(vectors[kept], y[kept], n_labels, head.c, (head.weights, head.bias))
        else:
            weights, bias = head.weights, head.bias
        out[held] = log_softmax(vectors[held] @ weights + bias)
        if counts is not None and len(kept):
            words = WordsModel.fit(counts.subset(kept), y[kept], n_labels).log_probs(counts.subset(held))
            out[held] += head.words_weight * words
    return out


def log_odds_shift(query: np.ndarray, exemplar: np.ndarray, label: np.ndarray) -> np.ndarray:
    """How far each query's log-probabilities lie from its exemplar's towards another label than the exemplar's
    `label`: the largest gain in log-odds of another label over it (0 for the same reading). query, exemplar:
    (n, L) log-probabilities; label: (n,)."""
    delta = np.atleast_2d(query) - np.atleast_2d(exemplar)
    rows = np.arange(len(delta))
    gain = delta - delta[rows, label][:, None]
    gain[rows, label] = -np.inf
    return gain.max(axis=1) if gain.shape[1] > 1 else np.zeros(len(delta))
