"""Out-of-fold predictions of the ensemble, and the simulation in which labels hidden from the fit play the
out-of-scope texts (how texts about none of a profile's labels look to it). `selection` chooses from them."""

from __future__ import annotations

import numpy as np

from mcp_latent.judge.decision import answerable_p
from mcp_latent.judge.ensemble import KNN_K, ensemble_logits, exact_neighbours, fit_head, knn_votes, softmax
from mcp_latent.judge.words import Counts, WordsModel

# The simulation hides one of this many groups of labels at a time; it needs enough labels that the hidden
# ones are a fair stand-in for unseen topics (a 3-label profile has no "other topics" to learn from).
SIMULATION_GROUPS = 4
MIN_LABELS_TO_SIMULATE = 8


def ensemble_on(
    train_x: np.ndarray,
    train_y: np.ndarray,
    queries: np.ndarray,
    n_labels: int,
    cs: tuple[float, ...],
    train_texts: Counts | None = None,
    query_texts: Counts | None = None,
) -> tuple[dict[float, np.ndarray], np.ndarray, np.ndarray, np.ndarray | None]:
    """Fit on (train_x, train_y), predict queries: head logits per C, kNN votes, nearest-exemplar similarity, and
    the words expert's log-probabilities (None without the texts' n-gram counts)."""
    ids, sims = exact_neighbours(queries, train_x, KNN_K)
    votes = knn_votes(sims, train_y[ids], n_labels)
    head = {}
    for c in cs:
        weights, bias = fit_head(train_x, train_y, n_labels, c)
        head[c] = queries @ weights + bias
    words = None
    if train_texts is not None and query_texts is not None:
        words = WordsModel.fit(train_texts, train_y, n_labels).log_probs(query_texts)
    return head, votes, sims[:, 0], words


def simulate_out_of_scope(
    vectors: np.ndarray,
    y: np.ndarray,
    n_labels: int,
    c: float,
    families: list[tuple[float, float, float]],
    abstain: np.ndarray | None = None,
    texts: Counts | None = None,
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """(p per family, nearest similarity) of exemplars judged by a fit that never saw their label: how texts
    about none of the profile's labels look to it. Answer labels are split into groups and each group is hidden in
    turn (abstain labels, `abstain` (L,) bool, are always seen). families: (kNN weight, words weight,
    temperature); texts: the exemplars' (for the words expert). None when the profile has too few answer labels
    for that to mean anything."""
    present = np.unique(y)
    if abstain is not None:
        present = present[~abstain[present]]
    if len(present) < MIN_LABELS_TO_SIMULATE:
        return None
    group_of = np.full(n_labels, -1, dtype=np.int64)
    group_of[np.random.default_rng(0).permutation(present)] = np.arange(len(present)) % SIMULATION_GROUPS
    simulated = group_of[y] >= 0
    p = [np.zeros(len(y), dtype=np.float64) for _ in families]
    nearest = np.zeros(len(y), dtype=np.float32)
    for group in range(SIMULATION_GROUPS):
        hidden = group_of[y] == group
        words_needed = texts is not None and any(ww for _, ww, _ in families)
        head, votes, nearest[hidden], words = ensemble_on(
            vectors[~hidden],
            y[~hidden],
            vectors[hidden],
            n_labels,
            (c,),
            texts.subset(np.nonzero(~hidden)[0]) if words_needed else None,
            texts.subset(np.nonzero(hidden)[0]) if words_needed else None,
        )
        for out, (knn_weight, words_weight, temperature) in zip(p, families, strict=True):
            logits = ensemble_logits(head[c], votes, knn_weight, words, words_weight)
            out[hidden] = answerable_p(softmax(logits / temperature), abstain)
    return [out[simulated] for out in p], nearest[simulated]
