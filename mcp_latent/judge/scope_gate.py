"""The scope gate: one binary decision, "is this text like the profile's in-scope exemplars at all?", fitted on
the profile's own exemplars (every answer label against its abstain labels) and applied before the label is
chosen. A text the gate calls out of scope is answered unsure with reason `out_of_scope`, whatever the labels say.

Why a separate decision: in the multi-label softmax an abstain label must beat the best answer label, and a
text about a topic the profile knows wins that topic even when it proposes nothing ("the deploy to eu-west
finished, all pods healthy" reads as engineering to the category profile). The binary gate asks only "proposal
or not": measured on realistic texts that propose nothing (docs/verdicts.md), category abstained on 73% of them
through its off_topic label alone.

A profile opts in with `scope_gate` in its file: the share of in-scope exemplars, held out in cross-validation
(a source held out whole when exemplars name one), the gate must let through; its threshold is chosen on those
held-out predictions, so the gate costs about that much coverage and no more. The gate is an ensemble like the
profile's own (`ensemble`): a binary linear head on the embeddings, the kNN vote of the profile's exemplars
(taught ones count from the next call) and a binary words expert, with fixed weights (measured, not chosen per
profile: see docs/verdicts.md). Immutable; fitted with the profile and stored in its fit file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mcp_latent.judge.decision import OUT_OF_SCOPE, Decisions
from mcp_latent.judge.ensemble import (
    KNN_K,
    ensemble_logits,
    exact_neighbours,
    fit_head,
    fit_temperature,
    knn_votes,
    softmax,
)
from mcp_latent.judge.grouping import grouped_folds
from mcp_latent.judge.words import Reading, WordsModel, featurize

GATE_C = 10.0  # the binary head's inverse regularisation
GATE_KNN_WEIGHT = 0.3  # the kNN vote's weight in the gate's product of experts
GATE_WORDS_WEIGHT = 0.3  # the words expert's ("thanks", "released", "?" mark texts that propose nothing)
GATE_FOLDS = 5
IN_SCOPE = 1  # the gate's labels: 0 out of scope (an abstain label's exemplar), 1 in scope


@dataclass(frozen=True)
class ScopeGate:
    """A fitted gate: binary head, words expert (None without texts), temperatures and thresholds with and
    without the words (a handle stored without its text is judged from the vector alone)."""

    weights: np.ndarray  # (d, 2) float32
    bias: np.ndarray  # (2,) float32
    words: WordsModel | None
    temperature: float
    threshold: float
    temperature_no_text: float
    threshold_no_text: float
    recall: float  # the in-scope recall target the thresholds were chosen for
    cv_out_of_scope_recall: float  # held-out abstain exemplars the gate stopped, at the threshold with words

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        in_scope: np.ndarray,
        recall: float,
        texts: list[str] | None = None,
        groups: list[str] | None = None,
    ) -> ScopeGate | None:
        """Fit on the exemplars (`in_scope`: (n,) bool, False for an abstain label's); None when either side has
        too few exemplars to hold any out. groups: each exemplar's source ("" for none), held out whole."""
        b = np.asarray(in_scope, dtype=np.int64)
        if min(int(b.sum()), int(len(b) - b.sum())) < 2:
            return None
        grouped = grouped_folds(b, groups if groups is not None else [""] * len(b), GATE_FOLDS)
        if grouped is None:
            return None
        folds, _ = grouped
        has_words = texts is not None and len(texts) == len(b)
        counts = featurize(texts) if has_words else None
        head = np.zeros((len(b), 2))
        votes = np.zeros((len(b), 2))
        words = np.zeros((len(b), 2)) if has_words else None
        for held in folds:
            train = np.setdiff1d(np.arange(len(b)), held)
            w, bias = fit_head(vectors[train], b[train], 2, GATE_C)
            head[held] = vectors[held] @ w + bias
            ids, sims = exact_neighbours(vectors[held], vectors[train], KNN_K)
            votes[held] = knn_votes(sims, b[train][ids], 2)
            if words is not None:
                words[held] = WordsModel.fit(counts.subset(train), b[train], 2).log_probs(counts.subset(held))
        points = []
        for expert in (words, None):
            logits = ensemble_logits(
                head, votes, GATE_KNN_WEIGHT, expert, GATE_WORDS_WEIGHT if expert is not None else 0
            )
            temperature = fit_temperature(logits, b)
            p = softmax(logits / temperature)[:, IN_SCOPE]
            points.append((temperature, _threshold(p[b == 1], recall), p))
        (temperature, threshold, p), (temperature_no_text, threshold_no_text, _) = points
        weights, bias = fit_head(vectors, b, 2, GATE_C)
        return cls(
            weights=weights,
            bias=bias,
            words=WordsModel.fit(counts, b, 2) if has_words else None,
            temperature=temperature,
            threshold=threshold,
            temperature_no_text=temperature_no_text,
            threshold_no_text=threshold_no_text,
            recall=recall,
            cv_out_of_scope_recall=float((p[b == 0] < threshold).mean()),
        )

    def p_in_scope(
        self,
        vectors: np.ndarray,
        neighbour_sims: np.ndarray,
        neighbour_in_scope: np.ndarray,
        texts: list[str] | Reading | None = None,
    ) -> tuple[np.ndarray, float]:
        """(probability each text is in scope, the threshold it is held to): neighbour_sims/neighbour_in_scope
        are (n, k) similarities of the profile's nearest exemplars and whether each is an answer label's; texts:
        theirs, or the profile's `Reading` of them (used as it is when the gate's words share its idf)."""
        head = vectors @ self.weights + self.bias
        votes = knn_votes(neighbour_sims, neighbour_in_scope.astype(np.int64), 2)
        if texts is not None and self.words is not None:
            logits = ensemble_logits(head, votes, GATE_KNN_WEIGHT, self.words.log_probs(texts), GATE_WORDS_WEIGHT)
            return softmax(logits / self.temperature)[:, IN_SCOPE], self.threshold
        logits = ensemble_logits(head, votes, GATE_KNN_WEIGHT)
        return softmax(logits / self.temperature_no_text)[:, IN_SCOPE], self.threshold_no_text

    def sharing_idf(self, words: WordsModel | None) -> ScopeGate:
        """This gate with its words expert sharing the profile's idf array (`WordsModel.sharing_idf`: both are fitted
        on the profile's exemplars, so one `Reading` of a text serves both); itself when they share it or differ."""
        if self.words is None or words is None:
            return self
        shared = self.words.sharing_idf(words)
        return self if shared is self.words else replace(self, words=shared)

    # --- storage: flat arrays inside the profile's fit file, prefixed "gate_" --------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        scalars = [
            self.temperature,
            self.threshold,
            self.temperature_no_text,
            self.threshold_no_text,
            self.recall,
            self.cv_out_of_scope_recall,
        ]
        out = {"gate_weights": self.weights, "gate_bias": self.bias, "gate_scalars": np.array(scalars)}
        if self.words is not None:
            out.update({f"gate_{key}": value for key, value in self.words.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, data) -> ScopeGate | None:
        if "gate_weights" not in data:
            return None
        words = WordsModel.from_arrays({k[len("gate_") :]: data[k] for k in data if k.startswith("gate_words_")})
        t, threshold, t_no_text, threshold_no_text, recall, oos = (float(v) for v in data["gate_scalars"])
        return cls(
            data["gate_weights"], data["gate_bias"], words, t, threshold, t_no_text, threshold_no_text, recall, oos
        )


def gated(
    gate: ScopeGate,
    decisions: Decisions,
    vectors: np.ndarray,
    neighbours: tuple[np.ndarray, np.ndarray],
    exemplar_in_scope: np.ndarray,
    texts: list[str] | Reading | None,
) -> Decisions:
    """The decisions with every text the gate stops out of scope (`FittedProfile.judge` calls it before memory,
    so a taught copy is still answered as taught). neighbours: (ids, similarities) of the profile's exemplars,
    best first; exemplar_in_scope: (rows,) bool, whether each exemplar belongs to an answer label."""
    ids, sims = neighbours
    p, threshold = gate.p_in_scope(vectors, sims[:, :KNN_K], exemplar_in_scope[ids[:, :KNN_K]], texts)
    reason = decisions.reason.copy()
    reason[p < threshold] = OUT_OF_SCOPE
    return replace(decisions, reason=reason, scope_p=p, scope_threshold=threshold)


def _threshold(p_in_scope: np.ndarray, recall: float) -> float:
    """The highest threshold that lets through at least `recall` of these held-out in-scope exemplars."""
    ordered = np.sort(p_in_scope)
    return float(ordered[int(np.floor((1.0 - recall) * len(ordered)))])
