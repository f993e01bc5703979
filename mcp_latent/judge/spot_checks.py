"""What a profile's spot checks say about its operating point: below the target or not, and if below, the threshold
at which they meet it. `threshold.online_threshold` asks this at every background refit; `latent://stats` shows it.

A spot check is an answered verdict (at p >= the threshold) whose text was taught afterwards: the teach says whether
the answer was right. The checks are read against the fit's cross-validated promise as a prior: the fit chose its
point so that answers there agree at least as often as the target (`cv_answered_accuracy`, on its exemplars), and
that promise counts as PRIOR_CHECKS checks, so a handful of taught texts moves the estimate a little and many move
it all the way. Two readings of the posterior (a Beta, the prior's pseudo-counts plus the checks' right and wrong):
- below the target: the posterior probability that agreement at the fit's point is under the target is at least
  SPOT_CHECK_CONFIDENCE, over at least MIN_HOLD_CHECKS checks (a one-sided bound fitted to the number of checks,
  where before a fixed count of 30 gated it: roi on the held-out proposals, 20 checks at 74%, never moved);
- the point that meets it: the lowest threshold above the fit's whose checks' posterior mean (the estimate, the
  prior included) meets the target: not past it (a lower confidence bound there ran to the top of a few dozen
  checks: the shipped risk and roi then answered 1-9% of untaught proposals at no better agreement).
A profile whose checks do not show it below its target keeps its point: confirming teaches never cost coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Spot checks needed before they say anything about the operating point (fewer: the fit's point or the stream's).
MIN_HOLD_CHECKS = 10
# The fit's cross-validated promise counts as this many spot checks: 10 checks weigh as much as the fit, 40 four
# times more. Chosen on the arithmetic, not on a measured set: 20 checks at 75% against a 90% target read 80%.
PRIOR_CHECKS = 10.0
# How sure the checks must be that agreement is under the target before the point moves: 0.84, the share below
# one standard error of a normal (the margin the rule used before, over a fixed 30 checks); a profile exactly at
# its target moves on about one draw in six, and then only as far as its checks' estimate needs.
SPOT_CHECK_CONFIDENCE = 0.84


@dataclass(frozen=True)
class SpotReading:
    """The spot checks at one threshold read against the fit's promise (see the module docstring)."""

    threshold: float
    checked: int  # spot checks answered at p >= threshold
    agreement: float | None  # of those, the share the teach confirmed (None: none)
    estimate: float  # posterior mean of agreement there (the fit's promise as PRIOR_CHECKS checks)
    below: float  # posterior probability that agreement there is under the target

    def shows_below(self) -> bool:
        return self.checked >= MIN_HOLD_CHECKS and self.below >= SPOT_CHECK_CONFIDENCE


def prior_agreement(cv_answered_accuracy: float | None, target: float) -> float:
    """The agreement the fit promises at its point: its cross-validated answered accuracy, else the target (a fit
    with no evidence promises only what it was asked for); kept off 0 and 1, where a Beta prior is degenerate."""
    promise = target if cv_answered_accuracy is None else float(cv_answered_accuracy)
    return float(np.clip(promise, 0.5, 0.995))


def read(threshold: float, target: float, checks_p, checks_right, prior: float) -> SpotReading:
    """The spot checks answered at `threshold` read against `prior` (`prior_agreement`)."""
    # scipy (~0.4 s to import) only where checks are read: a start whose fits all come from the cache imports none
    # of the fitting libraries (tests/test_service.py)
    from scipy.special import betainc

    checks_p = np.asarray(checks_p, dtype=np.float64)
    checks_right = np.asarray(checks_right, dtype=np.float64)
    answered = checks_p >= threshold
    n, k = int(answered.sum()), float(checks_right[answered].sum())
    a, b = PRIOR_CHECKS * prior + k, PRIOR_CHECKS * (1.0 - prior) + n - k
    return SpotReading(
        threshold=float(threshold),
        checked=n,
        agreement=k / n if n else None,
        estimate=a / (a + b),
        below=float(betainc(a, b, target)),  # the Beta's CDF at the target
    )


def meeting_point(fit: float, target: float, checks_p, checks_right, prior: float) -> float | None:
    """The lowest threshold above `fit` (a check's p: thresholds between two checks answer the same checks) at
    which the checks' posterior mean of agreement meets the target; None: none does."""
    checks_p = np.asarray(checks_p, dtype=np.float64)
    checks_right = np.asarray(checks_right, dtype=np.float64)
    order = np.argsort(-checks_p, kind="stable")
    p_desc, right = checks_p[order], checks_right[order]
    answered = np.arange(1, len(right) + 1)
    estimate = (PRIOR_CHECKS * prior + np.cumsum(right)) / (PRIOR_CHECKS + answered)
    last_of_ties = np.append(p_desc[1:] != p_desc[:-1], True)
    meets = np.nonzero((estimate >= target - 1e-12) & last_of_ties & (p_desc > fit))[0]
    return float(p_desc[meets[-1]]) if len(meets) else None


def describe(reading: SpotReading, target: float, moved_to: float | None) -> str:
    """One line for `latent://stats`: what the checks at the fit's point said and what the rule did."""
    if reading.checked < MIN_HOLD_CHECKS:
        return (
            f"{reading.checked} spot checks at the fit's {reading.threshold:.3f}: fewer than {MIN_HOLD_CHECKS}, too few"
        )
    said = (
        f"{reading.checked} spot checks at the fit's {reading.threshold:.3f} agree {100 * reading.agreement:.1f}% "
        f"(estimate with the fit's promise {100 * reading.estimate:.1f}%, P(below {100 * target:g}%) "
        f"{reading.below:.2f})"
    )
    if not reading.shows_below() and moved_to is not None:  # `online_threshold` kept a threshold served before
        return f"{said}: not shown below the target; {moved_to:.3f}, served before and meeting it there, is kept"
    if not reading.shows_below():
        return f"{said}: not shown below the target, the fit's point holds"
    if moved_to is None:
        return f"{said}: below the target, but no higher threshold meets it; the fit's point stays"
    return f"{said}: below the target, moved to {moved_to:.3f}, the lowest threshold whose checks meet it"
