"""Neighbours -> per-label probabilities -> a calibrated verdict, or an honest "unsure".

Fitting uses only a profile's own exemplars: a linear softmax head on the frozen embeddings combined with a
kNN vote (its strength and the head's regularization chosen by out-of-fold accuracy), a temperature fitted on
out-of-fold predictions (so `p` means "probability this label is right"), an abstention threshold chosen on
the same predictions to reach the profile's target answered accuracy, and an out-of-scope cutoff on the
similarity to the nearest exemplar, chosen on a simulation: labels hidden from the fit play the out-of-scope
texts. kNN over the exemplar HNSW index supplies the evidence.
"""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_files import replacing
from .profiles import ProfileSpec
from .vector_index import VectorIndex

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
KNN_K = 10  # neighbours voting in the ensemble
KNN_TAU = 0.05  # vote weight exp(similarity / tau): closer exemplars count much more
KNN_FLOOR = 1e-4  # vote share given to labels with no neighbour, so their log stays finite
# Candidates chosen per profile by out-of-fold accuracy (log-loss breaks ties): the head's inverse
# regularization, and the kNN expert's weight (large clean profiles gain from neighbours, small noisy ones less).
HEAD_CS = (3.0, 10.0, 30.0)
KNN_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)
ABSENT_LABEL_BIAS = -1e4  # a label with no training rows (hidden in the simulation) can never win


