"""The one place that decides which confidence threshold a verdict is answered at, and says why.

A threshold can come from:
- "fixed": the profile file's `threshold` (the operator's choice; nothing moves it);
- "fit": the cross-validated operating point for the target accuracy (`operating_point.choose`), or "fit, no text"
  for texts judged without their words (a handle stored with MCP_LATENT_STORE_TEXT off: the vector-only point);
- "default": no evidence to choose from (too few exemplars per label to cross-validate): `MIN_THRESHOLD`;
- "stream": the deployment's own verdicts (`stream.stream_threshold`) lowered it: p held on the stream;
- "spot checks": answered verdicts later taught (spot checks) agreed less often than the target, so it rose to the
  lowest threshold at which they meet it (`online_threshold`).
`FittedProfile.judge` asks `operating_threshold` on every verdict, and `detail=true` shows the answer
(`"threshold": [0.82, "stream"]`).
"""

from __future__ import annotations

import numpy as np

from mcp_latent.judge.operating_point import MIN_THRESHOLD

# Spot checks (answered verdicts whose text was taught after) needed before their agreement moves a threshold up.
MIN_SPOT_CHECKS = 30
# ...and they show the profile below its target only when their agreement is this many standard errors (of a
# profile exactly at the target, over that many checks) below it: the shipped category profile agreed on 68 of 72
# checks (94.4%) at a 95% target while it held 95.4% on 280 untaught proposals; going by the point estimate alone
# cost it 3 points of coverage for nothing.
SPOT_CHECK_MARGIN_ERRORS = 1.0
# Fewer spot checks than MIN_SPOT_CHECKS never move a threshold up, but this many that do not show the profile below
# its target (by the same margin, which is wider over fewer checks) keep the stream from raising it above the fit's:
# on the realistic proposals the shipped risk profile's 27 checks agreed 89% (target 90%) while the stream asked
# for 0.98, which cut what it answered of untaught proposals from 30% to 7.5%.
MIN_HOLD_CHECKS = 10


def operating_threshold(
    fixed: float | None, calibration, has_text: bool, online: tuple[float, str] | None = None
) -> tuple[float, str]:
    """(threshold, source) for one verdict: `fixed` (the profile file's) first, then what the live profile
    measured online (`online_threshold`; it applies to the calibration it was measured for, the one with words),
    then the fit's point for texts with or without words, else the default."""
    if fixed is not None:
        return fixed, "fixed"
    used = calibration.for_text(has_text)
    if online is not None and used is calibration:
        return online
    if used.evidence is None and used.cv_accuracy is None:
        return (used.threshold if used.threshold is not None else MIN_THRESHOLD), "default"
    return used.threshold, "fit" if used is calibration else "fit, no text"


def answered_at_threshold(verdict) -> bool:
    """Whether a verdict (`fitted.Verdict`) was an answer at the threshold, so that teaching its text is a spot check
    of the operating point: answered, and not from memory, or from memory where the ensemble alone (its p and label:
    `verdict.model`) would have answered too (memory takes paraphrases: a run of similar taught texts answered from
    memory would otherwise leave the fit's point without the checks that confirm it)."""
    if verdict.reason is not None:
        return False
    if verdict.memory is None:
        return True
    return verdict.model is not None and verdict.threshold is not None and verdict.model[0] >= verdict.threshold[0]


def online_threshold(
    fit: float,
    target: float,
    stream: float | None,
    checks_p: np.ndarray,
    checks_right: np.ndarray,
    fitted: bool = True,
    served: float | None = None,
) -> tuple[float, str] | None:
    """The threshold the deployment's evidence asks for instead of the fit's `fit` (None: keep the fit's).

    Spot checks (verdicts answered at p >= a threshold whose text was taught later: `checks_p`, `checks_right`)
    are evidence for an operating point as much as against it:
    - while those answered at `fit` agree at least as often as the target, the threshold never rises above it
      (teaching that confirms never makes a profile shyer); the stream's may lower it;
    - a threshold served before (`served`) that the spot checks show meeting the target is kept when a refit asks
      for a higher one (a recalibration on taught texts is no evidence against answers they confirmed);
    - when they agree less often than the target (by `SPOT_CHECK_MARGIN_ERRORS` standard errors: not noise), it
      rises to the lowest threshold at which the checks above it no longer do, not past it (none: the fit's
      stays, as p says nothing the checks could go by).
    With too few answered spot checks to go by (fewer than MIN_HOLD_CHECKS, or fewer than MIN_SPOT_CHECKS that show
    it below the target), the stream's threshold applies as it is (it is set only while the
    taught texts say p can be trusted: `stream.stream_sharpness`), and so it does over a default threshold
    (`fitted` False: no cross-validated point to hold on to, the stream's is the only one measured)."""
    checks_p = np.asarray(checks_p, dtype=np.float64)
    checks_right = np.asarray(checks_right, dtype=np.float64)

    def agreement(threshold: float) -> float | None:  # of the checks answered at it; None: too few to go by
        answered = checks_p >= threshold
        return float(checks_right[answered].mean()) if answered.sum() >= MIN_SPOT_CHECKS else None

    if not fitted:
        return None if stream is None else (stream, "stream")
    at_fit = agreement(fit)
    if at_fit is not None:
        error = np.sqrt(target * (1.0 - target) / np.sum(checks_p >= fit))
        if at_fit + SPOT_CHECK_MARGIN_ERRORS * error < target - 1e-12:
            return _meeting(fit, target, checks_p, checks_right)
    if at_fit is None and not _holds(fit, target, checks_p, checks_right):
        choice = (fit, "fit") if stream is None else (stream, "stream")
    else:
        choice = (stream, "stream") if stream is not None and stream < fit else (fit, "fit")
    if served is not None and served < choice[0]:
        held = agreement(served)
        if held is not None and held >= target - 1e-12:
            choice = (served, "spot checks")
    return None if choice[1] == "fit" else choice


def _holds(fit: float, target: float, checks_p: np.ndarray, checks_right: np.ndarray) -> bool:
    """Whether at least MIN_HOLD_CHECKS spot checks answered at `fit` agree within SPOT_CHECK_MARGIN_ERRORS
    standard errors of the target (not below it: confirming answers are evidence for the fit's point)."""
    answered = checks_p >= fit
    n = int(answered.sum())
    if n < MIN_HOLD_CHECKS:
        return False
    error = np.sqrt(target * (1.0 - target) / n)
    return float(checks_right[answered].mean()) + SPOT_CHECK_MARGIN_ERRORS * error >= target - 1e-12


def _meeting(fit: float, target: float, checks_p: np.ndarray, checks_right: np.ndarray) -> tuple[float, str] | None:
    """The lowest threshold above `fit` at which the spot checks answered no longer show the profile below the
    target: their agreement within `SPOT_CHECK_MARGIN_ERRORS` standard errors of it, the rule that said it was
    below (a stricter one ran to the top of a few dozen checks: shipped risk and roi answered 1-9% of untaught
    proposals at no better agreement). None: no threshold does."""
    order = np.argsort(-checks_p, kind="stable")
    p_desc, right = checks_p[order], checks_right[order]
    answered = np.arange(1, len(right) + 1)
    agreement = np.cumsum(right) / answered
    error = np.sqrt(target * (1.0 - target) / answered)
    last_of_ties = np.append(p_desc[1:] != p_desc[:-1], True)
    meets = agreement + SPOT_CHECK_MARGIN_ERRORS * error >= target - 1e-12
    meets = np.nonzero(meets & last_of_ties & (p_desc > fit))[0]
    if not len(meets):
        return None
    return float(p_desc[meets[-1]]), "spot checks"
