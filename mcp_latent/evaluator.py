"""A fitted profile judging vectors: neighbours -> per-label probabilities -> a calibrated verdict, or an honest
"unsure". How the decision's parameters are chosen lives in `calibration`; the arithmetic in `ensemble`.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_files import replacing
from .calibration import Calibration, fit_calibration
from .decision import Decisions, decide
from .ensemble import KNN_K, ensemble_logits, exact_neighbours, fit_head, knn_votes, softmax
from .profiles import ProfileSpec
from .vector_index import VectorIndex


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
        weights, bias = fit_head(vectors, y, n_labels, calibration.c)
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
        return softmax(logits / self.calibration.temperature)

    def neighbours(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The server's neighbour search (the profile's index), row by row: (ids, similarities), each (n, <= k)."""
        found = [self.index.search(vector, k) for vector in np.atleast_2d(vectors)]
        width = min(len(ids) for ids, _ in found)  # every row searches the same index: the same count
        return np.stack([ids[:width] for ids, _ in found]), np.stack([sims[:width] for _, sims in found])

    def judge(
        self, vectors: np.ndarray, neighbours: int = 0
    ) -> tuple[Decisions, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The server's decision for a batch of vectors: (decisions, probabilities, (neighbour ids, similarities)),
        fetching at least `neighbours` exemplars per vector (for evidence). The evaluation harness measures this."""
        vectors = np.atleast_2d(vectors)
        # Neighbours feed the kNN expert (when the fit uses it), the evidence and the out-of-scope check
        # (the nearest only): fetch just as many as needed.
        wanted = max(neighbours, KNN_K if self.calibration.knn_weight else 1)
        ids, sims = self.neighbours(vectors, wanted)
        probs = self.probabilities(vectors, (ids[:, :KNN_K], sims[:, :KNN_K]))
        nearest = sims[:, 0] if sims.shape[1] else np.full(len(vectors), -1.0)
        decisions = decide(probs, nearest, self.calibration.threshold, self.calibration.min_similarity)
        return decisions, probs, (ids, sims)

    def verdict(self, vector: np.ndarray, detail: bool = False, show: int = 3) -> Verdict:
        decisions, probs, (ids, sims) = self.judge(vector.reshape(1, -1), neighbours=show if detail else 0)
        probs, reason, best = probs[0], decisions.reason[0], int(decisions.best[0])
        verdict = Verdict(
            label=None if reason else self.labels[best],
            p=float(decisions.p[0]),
            unsure=reason is not None,
            score=float(probs @ self.values) if self.values is not None else None,
            reason=reason,
            nearest=float(decisions.nearest[0]),
        )
        if detail:
            top = np.argsort(-probs)[:3]
            verdict.candidates = [(self.labels[i], float(probs[i])) for i in top]
            verdict.neighbours = [
                (self.texts[i], self.labels[self.y[i]], float(s))
                for i, s in zip(ids[0, :show], sims[0, :show], strict=True)
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
