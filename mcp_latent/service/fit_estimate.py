"""How far a profile's first fit has got and when it will end: what a call waiting for the profile reads to decide
whether to wait or answer "fitting, ready in about N s" at once.

Written by the one thread running the first fit, read by any thread: the progress is one tuple replaced whole, so a
reader never sees a torn value and never waits.
"""

from __future__ import annotations

import time

# Rough cost model for the first estimate before any progress is seen (2 shared cores, all-MiniLM-L6-v2).
EMBED_SECONDS_PER_TEXT = 0.01
FIT_SECONDS_PER_ROW_LABEL = 7e-5  # the cross-validated fit: about 50 s for 10,000 exemplars of 77 labels


class FitEstimate:
    def __init__(self, total: int, n_labels: int, on_disk: bool):
        self._progress = (0, total, time.monotonic())  # exemplars embedded, to embed, since when
        self._n_labels = n_labels
        # Whether a stored fit is there to load (milliseconds) instead of a fit to run (minutes). Without it, a call
        # arriving while startup loaded the cached fits read the estimate of a full fit (~20 s for a shipped
        # profile), gave up at once under a 20 s wait, and answered "fitting" for a profile ready a moment later.
        self._on_disk = on_disk

    def start(self, total: int) -> None:
        """A full fit begins (no usable stored fit after all): the estimate is a full fit's from here."""
        self._progress = (0, total, time.monotonic())
        self._on_disk = False

    def advance(self, count: int) -> None:
        done, total, since = self._progress
        self._progress = (done + count, total, since)

    def eta(self, taught: int) -> float:
        """Seconds until the first fit is done: embedding at the rate seen so far, then the fit itself (a rough
        cost model of a quiet 2-core machine; once overrun, a second). `taught`: exemplars taught beyond the file."""
        done, total, since = self._progress
        if self._on_disk and done == 0:  # a stored fit to load, plus the taught exemplars it may lack to embed
            return 1.0 + taught * EMBED_SECONDS_PER_TEXT
        elapsed = time.monotonic() - since
        per_text = elapsed / done if done else EMBED_SECONDS_PER_TEXT
        fit = total * self._n_labels * FIT_SECONDS_PER_ROW_LABEL
        if done < total:
            return (total - done) * per_text + fit
        return max(1.0, fit - (elapsed - done * per_text))

    def progress(self) -> tuple[int, int]:
        """(exemplars embedded, exemplars to embed)."""
        done, total, _ = self._progress
        return done, total

    def fitting_message(self, profile: str, taught: int) -> str:
        done, total = self.progress()
        return (
            f"profile {profile!r} is fitting ({done:,} of {total:,} exemplars embedded), ready in about "
            f"{max(1, round(self.eta(taught)))} s; retry then, or name other profiles."
        )
