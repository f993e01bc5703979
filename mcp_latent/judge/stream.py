"""The online side of the operating point: a threshold and a sharpness learned from a deployment's own stream
of verdicts whose right label later became known (by `teach`). The offline choice is in `operating_point.py`."""

from __future__ import annotations

import numpy as np

from mcp_latent.judge.operating_point import MIN_THRESHOLD
from mcp_latent.judge.stream_rule import (
    MAX_SHARPNESS,
    MIN_SHARPNESS,
    MIN_STREAM_CHECKS,
    MIN_STREAM_VERDICTS,
    STREAM_MARGIN_ERRORS,
    STREAM_SHARPNESS_CHECKS,
)

SHARPNESS_LIKELIHOOD_DROP = STREAM_MARGIN_ERRORS**2 / 2  # log-likelihood drop at one standard error (the margin's)


def stream_threshold(
    p: np.ndarray,
    target_accuracy: float,
    right: np.ndarray | None = None,
    sharpness: float = 1.0,
    margin: float = STREAM_MARGIN_ERRORS,
) -> float | None:
    """The lowest threshold at which the texts a profile has been judging would be answered with an expected
    accuracy `STREAM_MARGIN_ERRORS` standard errors above the target, so the measured rate holds it, not just the
    expectation. p: the top probability of each recent verdict (prequential: given before any of them was taught);
    right: per verdict 1/0 when the text was taught since (whether the verdict's best label was the one taught),
    NaN when not. A verdict counts as what its teach showed, else as right with probability p made as sure as the
    labelled verdicts say it is (`sharpness`: `stream_sharpness`). None with too few verdicts, or when no threshold
    reaches the target.

    Why: the cross-validated choice sees only exemplars, and a taught profile's exemplars are the hard texts it
    escalated; it asked for thresholds the stream did not need (HWU64: 0.92-0.97 where the stream's verdicts,
    calibrated within a point in every band, met 97% from about 0.90). Why `right`: the verdicts just below the
    threshold are the ones escalated and taught, so how often their best label was right is known, not estimated:
    lowering the threshold over them is judged on what they were (HWU64: p said 96.5% at p >= 0.85 where the
    taught texts showed 97.8%)."""
    if len(p) < MIN_STREAM_VERDICTS:
        return None
    p = np.asarray(p, dtype=np.float64)
    expected = p if sharpness == 1.0 else sharpened(p, sharpness)
    value = expected if right is None else np.where(np.isnan(right), expected, right)
    order = np.argsort(-p, kind="stable")
    p_desc = p[order]
    answered = np.arange(1, len(p_desc) + 1)
    mean = np.cumsum(value[order]) / answered
    error = np.sqrt(np.clip(mean * (1.0 - mean), 0.0, None) / answered)
    last_of_ties = np.append(p_desc[1:] != p_desc[:-1], True)  # a threshold answers every text at p >= it
    meets = np.nonzero((mean - margin * error >= target_accuracy - 1e-12) & last_of_ties)[0]
    if not len(meets):
        return None
    return max(MIN_THRESHOLD, float(p_desc[meets[-1]]))


_GRID_STEPS = int(round((MAX_SHARPNESS - MIN_SHARPNESS / 2) * 100))
SHARPNESS_GRID = np.linspace(MIN_SHARPNESS / 2, MAX_SHARPNESS, _GRID_STEPS + 1)  # p's log-odds scales, steps of 0.01


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


def sharpened(p: np.ndarray, sharpness: float) -> np.ndarray:
    """p with its log-odds scaled by `sharpness` (1.0: unchanged; below 1: less sure; above 1: surer)."""
    return 1.0 / (1.0 + np.exp(-sharpness * _log_odds(p)))


def sharpness_log_likelihood(p: np.ndarray, right: np.ndarray, grid: np.ndarray = SHARPNESS_GRID) -> np.ndarray:
    """(len(grid),) the log-likelihood of labelled verdicts (top probability p; whether the best label was right,
    1.0 or 0.0) under each scale of p's log-odds in `grid`."""
    z = _log_odds(p)[None, :] * grid[:, None]
    return (right[None, :] * z - np.logaddexp(0.0, z)).sum(axis=1)


