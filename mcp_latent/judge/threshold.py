"""The one place that decides which confidence threshold a verdict is answered at, and says why.

A threshold can come from:
- "fixed": the profile file's `threshold` (the operator's choice; nothing moves it);
- "fit": the cross-validated operating point for the target accuracy (`operating_point.choose`), or "fit, no text"
  for texts judged without their words (a handle stored with MCP_LATENT_STORE_TEXT off: the vector-only point);
- "default": no evidence to choose from (too few exemplars per label to cross-validate): `MIN_THRESHOLD`;
- "stream": the deployment's own verdicts (`stream.stream_threshold`) lowered it: p held on the stream;
- "spot checks": answered verdicts later taught (spot checks) showed the profile below its target, so it rose to
  the lowest threshold at which they meet it (`online_threshold`, read by `spot_checks`).
`FittedProfile.judge` asks `operating_threshold` on every verdict, and `detail=true` shows the answer
(`"threshold": [0.82, "stream"]`).
"""

from __future__ import annotations

import numpy as np

from mcp_latent.judge import spot_checks
from mcp_latent.judge.operating_point import MIN_THRESHOLD
from mcp_latent.judge.spot_checks import MIN_HOLD_CHECKS

# A threshold served before is kept over a higher one a refit asks for once this many spot checks answered at it
# agree at least as often as the target. (Whether spot checks show a profile below its target, and where they meet
# it, is `spot_checks`: a bound fitted to their number, from MIN_HOLD_CHECKS of them.)
MIN_SPOT_CHECKS = 30


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
    prior: float | None = None,
) -> tuple[float, str] | None:
    """The threshold the deployment's evidence asks for instead of the fit's `fit` (None: keep the fit's).

    Spot checks (verdicts answered at p >= a threshold whose text was taught later: `checks_p`, `checks_right`)
    are evidence for an operating point as much as against it, read against the fit's promise (`prior`: the
    agreement it cross-validated at its point, `spot_checks.prior_agreement`; None: the target) by `spot_checks`:
    - while those answered at `fit` do not show the profile below the target (at least MIN_HOLD_CHECKS of them),
      the threshold never rises above it (teaching that confirms never makes a profile shyer); the stream's may
      lower it;
    - a threshold served before (`served`) that the spot checks show meeting the target is kept when a refit asks
      for a higher one (a recalibration on taught texts is no evidence against answers they confirmed);
    - when they show it below the target (`SpotReading.shows_below`: a one-sided bound fitted to their number), it
      rises to the lowest threshold at which their estimate meets the target, not past it (none: the stream's
      when it asks for more, else the fit's stays, as p says nothing the checks could go by).
    With fewer than MIN_HOLD_CHECKS answered spot checks the stream's threshold applies as it is (it is set only
    while the taught texts say p can be trusted: `stream.stream_sharpness`), and so it does over a default
    threshold (`fitted` False: no cross-validated point to hold on to, the stream's is the only one measured)."""
    checks_p = np.asarray(checks_p, dtype=np.float64)
    checks_right = np.asarray(checks_right, dtype=np.float64)

    def agreement(threshold: float) -> float | None:  # of the checks answered at it; None: too few to go by
        answered = checks_p >= threshold
        return float(checks_right[answered].mean()) if answered.sum() >= MIN_SPOT_CHECKS else None

    if not fitted:
        return None if stream is None else (stream, "stream")
    promise = spot_checks.prior_agreement(prior, target)
    at_fit = spot_checks.read(fit, target, checks_p, checks_right, promise)
    if at_fit.shows_below():
        meets = spot_checks.meeting_point(fit, target, checks_p, checks_right, promise)
        if meets is not None:
            return meets, "spot checks"
        return (stream, "stream") if stream is not None and stream > fit else None
    if at_fit.checked < MIN_HOLD_CHECKS:  # too few to say anything: the stream's as it is
        choice = (fit, "fit") if stream is None else (stream, "stream")
    else:
        choice = (stream, "stream") if stream is not None and stream < fit else (fit, "fit")
    if served is not None and served < choice[0]:
        held = agreement(served)
        if held is not None and held >= target - 1e-12:
            choice = (served, "spot checks")
    return None if choice[1] == "fit" else choice
