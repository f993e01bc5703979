"""The ensemble's arithmetic: a linear softmax head on frozen embeddings, a similarity-weighted kNN vote, the words
expert's label log-probabilities (`words`), and their product. Pure numpy (scikit-learn and scipy are imported
only by the fitting functions)."""

from __future__ import annotations

import numpy as np

KNN_K = 10  # neighbours voting in the ensemble
KNN_TAU = 0.05  # vote weight exp(similarity / tau): closer exemplars count much more
KNN_FLOOR = 1e-4  # vote share given to labels with no neighbour, so their log stays finite
ABSENT_LABEL_BIAS = -1e4  # a label with no training rows (hidden in the simulation) can never win


def preload() -> None:
    """Import the fitting libraries now. Startup runs this in a thread beside the model load: imported lazily by a
    profile's first fit instead, they took 9 s of a small profile's first verdict on a loaded 2-core machine
    while a large profile embedded its exemplars."""
    import scipy.optimize  # noqa: F401
    import sklearn.linear_model  # noqa: F401


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def fit_head(
    x: np.ndarray, y: np.ndarray, n_labels: int, c: float, start: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; returns (weights d x L, bias L). `start`: an earlier head of the same
    labels to warm-start from (a refit after a few new exemplars then takes a fraction of the iterations)."""
    from sklearn.linear_model import LogisticRegression  # imported lazily: only fitting needs it

    classes = np.unique(y)
    if len(classes) == 1:  # a profile taught one label so far: that label wins until it learns another
        bias = np.full(n_labels, ABSENT_LABEL_BIAS, dtype=np.float32)
        bias[classes[0]] = 0.0
        return np.zeros((x.shape[1], n_labels), dtype=np.float32), bias
    clf = LogisticRegression(C=c, max_iter=1000)
    if start is not None and len(classes) > 2:
        clf.warm_start = True  # sklearn then starts from coef_/intercept_ when their shapes fit
        clf.coef_ = np.ascontiguousarray(start[0][:, classes].T, dtype=np.float64)
        clf.intercept_ = np.asarray(start[1][classes], dtype=np.float64)
    clf.fit(x, y)
    weights = np.zeros((x.shape[1], n_labels), dtype=np.float32)
    bias = np.full(n_labels, ABSENT_LABEL_BIAS, dtype=np.float32)
    binary = len(clf.classes_) == 2  # sklearn then fits one weight vector: split it symmetrically over the two
    weights[:, clf.classes_] = np.hstack([-clf.coef_.T, clf.coef_.T]) / 2 if binary else clf.coef_.T
    bias[clf.classes_] = np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2 if binary else clf.intercept_
    return weights, bias


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimizing the negative log-likelihood of held-out logits."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: nll(logits / np.exp(log_t), y), bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(result.x))


def knn_votes(similarities: np.ndarray, neighbour_labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Similarity-weighted label shares of each row's neighbours: (n, k) similarities/labels -> (n, L)."""
    weights = np.exp((similarities - similarities[:, :1]) / KNN_TAU)  # shifted by the best: no overflow
    n = len(similarities)
    # bincount adds in the same order as the `np.add.at` this replaced (row by row, neighbour by neighbour), faster
    bins = (np.arange(n)[:, None] * n_labels + neighbour_labels).ravel()
    votes = np.bincount(bins, weights=weights.ravel(), minlength=n * n_labels).reshape(n, n_labels)
    return votes / votes.sum(axis=1, keepdims=True)


def ensemble_logits(
    head_logits: np.ndarray,
    votes: np.ndarray | None,
    knn_weight: float,
    words: np.ndarray | None = None,
    words_weight: float = 0.0,
) -> np.ndarray:
    """Product of experts: the linear head's log-probabilities plus the weighted kNN vote log-shares plus the
    weighted words log-probabilities (an expert with weight 0 may be None)."""
    logits = log_softmax(head_logits)
    if knn_weight:
        logits = logits + knn_weight * np.log(votes + KNN_FLOOR)
    if words_weight:
        logits = logits + words_weight * words
    return logits


def nll(logits: np.ndarray, y: np.ndarray) -> float:
    return float(-log_softmax(logits)[np.arange(len(y)), y].mean())


def top_of_row(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `k` (1 <= k <= len(row)) of one query's similarities: (ids, similarities), each (1, k), best first.
    The partition and sort `exact_neighbours` does, without its batch bookkeeping (`neighbour_search`,
    `quantized_rows`)."""
    top = np.argpartition(-row, k - 1)[:k]
    top_sims = row[top]
    order = np.argsort(-top_sims)
    return top[order][None, :], top_sims[order][None, :]


def exact_neighbours(queries: np.ndarray, pool: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (indexes, similarities) of each query in pool, best first (chunked to bound memory)."""
    k = min(k, len(pool))
    ids = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk] @ pool.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1)
        ids[start : start + chunk] = np.take_along_axis(top, order, axis=1)
        sims[start : start + chunk] = np.take_along_axis(top_sims, order, axis=1)
    return ids, sims