@dataclass
class Verdict:
    """One profile's answer for one vector."""

    label: str | None
    p: float
    unsure: bool
    score: float | None = None
    reason: str | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)
    neighbours: list[tuple[str, str, float]] = field(default_factory=list)
    nearest: float = 0.0

    def compact(self) -> dict[str, Any]:
        """The model-visible default: label, p, and `unsure` when abstaining (three verdicts fit ~55 tokens)."""
        out: dict[str, Any] = {"label": self.label, "p": round(self.p, 2)}
        if self.unsure:
            out["unsure"] = True
        return out

    def detailed(self) -> dict[str, Any]:
        """The compact form plus the expected score (ordinal profiles) and an evidence pack for the calling LLM."""
        out = self.compact()
        if self.score is not None:
            out["score"] = round(self.score, 2)
        if self.reason:
            out["reason"] = self.reason
        out["top"] = [[label, round(p, 3)] for label, p in self.candidates]
        out["nearest"] = round(self.nearest, 3)
        out["neighbours"] = [[text, label, round(sim, 3)] for text, label, sim in self.neighbours]
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _fit_head(x: np.ndarray, y: np.ndarray, n_labels: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; returns (weights d x L, bias L)."""
    from sklearn.linear_model import LogisticRegression  # imported lazily: only fitting needs it

    clf = LogisticRegression(C=c, max_iter=1000)
    clf.fit(x, y)
    weights = np.zeros((x.shape[1], n_labels), dtype=np.float32)
    bias = np.full(n_labels, ABSENT_LABEL_BIAS, dtype=np.float32)
    binary = len(clf.classes_) == 2  # sklearn then fits one weight vector: split it symmetrically over the two
    weights[:, clf.classes_] = np.hstack([-clf.coef_.T, clf.coef_.T]) / 2 if binary else clf.coef_.T
    bias[clf.classes_] = np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2 if binary else clf.intercept_
    return weights, bias


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimizing the negative log-likelihood of held-out logits."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: _nll(logits / np.exp(log_t), y), bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(result.x))


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


def knn_votes(similarities: np.ndarray, neighbour_labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Similarity-weighted label shares of each row's neighbours: (n, k) similarities/labels -> (n, L)."""
    weights = np.exp((similarities - similarities[:, :1]) / KNN_TAU)  # shifted by the best: no overflow
    votes = np.zeros((len(similarities), n_labels), dtype=np.float64)
    np.add.at(
        votes,
        (np.repeat(np.arange(len(similarities)), similarities.shape[1]), neighbour_labels.ravel()),
        weights.ravel(),
    )
    return votes / votes.sum(axis=1, keepdims=True)


def ensemble_logits(head_logits: np.ndarray, votes: np.ndarray, knn_weight: float) -> np.ndarray:
    """Product of experts: the linear head's log-probabilities plus the weighted kNN vote log-shares."""
    return _log_softmax(head_logits) + knn_weight * np.log(votes + KNN_FLOOR)


def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    return float(-_log_softmax(logits)[np.arange(len(y)), y].mean())


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
        weights, bias = _fit_head(train_x, train_y, n_labels, c)
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
            temperature = _fit_temperature(logits, y)
            score = (float((logits.argmax(axis=1) == y).mean()), -_nll(logits / temperature, y))
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
        p[hidden] = _softmax(ensemble_logits(head[c], votes, knn_weight) / temperature).max(axis=1)
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
    probs = _softmax(oof_logits)
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


class FittedProfile:
    """A profile ready to judge vectors: exemplar index, linear head and calibration."""

    def __init__(
        self,
        spec: ProfileSpec,
        vectors: np.ndarray,
        y: np.ndarray,
        texts: list[str],
        weights: np.ndarray,
        bias: np.ndarray,
        calibration: Calibration,
        index: VectorIndex,
    ):
        self.spec = spec
        self.labels = [label.name for label in spec.labels]
        self.values = np.array([label.value for label in spec.labels], dtype=np.float32) if spec.ordinal else None
        self.vectors = vectors
        self.y = y
        self.texts = texts
        self.weights = weights
        self.bias = bias
        self.calibration = calibration
        self.index = index
        # True for a quick refit that reused an earlier calibration (after `teach`): good to answer with, to be
        # replaced by a full cross-validated fit.
        self.provisional = False

    @classmethod
    def fit(
        cls,
        spec: ProfileSpec,
        vectors: np.ndarray,
        texts: list[str],
        y: np.ndarray,
        reuse_calibration: Calibration | None = None,
    ) -> FittedProfile:
        """Cross-validate and fit; with `reuse_calibration`, fit only the head and index (seconds, not minutes
        for a large profile) and mark the result provisional."""
        n_labels = len(spec.labels)
        calibration = reuse_calibration or fit_calibration(vectors, y, n_labels, spec)
        weights, bias = _fit_head(vectors, y, n_labels, calibration.c)
        fitted = cls(spec, vectors, y, texts, weights, bias, calibration, cls._build_index(vectors))
        fitted.provisional = reuse_calibration is not None
        return fitted

    @staticmethod
    def _build_index(vectors: np.ndarray) -> VectorIndex:
        index = VectorIndex(vectors.shape[1], capacity=len(vectors))
        index.add(np.arange(len(vectors)), vectors)
        return index

    def probabilities(self, vectors: np.ndarray, neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Calibrated per-label probabilities for a batch of vectors (neighbours: exact search when not given)."""
        logits = vectors @ self.weights + self.bias
        if self.calibration.knn_weight:
            ids, sims = neighbours if neighbours is not None else exact_neighbours(vectors, self.vectors, KNN_K)
            votes = knn_votes(sims, self.y[ids], len(self.labels))
            logits = ensemble_logits(logits, votes, self.calibration.knn_weight)
        return _softmax(logits / self.calibration.temperature)

    def verdict(self, vector: np.ndarray, detail: bool = False, k: int = KNN_K, show: int = 3) -> Verdict:
        # Neighbours feed the kNN expert (when the fit uses it), the evidence (detail) and the out-of-scope
        # check (nearest only): fetch just as many as needed.
        wanted = max(k, KNN_K) if detail else (KNN_K if self.calibration.knn_weight else 1)
        neighbour_ids, similarities = self.index.search(vector, wanted)
        probs = self.probabilities(vector.reshape(1, -1), (neighbour_ids[None, :KNN_K], similarities[None, :KNN_K]))[0]
        best = int(probs.argmax())
        p = float(probs[best])
        nearest = float(similarities[0]) if len(similarities) else -1.0
        reason = None
        if nearest < self.calibration.min_similarity:
            reason = "out_of_scope"
        elif p < self.calibration.threshold:
            reason = "low_confidence"
        score = float(probs @ self.values) if self.values is not None else None
        verdict = Verdict(
            label=None if reason else self.labels[best],
            p=p,
            unsure=reason is not None,
            score=score,
            reason=reason,
            nearest=nearest,
        )
        if detail:
            top = np.argsort(-probs)[:3]
            verdict.candidates = [(self.labels[i], float(probs[i])) for i in top]
            verdict.neighbours = [
                (self.texts[i], self.labels[self.y[i]], float(s))
                for i, s in zip(neighbour_ids[:show], similarities[:show], strict=True)
            ]
        return verdict

    # --- on-disk cache ---------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        cal = self.calibration  # stored in field order; None (no evidence) as NaN
        with replacing(path) as tmp, tmp.open("wb") as out:
            np.savez(
                out,
                vectors=self.vectors,
                y=self.y,
                weights=self.weights,
                bias=self.bias,
                calibration=np.array([np.nan if v is None else v for v in astuple(cal)], dtype=np.float64),
            )

    @classmethod
    def load(cls, path: Path, spec: ProfileSpec, texts: list[str]) -> FittedProfile:
        with np.load(path) as data:
            calibration = Calibration(*(None if np.isnan(v) else float(v) for v in data["calibration"]))
            vectors = data["vectors"]
            return cls(
                spec, vectors, data["y"], texts, data["weights"], data["bias"], calibration, cls._build_index(vectors)
            )
