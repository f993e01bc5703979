"""The one decision rule: calibrated label probabilities and the similarity of the nearest exemplar -> a label, or
an abstention with its reason. The server's verdicts (`FittedProfile.verdict`), the fit's estimates of an
operating point (`calibration`) and the evaluation harness (`mcp_latent.eval`) all call `decide`, so every
published figure measures the rule the server runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUT_OF_SCOPE = "out_of_scope"  # the nearest exemplar is too far: the text is about none of the profile's labels
LOW_CONFIDENCE = "low_confidence"  # in scope, but the best label is not probable enough to answer with
# answered with the label of a taught text this close that it differs from decisively (`judge.taught_diff`)
DIFFERS_FROM_TAUGHT = "differs_from_taught"


@dataclass(frozen=True)
class Decisions:
    """The rule's outcome for a batch of n texts (row i of every array belongs to text i)."""

    best: np.ndarray  # (n,) int: index of the most probable label (reported even when abstaining)
    p: np.ndarray  # (n,) float: its probability
    nearest: np.ndarray  # (n,) float: similarity of the nearest exemplar
    reason: np.ndarray  # (n,) object: None when answered, else OUT_OF_SCOPE, LOW_CONFIDENCE or DIFFERS_FROM_TAUGHT
    # (n,) int: the exemplar row a text was answered from by memory (`judge.memory`), -1 for none; None: no memory
    recalled: np.ndarray | None = None
    # (n,) float: the scope gate's probability that each text is in scope (`judge.scope_gate`); None: no gate
    scope_p: np.ndarray | None = None
    scope_threshold: float | None = None  # the gate's threshold: a text below it is out of scope
    # per text, the clauses that differ decisively from its nearest taught exemplar (`judge.taught_diff`), [] for
    # none; None: no text had a taught exemplar that close
    differs: list[list[str]] | None = None

    @property
    def answered(self) -> np.ndarray:
        """(n,) bool: the texts that get a label."""
        return np.array([r is None for r in self.reason], dtype=bool)


def best_answer(probs: np.ndarray, abstain: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best answer label, its probability, whether an abstain label is more probable still) per row: abstain
    labels (`abstain`: (L,) bool, None for none) are never answered with; a text one of them wins is out of scope."""
    probs = np.atleast_2d(probs)
    if abstain is None or not abstain.any():
        best = probs.argmax(axis=1)
        return best, probs[np.arange(len(probs)), best], np.zeros(len(probs), dtype=bool)
    answers = np.where(abstain, -np.inf, probs)
    best = answers.argmax(axis=1)
    p = probs[np.arange(len(probs)), best]
    return best, p, probs[:, abstain].max(axis=1) > p


def answerable_p(probs: np.ndarray, abstain: np.ndarray | None = None) -> np.ndarray:
    """The best answer's probability, 0 where an abstain label wins: thresholding it as `answered_mask` does gives
    the texts `decide` answers (the fit scores operating points on it)."""
    _, p, abstained = best_answer(probs, abstain)
    return np.where(abstained, 0.0, p)


def decide(
    probs: np.ndarray,
    nearest: np.ndarray,
    threshold: float | np.ndarray,
    min_similarity: float,
    abstain: np.ndarray | None = None,
) -> Decisions:
    """Answer with the most probable label when its probability reaches `threshold` and the nearest exemplar is at
    least `min_similarity` similar; otherwise abstain, out of scope first (a confident guess about a text far from
    every exemplar is still a guess, and so is one about a text an abstain label wins). probs: (n, L) rows summing
    to 1; nearest: (n,); abstain: (L,) bool marking the profile's abstain labels, or None; threshold: one, or (L,)
    per best label (the stream's, `stream_rank`)."""
    probs = np.atleast_2d(probs)
    nearest = np.atleast_1d(np.asarray(nearest, dtype=np.float64))
    best, p, abstained = best_answer(probs, abstain)
    if np.ndim(threshold):
        threshold = np.asarray(threshold, dtype=np.float64)[best]
    answered = answered_mask(p, nearest, threshold, min_similarity) & ~abstained
    reason = np.full(len(probs), None, dtype=object)
    reason[~answered] = LOW_CONFIDENCE
    reason[(nearest < min_similarity) | abstained] = OUT_OF_SCOPE
    return Decisions(best=best, p=p, nearest=nearest, reason=reason)


def answered_mask(p: np.ndarray, nearest: np.ndarray, threshold: float, min_similarity: float) -> np.ndarray:
    """Which texts `decide` answers, from the top probabilities alone: the fit scores thousands of candidate
    operating points with it, without building the reasons."""
    return (p >= threshold) & (nearest >= min_similarity)