def stream_sharpness(
    p: np.ndarray,
    right: np.ndarray,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
    weight: float = 0.0,
    cut: float = 0.9,
) -> float | None:
    """The scale of p's log-odds (between `MIN_SHARPNESS` / 2 and `MAX_SHARPNESS`) under which labelled verdicts
    (texts taught after a verdict, oldest first: its top probability p, and whether its best label was the one
    taught) are most likely: 1.0 while p is as sure as it should be, below 1 when p was right less often than it
    said, above 1 when more often. Fitted on the last `STREAM_SHARPNESS_CHECKS` of them at p >= `MIN_THRESHOLD`
    (the current scorer's p, where a threshold can be). None with fewer than `MIN_STREAM_CHECKS` of those.

    Why log-odds: p was overconfident on HWU64's stream by about the same factor in log-odds across its range
    (0.72 meant about 0.68; 0.99 about 0.97), where a ratio of error rates measured on the escalated band (1.0-1.5)
    said nothing about the answered top (2-4 times the errors p expected). The yes/no check this replaced (p
    within two standard errors of the labelled verdicts' hit rate) flipped on noise and switched the stream
    threshold off and on (off from item 1,000 to 2,250 of the HWU64 stream: the fit's own threshold escalated
    52-56% per window, 37-44% after).

    `prior` (the calibration's exemplar evidence, `exemplar_evidence`), counted as `weight` labelled verdicts at
    out-of-fold p >= `cut` (`exemplar_prior`): measured by tools/stream_prior_replay.py and not served (weight 0,
    the default): on the traced runs it made the rule more cautious on both sets (docs/learning.md, `stream6`)."""
    p, right = np.asarray(p, dtype=np.float64), np.asarray(right, dtype=np.float64)
    where = p >= MIN_THRESHOLD
    p, right = p[where][-STREAM_SHARPNESS_CHECKS:], right[where][-STREAM_SHARPNESS_CHECKS:]
    if len(p) < MIN_STREAM_CHECKS:
        return None
    log_likelihood = sharpness_log_likelihood(p, right)
    if prior is not None and weight > 0:
        log_likelihood = log_likelihood + exemplar_prior(prior[0], prior[1], weight, cut)
    best = int(np.argmax(log_likelihood))
    if SHARPNESS_GRID[best] <= 1.0:
        return float(SHARPNESS_GRID[best])
    # Surer than p only as far as the labelled verdicts show beyond one standard error (the low end of the
    # likelihood interval, a drop of 1/2 in log-likelihood): they are the escalated ones, below the threshold, and
    # how sure the answered top should be is extrapolated from them.
    lowest = int(np.nonzero(log_likelihood >= log_likelihood[best] - SHARPNESS_LIKELIHOOD_DROP)[0][0])
    return max(1.0, float(SHARPNESS_GRID[lowest]))


def exemplar_evidence(calibration) -> tuple[np.ndarray, np.ndarray] | None:
    """(p, right) of the calibration's exemplars under its own cross-validation (`Calibration.evidence`: each
    exemplar's top probability from a fit that did not see it, and whether that label was its own), for the family
    that judges; None without evidence."""
    evidence = getattr(calibration, "evidence", None)
    if evidence is None:
        return None
    family = next((f for f in evidence.families if f.name == calibration.family), None)
    if family is None:
        return None
    return np.asarray(family.p, dtype=np.float64), np.asarray(family.correct, dtype=np.float64)


def exemplar_prior(p: np.ndarray, right: np.ndarray, weight: float, cut: float = 0.9) -> np.ndarray:
    """(len(SHARPNESS_GRID),) the prior's log-likelihood over the sharpness grid: that of the exemplars whose
    out-of-fold p is at or above `cut` (the calibration's own evidence of the top, `exemplar_evidence`), scaled to
    count as `weight` labelled verdicts whatever their number; zeros with fewer than `MIN_STREAM_CHECKS` of them."""
    p, right = np.asarray(p, dtype=np.float64), np.asarray(right, dtype=np.float64)
    top = p >= cut
    if top.sum() < MIN_STREAM_CHECKS:
        return np.zeros(len(SHARPNESS_GRID))
    return weight / float(top.sum()) * sharpness_log_likelihood(p[top], right[top])
