"""Verdicts a fitted snapshot has already given, kept with that snapshot: the same text judged again by the same
snapshot gets the same verdict without the arithmetic.

Why: a handle is typically judged several times by the same profiles (the `handoff` that stored it asked for
verdicts, then each agent it was passed to calls `evaluate` with it), and a verdict is a pure function of the
snapshot (`FittedProfile`, immutable), the vector, the text, `detail` and the number of neighbours shown. So the
memo is keyed by the snapshot object itself (weakly: it goes when the snapshot goes) and by those inputs. A teach,
a refit or a new threshold makes a new snapshot, whose memo starts empty: a remembered verdict can never outlive
the state it was computed from. Each snapshot keeps at most `verdict_cache_size` verdicts (least recently used go
first); 0 turns the memo off.

The verdicts a call asks of several snapshots at once (`verdicts`) that none of them remembers are computed from
one similarity product over their distinct exemplar rows (`neighbour_search.SharedProducts`, setting
`shared_product_sets`): a first verdict's cost is mostly reading the exemplars, and the shipped profiles share many.

Verdicts computed ahead of any call (`service/prefetch.py`: a stored handle judged in the background by the profiles
callers use) wait in a second table per snapshot (`prefetch`), so they never push out a verdict a call was served,
and move into the served table when a call first asks for them. They are the same function of the same snapshot, so
a call served one gets what it would have computed. At most `prefetch_keep` wait per snapshot, each at most
`prefetch_recent_seconds`; a full table takes no more (the newest work is dropped, as in the prefetch queue: the
texts stored earlier are the ones whose calls come first).

Ownership: `_lock` guards `_by_snapshot`, `_prefetched` and every table in them (`shared` has its own lock); a
verdict is computed outside the lock (two threads asking for the same one at once both compute it, and the same
verdict is kept).
Verdicts handed out are shared: callers read them and never modify them (`Verdict.compact` and `detailed` build new
dicts).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict

import numpy as np

from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.neighbour_search import SharedProducts
from mcp_latent.judge.verdict import Verdict


class VerdictMemo:
    """Per-snapshot bounded memo of `FittedProfile.verdict`."""

    def __init__(self, size: int, shared_sets: int = 2, prefetch_keep: int = 0, prefetch_seconds: float = 600.0):
        self.size = size
        self.prefetch_keep = prefetch_keep if size > 0 else 0  # a prefetched verdict is served through the memo
        self.prefetch_seconds = prefetch_seconds
        self.shared = SharedProducts(shared_sets)
        self._by_snapshot: weakref.WeakKeyDictionary[FittedProfile, OrderedDict[tuple, Verdict]] = (
            weakref.WeakKeyDictionary()
        )
        # Prefetched verdicts with when they were computed (monotonic), oldest first.
        self._prefetched: weakref.WeakKeyDictionary[FittedProfile, OrderedDict[tuple, tuple[Verdict, float]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.hits = 0  # verdicts served from the memo (for tests and the curious; not exported)
        self.prefetch_hits = 0  # of those, verdicts computed ahead by `prefetch` and served for the first time

    def verdicts(
        self, profiles: dict[str, FittedProfile], vector: np.ndarray, text: str | None, detail: bool, show: int
    ) -> dict[str, Verdict]:
        """Each profile's `verdict`: remembered ones as they are, the others from one shared similarity product
        when there are several (each profile's own product otherwise)."""
        key = self._key(vector, text, detail, show)
        verdicts = {name: self._remembered(profile, key) for name, profile in profiles.items()}
        missing = [name for name, verdict in verdicts.items() if verdict is None]
        given = self.shared.similarities([profiles[name] for name in missing], vector) if len(missing) > 1 else None
        for i, name in enumerate(missing):
            sims = None if given is None else given[i]
            verdicts[name] = self.verdict(profiles[name], vector, text, detail, show, sims, key)
        return verdicts

    def key(self, vector: np.ndarray, text: str | None) -> tuple:
        """The key of a compact verdict (no detail) on these inputs: `prefetch` takes it, so the profiles judging
        one text share its bytes."""
        return self._key(vector, text, False, 0)

    @staticmethod
    def _key(vector: np.ndarray, text: str | None, detail: bool, show: int) -> tuple:
        return (vector.dtype.str, vector.shape, vector.tobytes(), text, bool(detail), show if detail else 0)

    def _remembered(self, profile: FittedProfile, key: tuple) -> Verdict | None:
        if self.size <= 0:
            return None
        with self._lock:
            table = self._by_snapshot.get(profile)
            verdict = None if table is None else table.get(key)
            if verdict is not None:
                table.move_to_end(key)
                self.hits += 1
            elif self.prefetch_keep > 0:
                ahead = self._prefetched.get(profile)
                kept = None if ahead is None else ahead.pop(key, None)
                if kept is not None:  # served now: it joins the served verdicts (however old: still exact)
                    verdict = kept[0]
                    self._keep(profile, key, verdict)
                    self.hits += 1
                    self.prefetch_hits += 1
        return verdict

    def _keep(self, profile: FittedProfile, key: tuple, verdict: Verdict) -> None:
        """Remember a served verdict (under `_lock`)."""
        table = self._by_snapshot.get(profile)
        if table is None:
            table = self._by_snapshot[profile] = OrderedDict()
        table[key] = verdict
        while len(table) > self.size:
            table.popitem(last=False)

    def wanted(self, profile: FittedProfile, key: tuple) -> str | None:
        """Whether to judge `key` ahead for this snapshot: None (yes), "known" (served or prefetched already) or
        "full" (`prefetch_keep` verdicts wait for their calls, none older than `prefetch_seconds`). Counts nothing."""
        if self.prefetch_keep <= 0:
            return "full"
        with self._lock:
            served, ahead = self._by_snapshot.get(profile), self._prefetched.get(profile)
            if (served is not None and key in served) or (ahead is not None and key in ahead):
                return "known"
            return "full" if ahead is not None and self._crowded(ahead) else None

    def _crowded(self, ahead: OrderedDict[tuple, tuple[Verdict, float]]) -> bool:
        """Drop the prefetched verdicts older than `prefetch_seconds` (oldest first); True when the table is still
        full (under `_lock`). A full table takes no more: the newest work is what is dropped, as in the queue."""
        expired = time.monotonic() - self.prefetch_seconds
        while ahead and next(iter(ahead.values()))[1] < expired:
            ahead.popitem(last=False)
        return len(ahead) >= self.prefetch_keep

    def prefetch(self, profile: FittedProfile, vector: np.ndarray, text: str | None, key: tuple) -> bool:
        """Compute the compact verdict (no detail) a call would ask for, ahead of it, and keep it for that call;
        False when it is not `wanted`. The same `profile.verdict` call `verdict` makes with no shared product, so
        the verdict is the one a one-profile `evaluate` computes."""
        if self.wanted(profile, key) is not None:
            return False
        verdict = profile.verdict(vector, text, False, 0)  # `show` counts only with detail
        with self._lock:
            served = self._by_snapshot.get(profile)
            if served is not None and key in served:  # a call computed it meanwhile
                return False
            ahead = self._prefetched.get(profile)
            if ahead is None:
                ahead = self._prefetched[profile] = OrderedDict()
            if self._crowded(ahead):
                return False
            ahead[key] = (verdict, time.monotonic())
        return True

    def verdict(
        self,
        profile: FittedProfile,
        vector: np.ndarray,
        text: str | None,
        detail: bool = False,
        show: int = 3,
        sims: np.ndarray | None = None,
        key: tuple | None = None,
    ) -> Verdict:
        """`profile.verdict(vector, text, detail, show, sims)`, remembered for this snapshot (key: `_key`'s, when
        the caller looked it up already)."""
        if self.size <= 0:
            return profile.verdict(vector, text, detail, show, sims)
        if key is None:
            key = self._key(vector, text, detail, show)
            verdict = self._remembered(profile, key)
            if verdict is not None:
                return verdict
        verdict = profile.verdict(vector, text, detail, show, sims)
        with self._lock:
            self._keep(profile, key, verdict)
        return verdict
