"""What one profile's verdicts turned out to be: the record a taught profile's threshold is set from.

Owned by one `LiveProfile` (one record per profile). `_lock` guards `_verdicts` and `_checks`; it is held only to
record, mark or copy (any thread that judges or teaches; the refit thread copies), never while computing."""

from __future__ import annotations

import collections
import threading

import numpy as np

from mcp_latent.judge.stream import MIN_SHARPNESS, stream_sharpness, stream_threshold


class StreamRecord:
    """Recent verdicts on distinct in-scope texts, each given before its text was taught, and the spot checks of
    their p: every refit sets the threshold from them (`stream_threshold`) once there are enough."""

    def __init__(self, window: int):
        self.window = window  # 0: no record, the fit's own threshold
        self._lock = threading.Lock()
        # Per text (its vector's bytes: a handle judged twice counts once), oldest first: [p, best label, whether
        # the best label was right], the last None until the text is taught (an escalation, or a spot check).
        self._verdicts: dict[bytes, list] = {}
        # (p, best label right) of the verdict each taught text had just before it was taught: p's check.
        self._checks: collections.deque[tuple[float, bool]] = collections.deque(maxlen=window)

    def observe(self, vector: np.ndarray, p: float, in_scope: bool, best: str | None = None) -> None:
        """Record a verdict (texts cut as out of scope are answered at no threshold: left out); `best`: its most
        probable label, also when unsure (a later teach of the text says whether it was right)."""
        if not self.window or not in_scope:
            return
        key = vector.tobytes()
        with self._lock:
            if key in self._verdicts:
                return
            self._verdicts[key] = [p, best, None]
            if len(self._verdicts) > self.window:
                del self._verdicts[next(iter(self._verdicts))]  # dicts keep insertion order: oldest goes

    def check(self, p: float, right: bool) -> None:
        """A taught text's verdict just before the teach: whether its best label was the one taught."""
        if self.window:
            with self._lock:
                self._checks.append((p, right))

    @property
    def checks(self) -> int:
        return len(self._checks)

    def taught(self, vector: np.ndarray, label: str) -> None:
        """A text was taught: its recorded verdict (if any) now knows whether its best label was right."""
        with self._lock:
            record = self._verdicts.get(vector.tobytes())
            if record is not None and record[1] is not None and record[2] is None:
                record[2] = record[1] == label

    def verdicts(self) -> tuple[np.ndarray, np.ndarray]:
        """(p, right) of the recorded verdicts, oldest first; right is 1/0 for texts taught since (whether the
        verdict's best label was the one taught), NaN for the others."""
        with self._lock:
            records = list(self._verdicts.values())
        p = np.array([r[0] for r in records], dtype=np.float64)
        right = np.array([np.nan if r[2] is None else float(r[2]) for r in records], dtype=np.float64)
        return p, right

    def threshold(self, target_accuracy: float) -> float | None:
        """The threshold the stream sets, or None: too few labelled verdicts to go by p, or p too far off
        (sharpness below MIN_SHARPNESS) to go by."""
        p, right = self.verdicts()
        with self._lock:
            checks = np.array(self._checks, dtype=np.float64).reshape(-1, 2)
        sharpness = stream_sharpness(checks[:, 0], checks[:, 1])
        if sharpness is None or sharpness < MIN_SHARPNESS:
            return None
        return stream_threshold(p, target_accuracy, right, sharpness)
