"""The evidence `memory.Memory` fits how near a copy is from: which exemplars are close to which, and how far the
profile's own model reads each of them apart.

- `close_pairs`: every ordered pair of exemplars at least SHIFT_BAND similar (identical texts left out), and each
  exemplar's nearest other exemplar (the unguarded rule's evidence);
- `fold_shifts`: how far the profile's model (linear head plus the words expert at the fit's weight, no kNN)
  reads the two texts of each pair apart, with a fold model that did not count the first (SHIFT_FOLDS folds): a
  model that had counted both reads a minimal pair as further apart than a new text beside a taught one;
- `log_odds_shift`: how far one text's log-probabilities lie from an exemplar's towards another label.

Both readings also say whether the model's best label for the text is the exemplar's (a corroborated copy, which
`memory.Memory` may let through a wider limit), and a text that states other amounts than the exemplar
(`memory_numbers`: "$900 a year" / "$90k a year") is never a copy of it.

Pure arithmetic on arrays (the fold heads are fitted here: about a second each on 2,500 exemplars).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mcp_latent.judge.ensemble import fit_head, log_softmax
from mcp_latent.judge.memory_numbers import amounts, amounts_differ
from mcp_latent.judge.words import WordsModel, featurize, tokens

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

    @property
    def reads_words(self) -> bool:
        return self.words is not None and bool(self.words_weight)

    def log_probs(
        self, vectors: np.ndarray, texts: list[str] | None = None, first_words: np.ndarray | None = None
    ) -> np.ndarray:
        """The ensemble's log-probabilities (head plus weighted words) of new texts, (n, L). first_words: the words
        expert's (1, L) log-probabilities of the first text when already read (the query of a verdict)."""
        out = log_softmax(np.atleast_2d(vectors) @ self.weights + self.bias).astype(np.float64)
        if self.words is not None and self.words_weight and texts is not None:
            if first_words is None:
                words = self.words.log_probs(texts)
            else:  # row by row the same numbers as one read of all the texts
                words = np.concatenate([first_words, self.words.log_probs(texts[1:])])
            out = out + self.words_weight * words
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


def fold_shifts(
    vectors: np.ndarray, y: np.ndarray, head: Head, texts: list[str] | None, pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The guard's shift of each close pair [i, k, sim] (i read as a copy of exemplar k), as a deployment reads a
    new text beside an exemplar it has learnt: both read by the fold's model (head, and words when the head reads
    them) that did not count i but (in the other folds) counted k; and whether that model's best label for i is
    k's (the reading corroborates the copy). A pair whose texts state other amounts (`memory_numbers`) is
    never a copy: shift +inf."""
    n_labels = head.weights.shape[1]
    fold = np.arange(len(y)) % SHIFT_FOLDS
    i, k = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    out = np.zeros(len(pairs), dtype=np.float64)
    agrees = np.zeros(len(pairs), dtype=bool)
    counts = featurize(texts) if head.words is not None and head.words_weight and texts is not None else None
    for f in range(SHIFT_FOLDS):
        asked = np.nonzero(fold[i] == f)[0]
        kept = np.nonzero(fold != f)[0]
        if not len(asked):
            continue
        weights, bias = head.weights, head.bias
        if len(np.unique(y[kept])) > 1:
            weights, bias = fit_head(vectors[kept], y[kept], n_labels, head.c, (head.weights, head.bias))
        rows = np.concatenate([i[asked], k[asked]])
        read = log_softmax(vectors[rows] @ weights + bias).astype(np.float64)
        if counts is not None:
            words = WordsModel.fit(counts.subset(kept), y[kept], n_labels)
            read += head.words_weight * words.log_probs(counts.subset(rows))
        out[asked] = log_odds_shift(read[: len(asked)], read[len(asked) :], y[k[asked]])
        agrees[asked] = read[: len(asked)].argmax(axis=1) == y[k[asked]]
    if texts:  # exemplars stored without their texts ([]: a vector-only fit) state no amounts
        read_amounts = {}
        for n, (a, b) in enumerate(zip(i, k, strict=True)):
            for row in (a, b):
                if row not in read_amounts:
                    read_amounts[row] = amounts(texts[row]) if row < len(texts) and texts[row] else {}
            if amounts_differ(read_amounts[a], read_amounts[b]):
                out[n] = np.inf
    return out, agrees


def log_odds_shift(query: np.ndarray, exemplar: np.ndarray, label: np.ndarray) -> np.ndarray:
    """How much less each query reads as its exemplar's `label` than the exemplar does: the drop in the log-odds
    of that label against all the others together (0 for the same reading, below 0 when the query reads as that
    label even more). query, exemplar: (n, L) log-probabilities (unnormalised is fine); label: (n,)."""
    return _label_log_odds(np.atleast_2d(exemplar), label) - _label_log_odds(np.atleast_2d(query), label)


def _label_log_odds(log_probs: np.ndarray, label: np.ndarray) -> np.ndarray:
    rows = np.arange(len(log_probs))
    others = log_probs.copy()
    others[rows, label] = -np.inf
    top = others.max(axis=1, keepdims=True)
    rest = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
    return log_probs[rows, label] - rest


@dataclass(frozen=True)
class PairReader:
    """The guard's shifts read by one model (`head`) over exemplar rows (vectors, texts, labels): a text with the
    same words as the exemplar is a copy (-inf, whatever case and punctuation); where the model reads words and a
    text is missing there is no reading to compare (+inf: never a copy but identical)."""

    head: Head
    vectors: Any
    texts: Any
    y: Any

    def _text(self, row: int) -> str | None:
        return self.texts[row] if row < len(self.texts) and self.texts[row] else None

    def query_shift(
        self, vector: np.ndarray, text: str | None, row: int, known: np.ndarray | None = None
    ) -> tuple[float, bool]:
        """A query's shift from exemplar `row`'s reading (known: the words expert's log-probabilities of the query,
        when `FittedProfile.judge` has read it already), and whether the model's best label for the query is the
        row's (it corroborates the copy). A query stating other amounts than the row is never a copy (+inf)."""
        row_text = self._text(row)
        if text is not None and row_text is not None and tokens(text) == tokens(row_text):
            return -np.inf, True
        if self.head.reads_words and (text is None or row_text is None):
            return np.inf, False
        if text is not None and row_text is not None and amounts_differ(amounts(text), amounts(row_text)):
            return np.inf, False
        words = [text, row_text] if self.head.reads_words else None
        read = self.head.log_probs(np.stack([vector, self.vectors[row]]), words, known)
        label = int(self.y[row])
        return float(log_odds_shift(read[:1], read[1:], np.array([label]))[0]), int(read[0].argmax()) == label

    def shifts(self, queries: np.ndarray, exemplars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows `queries` read as copies of rows `exemplars` (`Memory.with_rows`): (shifts, corroborated)."""
        read = [
            self.query_shift(self.vectors[q], self._text(q), int(e)) for q, e in zip(queries, exemplars, strict=True)
        ]
        return np.array([r[0] for r in read], dtype=np.float64), np.array([r[1] for r in read], dtype=bool)
