"""Pacing of one profile's background refits: how much CPU they may take, when a recalibration is due, and when
it may run."""

from __future__ import annotations

from mcp_latent.judge.support import is_unsupported

REFIT_DEBOUNCE_SECONDS = 0.2  # teaches arriving in a burst share one refit
# A full cross-validated recalibration runs when the exemplars grew by this share since the last one; smaller
# growth refits only the head (warm-started, keeping the calibration), which costs a fraction of it.
RECALIBRATE_GROWTH = 0.25


class RefitPacer:
    """When a profile's next background refit may start, and whether it may recalibrate: refits take at most
    `cpu_share` of one core over time, and a recalibration's rest never holds the head back.

    On a busy machine a recalibration (cross-validation) took ~35 s for 1,800 exemplars, then rested three times
    as long; every teach meanwhile only nudged the head, and a stream answered from nudged heads escalated more at a
    worse accuracy (HWU64 replay: 5 refits in the stream, 49% escalated in the last third at 95.6% answered at
    p >= 0.9, against 41% at 96.6% with refits keeping up). Now the cost of every refit is owed as rest
    (`rested_at`), a recalibration waits until all of it is paid, and a warm-started head refit (a fraction of
    a second) only rests in proportion to its own cost, adding that to what a recalibration waits for. Used by
    the refit thread alone (no lock)."""

    def __init__(self, cpu_share: float):
        self.rest = 1.0 / cpu_share - 1.0  # seconds of rest owed per second of refitting
        self.rested_at = 0.0  # monotonic time at which every refit so far has been rested for
        self.head_ready_at = 0.0  # the earliest next head refit: the last head refit rested for

    def may_recalibrate(self, now: float) -> bool:
        return now >= self.rested_at

    def wait(self, now: float, teaches_pending: bool, recalibration_due: bool) -> float | None:
        """Seconds until the next refit should start; None when there is nothing to refit."""
        if recalibration_due and self.may_recalibrate(now):
            return 0.0
        if teaches_pending:
            return max(0.0, self.head_ready_at - now)
        if recalibration_due:
            return self.rested_at - now
        return None

    def done(self, started: float, ended: float, recalibrated: bool) -> None:
        """A refit ran from `started` to `ended`: its cost is owed as rest (a recalibration's by the next one)."""
        owed = (ended - started) * self.rest
        self.rested_at = max(self.rested_at, ended) + owed
        self.head_ready_at = ended + max(REFIT_DEBOUNCE_SECONDS, 0.0 if recalibrated else owed)


class CalibrationAge:
    """How many exemplars the current calibration was cross-validated on, and whether the next is due. Written by
    the thread that installs a fit (the first fit's, or the refit thread), read by the refit thread."""

    def __init__(self):
        self.n = 0  # exemplars the current calibration was cross-validated on
        self.c = 1.0  # and the head regularization it chose for that many
        self.tried_n = 0  # exemplars at the last recalibration, done or failed (the refit thread's)

    def calibrated(self, n: int, c: float) -> None:
        self.n, self.c = n, c

    def scaled_c(self, n: int) -> float:
        """The head's C for `n` exemplars at the calibrated sharpness. A head refitted on more exemplars at the same
        C is less regularized per exemplar, so sharper than the one the temperature and threshold were chosen for:
        its p drifted up, and answered accuracy below the target (HWU64 stream: 96.7% for a 97% target)."""
        return self.c * self.n / max(n, 1)

    def due(self, fitted) -> bool:
        """Whether the calibration is older than the exemplars allow: they grew by RECALIBRATE_GROWTH since, or it
        was never cross-validated (a cold start, or a first fit with too few exemplars per label)."""
        if fitted.n <= self.tried_n:  # nothing new since the last try (it may not cross-validate)
            return False
        # A profile abstaining until supported (judge/support.py) is small: each teach may be what supports it.
        unsupported = is_unsupported(fitted.calibration)
        return fitted.n >= self.n * (1 + RECALIBRATE_GROWTH) or fitted.calibration.cv_accuracy is None or unsupported
