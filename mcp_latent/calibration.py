"""Choosing how a profile decides, from its own exemplars only: the ensemble's head regularization and kNN weight,
a temperature (so `p` means "probability this label is right"), an abstention threshold reaching the profile's
target answered accuracy, and an out-of-scope cutoff on the similarity to the nearest exemplar, chosen on a
simulation in which labels hidden from the fit play the out-of-scope texts. All by cross-validation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .ensemble import KNN_K, ensemble_logits, exact_neighbours, fit_head, fit_temperature, knn_votes, nll, softmax
from .profiles import ProfileSpec

log = logging.getLogger(__name__)

FIT_VERSION = "4"  # bump when fitting changes: cached fits keyed by it are then refitted
MIN_THRESHOLD = 0.5  # never answer with a label the model itself thinks is more likely wrong than right
# The out-of-scope cutoff never goes below this: the similarity that all but this share of held-out in-scope
# exemplars reach to their nearest exemplar, minus a margin (small profiles estimate that quantile noisily).
OUT_OF_SCOPE_QUANTILE = 0.01
OUT_OF_SCOPE_MARGIN = 0.03
# ...and never above the similarity that this share of held-out in-scope exemplars falls below: an unreachable
# out-of-scope target must not silence the profile.
MAX_IN_SCOPE_FLAGGED = 0.2
# The simulation hides one of this many groups of labels at a time; it needs enough labels that the hidden
# ones are a fair stand-in for unseen topics (a 3-label profile has no "other topics" to learn from).
SIMULATION_GROUPS = 4
MIN_LABELS_TO_SIMULATE = 8
CV_FOLDS = 5
# Candidates chosen per profile by out-of-fold accuracy (log-loss breaks ties): the head's inverse
# regularization, and the kNN expert's weight (large clean profiles gain from neighbours, small noisy ones less).
HEAD_CS = (3.0, 10.0, 30.0)
KNN_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)


def pick_threshold(p: np.ndarray, correct: np.ndarray, target: float) -> float:
    """Lowest confidence threshold whose answered accuracy (on held-out predictions) reaches `target`."""
    order = np.argsort(-p)
    p_sorted, correct_sorted = p[order], correct[order]
    accuracy = np.cumsum(correct_sorted) / np.arange(1, len(p) + 1)
    meeting = np.nonzero(accuracy >= target)[0]
    if len(meeting) == 0:
        return 1.0  # the target is out of reach: answer only when certain
    if meeting[-1] == len(p) - 1:
        return MIN_THRESHOLD  # every held-out answer together meets the target: no need to abstain on confidence
    return float(max(MIN_THRESHOLD, p_sorted[meeting[-1]]))


def _folds(y: np.ndarray, n_folds: int, seed: int = 0) -> list[np.ndarray] | None:
    """Stratified fold assignment; None when some label has too few exemplars to hold any out."""
    counts = np.bincount(y)
    n_folds = min(n_folds, int(counts[counts > 0].min()))
    if n_folds < 2:
        return None
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        members = np.nonzero(y == label)[0]
        rng.shuffle(members)
        fold_of[members] = np.arange(len(members)) % n_folds
    return [np.nonzero(fold_of == f)[0] for f in range(n_folds)]


@dataclass
class Calibration:
    """What the fit decided, and the held-out evidence it decided on."""

    c: float
    knn_weight: float
    temperature: float
    threshold: float
    min_similarity: float
    cv_accuracy: float | None
    cv_coverage: float | None
    cv_answered_accuracy: float | None
    cv_out_of_scope_recall: float | None = None  # on the simulation; None when the profile has too few labels


def _ensemble_on(
    train_x: np.ndarray, train_y: np.ndarray, queries: np.ndarray, n_labels: int, cs: tuple[float, ...]
) -> tuple[dict[float, np.ndarray], np.ndarray, np.ndarray]:
    """Fit on (train_x, train_y), predict queries: head logits per C, kNN votes, nearest-exemplar similarity."""
    ids, sims = exact_neighbours(queries, train_x, KNN_K)
    votes = knn_votes(sims, train_y[ids], n_labels)
    head = {}
    for c in cs:
        weights, bias = fit_head(train_x, train_y, n_labels, c)
        head[c] = queries @ weights + bias
    return head, votes, sims[:, 0]


def _select_head(
    oof_head: dict[float, np.ndarray], oof_votes: np.ndarray, y: np.ndarray
) -> tuple[float, float, float, np.ndarray]:
    """(C, kNN weight, temperature, scaled logits) with the best out-of-fold accuracy; log-loss breaks ties."""
    best = None  # only the best candidate's logits are kept: 18 copies of a large profile's would be ~100 MB
    for c, head in oof_head.items():
        for knn_weight in KNN_WEIGHTS:
            logits = ensemble_logits(head, oof_votes, knn_weight)
            temperature = fit_temperature(logits, y)
            score = (float((logits.argmax(axis=1) == y).mean()), -nll(logits / temperature, y))
            if best is None or score > best[0]:
                best = (score, c, knn_weight, temperature, logits / temperature)
    _, c, knn_weight, temperature, logits = best
    return c, knn_weight, temperature, logits


def simulate_out_of_scope(
    vectors: np.ndarray, y: np.ndarray, n_labels: int, c: float, knn_weight: float, temperature: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """(p, nearest similarity) of exemplars judged by a fit that never saw their label: how texts about none of
    the profile's labels look to it. Labels are split into groups and each group is hidden in turn. None when
    the profile has too few labels for that to mean anything."""
    present = np.unique(y)
    if len(present) < MIN_LABELS_TO_SIMULATE:
        return None
    group_of = np.zeros(n_labels, dtype=np.int64)
    group_of[np.random.default_rng(0).permutation(present)] = np.arange(len(present)) % SIMULATION_GROUPS
    p = np.zeros(len(y), dtype=np.float64)
    nearest = np.zeros(len(y), dtype=np.float32)
    for group in range(SIMULATION_GROUPS):
        hidden = group_of[y] == group
        head, votes, nearest[hidden] = _ensemble_on(vectors[~hidden], y[~hidden], vectors[hidden], n_labels, (c,))
        p[hidden] = softmax(ensemble_logits(head[c], votes, knn_weight) / temperature).max(axis=1)
    return p, nearest


def in_scope_floor(in_scope_nearest: np.ndarray) -> float:
    """The lowest out-of-scope cutoff: all but OUT_OF_SCOPE_QUANTILE of held-out in-scope exemplars reach it."""
    return float(np.quantile(in_scope_nearest, OUT_OF_SCOPE_QUANTILE)) - OUT_OF_SCOPE_MARGIN


def pick_min_similarity(
    in_scope_nearest: np.ndarray,
    out_of_scope_p: np.ndarray,
    out_of_scope_nearest: np.ndarray,
    threshold: float,
    target_recall: float,
) -> float:
    """Lowest nearest-exemplar cutoff that, with the confidence threshold, flags `target_recall` of the
    simulated out-of-scope texts; kept between the floor and ceiling set by the held-out in-scope exemplars."""
    floor = in_scope_floor(in_scope_nearest)
    ceiling = float(np.quantile(in_scope_nearest, MAX_IN_SCOPE_FLAGGED))
    still_answered = np.sort(out_of_scope_nearest[out_of_scope_p >= threshold])
    already_flagged = len(out_of_scope_p) - len(still_answered)
    missing = int(np.ceil(target_recall * len(out_of_scope_p) - 1e-9)) - already_flagged  # 0.8 * 10 is 8, not 9
    if missing <= 0:
        return floor
    cutoff = float(np.nextafter(still_answered[missing - 1], np.float32(2)))  # flags exactly the `missing` lowest
    return min(max(cutoff, floor), ceiling)


def fit_calibration(vectors: np.ndarray, y: np.ndarray, n_labels: int, spec: ProfileSpec) -> Calibration:
    """Cross-validate the ensemble on the exemplars: head, temperature, abstention threshold, out-of-scope cutoff."""
    folds = _folds(y, CV_FOLDS)
    if folds is None:
        log.info("profile %s: too few exemplars per label to cross-validate; default calibration", spec.name)
        threshold = MIN_THRESHOLD if spec.threshold is None else spec.threshold  # 0.0 is a valid setting
        min_similarity = -1.0 if spec.min_similarity is None else spec.min_similarity
        return Calibration(HEAD_CS[1], 0.0, 1.0, threshold, min_similarity, None, None, None)
    oof_head = {c: np.zeros((len(y), n_labels), dtype=np.float32) for c in HEAD_CS}
    oof_votes = np.zeros((len(y), n_labels), dtype=np.float64)
    oof_nearest = np.zeros(len(y), dtype=np.float32)
    for held_out in folds:
        train = np.setdiff1d(np.arange(len(y)), held_out)
        head, oof_votes[held_out], oof_nearest[held_out] = _ensemble_on(
            vectors[train], y[train], vectors[held_out], n_labels, HEAD_CS
        )
        for c in HEAD_CS:
            oof_head[c][held_out] = head[c]
    c, knn_weight, temperature, oof_logits = _select_head(oof_head, oof_votes, y)
    probs = softmax(oof_logits)
    p, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == y
    threshold = spec.threshold if spec.threshold is not None else pick_threshold(p, correct, spec.target_accuracy)
    simulated = simulate_out_of_scope(vectors, y, n_labels, c, knn_weight, temperature)
    if spec.min_similarity is not None:
        min_similarity = spec.min_similarity
    elif simulated is not None:
        min_similarity = pick_min_similarity(oof_nearest, *simulated, threshold, spec.target_out_of_scope_recall)
    else:
        min_similarity = in_scope_floor(oof_nearest)
    answered = (p >= threshold) & (oof_nearest >= min_similarity)
    out_of_scope_recall = None
    if simulated is not None:
        out_of_scope_recall = float(((simulated[0] < threshold) | (simulated[1] < min_similarity)).mean())
    return Calibration(
        c=c,
        knn_weight=knn_weight,
        temperature=temperature,
        threshold=threshold,
        min_similarity=min_similarity,
        cv_accuracy=float(correct.mean()),
        cv_coverage=float(answered.mean()),
        cv_answered_accuracy=float(correct[answered].mean()) if answered.any() else None,
        cv_out_of_scope_recall=out_of_scope_recall,
    )
