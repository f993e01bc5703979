"""Verdict prefetch: texts just stored (`handoff`, `embed`) are judged in the background by the profiles callers
used recently, so the `evaluate` that follows on the handle is answered from the verdict memo.

Why: the first verdict on a handle costs the server ~1.2-1.5 ms more than a remembered one (reading the profile's
exemplars and word tables cold: docs/benchmarks.md), and a handle is typically stored by one agent and judged by the
next one a moment later. Nothing about the verdict changes: the worker asks the same snapshot the same question
(`VerdictMemo.prefetch`: `FittedProfile.verdict`, compact), and keeps the answer with that snapshot, so a teach, a
refit or a threshold change (a new snapshot, with an empty memo) leaves a prefetched verdict unused, never stale.

What it does not do: count anything. Usage stats and the stream's evidence (`LiveProfile.stream`) record verdicts
that were served (`LatentService._judge`, memo hits included); a prefetched verdict nobody asks for leaves no trace.

Priority: one daemon worker thread, started by the first text stored. It judges one (text, profile) at a time and,
before each, waits while a tool call is in flight in this process (`CALLS`, counted by the MCP server's call
wrapper on the event loop: an int, no lock), so it works in the gaps between calls instead of taking the GIL from
them. Work is bounded, never queued without end: at most `prefetch_texts_per_call` texts of one call, at most
`prefetch_queue` texts waiting (later ones are dropped and counted), at most `prefetch_keep` prefetched verdicts per
snapshot waiting for their calls, each for at most `prefetch_recent_seconds` (`VerdictMemo.wanted`: a text is not
judged for a snapshot whose table is full). A call that arrives while its verdict is being prefetched computes it
itself (the memo keeps one of the two identical answers): nothing waits on the worker.

Ownership: `_cond` (a Condition) guards `_queue`, `_working`, `_stopping` and the worker's start; `_recent_lock`
guards `_recent`; counters are written by the worker (or under `_cond`) and read without a lock by `status`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server imports this module for `CALLS` before numpy and the engine are loaded
    import numpy as np

    from mcp_latent.service.live_profile import LiveProfile
    from mcp_latent.service.verdict_memo import VerdictMemo
    from mcp_latent.settings import Settings

log = logging.getLogger(__name__)

QUIET_POLL_SECONDS = 0.002  # how often a waiting worker looks whether the calls in flight are done


class CallsInFlight:
    """Tool calls running in this process: incremented and decremented by the server's call wrapper, on the event
    loop only (one writer thread, so a plain int), read by the prefetch worker."""

    def __init__(self) -> None:
        self.running = 0


CALLS = CallsInFlight()  # process-wide, like the GIL the worker yields


class VerdictPrefetch:
    """Judges stored texts ahead of the calls that will ask, for the profiles used recently."""

    def __init__(self, settings: Settings, memo: VerdictMemo, live: Callable[[], dict[str, LiveProfile]]):
        self.enabled = settings.prefetch_verdicts and memo.prefetch_keep > 0
        self.per_call = settings.prefetch_texts_per_call
        self.max_queue = settings.prefetch_queue
        self.recent_seconds = settings.prefetch_recent_seconds
        self.max_profiles = settings.prefetch_profiles
        self.memo = memo
        self._live = live  # the service's current profile table (replaced whole on define/delete)
        self._recent: OrderedDict[str, float] = OrderedDict()  # profile -> when a call last named it (monotonic)
        self._recent_lock = threading.Lock()
        self._queue: deque[tuple[np.ndarray, str | None]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._working = False  # the worker is judging a text it took from the queue
        self._thread: threading.Thread | None = None
        self.queued = self.dropped = self.computed = self.full = 0

    def used(self, names: Sequence[str]) -> None:
        """Profiles a call was served verdicts by (the most recent last)."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._recent_lock:
            for name in names:
                self._recent[name] = now
                self._recent.move_to_end(name)
            while len(self._recent) > self.max_profiles:
                self._recent.popitem(last=False)

    def recent(self) -> list[str]:
        """The profiles named within `prefetch_recent_seconds`, most recent first."""
        since = time.monotonic() - self.recent_seconds
        with self._recent_lock:
            return [name for name, at in reversed(self._recent.items()) if at >= since]

    def stored(self, vectors: np.ndarray | Sequence[np.ndarray], texts: Sequence[str | None]) -> None:
        """Texts just stored, as the store keeps them (the vector and text a later `evaluate` by handle reads):
        queued for the worker when a profile was used recently and there is room; never blocks on the worker."""
        if not self.enabled or self.per_call <= 0 or not self.recent():
            return
        items = list(zip(vectors, texts, strict=True))[: self.per_call]
        with self._cond:
            if self._stopping:
                return
            room = max(0, self.max_queue - len(self._queue))
            self._queue.extend(items[:room])
            self.queued += min(room, len(items))
            self.dropped += max(0, len(items) - room)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mcp-latent-prefetch", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
            self._wait_quiet()  # a text is taken only between calls (it was stored by one that is still running)
            with self._cond:
                if self._stopping:
                    return
                if not self._queue:
                    continue
                vector, text = self._queue.popleft()
                self._working = True
            try:
                self._judge(vector, text)
            except Exception:  # a bug must not end the worker; the call that asks computes the verdict itself
                log.exception("verdict prefetch failed")
            finally:
                with self._cond:
                    self._working = False
                    self._cond.notify_all()

    def _judge(self, vector: np.ndarray, text: str | None) -> None:
        key = self.memo.key(vector, text)
        for name in self.recent():
            live = self._live().get(name)
            snapshot = None if live is None else live.snapshot  # not fitted yet: the call will wait for the fit
            if snapshot is None:
                continue
            why_not = self.memo.wanted(snapshot, key)
            if why_not is not None:
                self.full += why_not == "full"
                continue
            self._wait_quiet()
            if self._stopping:
                return
            snapshot = live.snapshot  # the newest after the wait (a teach may have made one)
            if snapshot is not None and self.memo.prefetch(snapshot, vector, text, key):
                self.computed += 1

    def _wait_quiet(self) -> None:
        """Wait while tool calls are in flight: the worker takes only the time between calls."""
        while CALLS.running > 0 and not self._stopping:
            time.sleep(QUIET_POLL_SECONDS)

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued and no text is being judged (for tests and tools); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._working, timeout)

    def status(self) -> dict[str, Any]:
        """Counters for `latent://status`: texts queued and dropped, verdicts computed ahead and served."""
        return {
            "on": self.enabled,
            "queued": self.queued,
            "waiting": len(self._queue),
            "dropped": self.dropped,
            "computed": self.computed,
            "full": self.full,  # (text, profile) pairs not judged: the snapshot's `prefetch_keep` verdicts wait
            "served": self.memo.prefetch_hits,
            "profiles": self.recent(),
        }

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (what is queued is dropped: it was only ever ahead of calls)."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
