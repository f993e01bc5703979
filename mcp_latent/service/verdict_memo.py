"""Verdicts a fitted snapshot has already given, kept with that snapshot: the same text judged again by the same
snapshot gets the same verdict without the arithmetic.

Why: a handle is typically judged several times by the same profiles (the `handoff` that stored it asked for
verdicts, then each agent it was passed to calls `evaluate` with it), and a verdict is a pure function of the
snapshot (`FittedProfile`, immutable), the vector, the text, `detail` and the number of neighbours shown. So the
memo is keyed by the snapshot object itself (weakly: it goes when the snapshot goes) and by those inputs. A teach,
a refit or a new threshold makes a new snapshot, whose memo starts empty: a remembered verdict can never outlive
the state it was computed from. Each snapshot keeps at most `verdict_cache_size` verdicts (least recently used go
first); 0 turns the memo off.

Ownership: `_lock` guards `_by_snapshot` and every table in it; a verdict is computed outside the lock (two threads
asking for the same one at once both compute it, and the same verdict is kept). Verdicts handed out are shared:
callers read them and never modify them (`Verdict.compact` and `detailed` build new dicts).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.verdict import Verdict


class VerdictMemo:
    """Per-snapshot bounded memo of `FittedProfile.verdict`."""

    def __init__(self, size: int):
        self.size = size
        self._by_snapshot: weakref.WeakKeyDictionary[FittedProfile, OrderedDict[tuple, Verdict]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.hits = 0  # verdicts served from the memo (for tests and the curious; not exported)

    def verdict(
        self, profile: FittedProfile, vector: np.ndarray, text: str | None, detail: bool = False, show: int = 3
    ) -> Verdict:
        """`profile.verdict(vector, text, detail, show)`, remembered for this snapshot."""
        if self.size <= 0:
            return profile.verdict(vector, text, detail, show)
        key = (vector.dtype.str, vector.shape, vector.tobytes(), text, bool(detail), show if detail else 0)
        with self._lock:
            table = self._by_snapshot.get(profile)
            verdict = None if table is None else table.get(key)
            if verdict is not None:
                table.move_to_end(key)
                self.hits += 1
                return verdict
        verdict = profile.verdict(vector, text, detail, show)
        with self._lock:
            table = self._by_snapshot.get(profile)
            if table is None:
                table = self._by_snapshot[profile] = OrderedDict()
            table[key] = verdict
            while len(table) > self.size:
                table.popitem(last=False)
        return verdict
