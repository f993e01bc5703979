"""The fit lifecycle of one profile, owned by one object: fitting at startup, learning from `teach`, refitting in
the background, and the snapshot every reader judges with.

Who owns what (one `LiveProfile` per profile; nothing here is shared across profiles):
- `snapshot` is an immutable `FittedProfile`. Readers (any thread, the event loop included) take it with one
  attribute read and never wait; writers replace it whole (an atomic reference swap).
- `_lock` (this profile's only lock) serialises writers: `teach`, the swap after a fit, and the start of a fit.
  It is never held while fitting or embedding, so a teach is never stuck behind a minute-long refit.
- `_taught` (label, text) pairs and `_digest` (their running hash, part of the fit cache key) belong to `_lock`.
- The background refit is single-flight: at most one thread per profile (`_refit_thread`), which loops while
  teaches keep arriving; exemplars taught during a refit are appended to its result before it is swapped in.
- `stream` (recent verdicts and the spot checks of their p, for the stream threshold) is a `StreamRecord` with its
  own lock (stream_record.py).
- The first fit is single-flight too: whoever needs the profile first (the startup thread or a call) fits it;
  everyone else waits on `_fitted_event` up to their budget (never longer), then gets "fitting, ready in about N s".
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mcp_latent.errors import InvalidInput, NotReady
from mcp_latent.judge.decision import OUT_OF_SCOPE
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.selection import Calibration
from mcp_latent.profiles.fitter import ProfileFitter, flatten
from mcp_latent.profiles.registry import Profile
from mcp_latent.service.refit_pacer import REFIT_DEBOUNCE_SECONDS, RefitPacer
from mcp_latent.service.stream_record import StreamRecord

log = logging.getLogger(__name__)

# A full cross-validated recalibration runs when the exemplars grew by this share since the last one; smaller
# growth refits only the head (warm-started, keeping the calibration), which costs a fraction of it.
RECALIBRATE_GROWTH = 0.25
WAIT_POLL_SECONDS = 0.25  # how often a caller waiting for a first fit re-checks the estimate
# Rough cost model for the first ETA before any progress is seen (2 shared cores, all-MiniLM-L6-v2).
EMBED_SECONDS_PER_TEXT = 0.01
FIT_SECONDS_PER_ROW_LABEL = 7e-5  # the cross-validated fit: about 50 s for 10,000 exemplars of 77 labels


@dataclass
class Learned:
    """What one `teach` did to one profile."""

    profile: str
    label: str
    added: bool  # False when this exact (label, text) was already an exemplar
    exemplars: int
    was: str | None  # the profile's verdict before: a label, or None when it was unsure


class LiveProfile:
    """Owner of one profile's fit: snapshot for readers, teach, single-flight background refits."""

    def __init__(
        self,
        profile: Profile,
        fitter: ProfileFitter,
        persist: Callable[[str, str], None] | None = None,
        taught: list[tuple[str, str]] | None = None,
        refit_cpu_share: float = 1.0,
        stream_window: int = 0,
    ):
        self.name = profile.name
        self.base = profile.base or profile.spec  # the file's content; never changes while the server runs
        self.path = profile.path
        self.builtin = profile.builtin
        self.labels = [label.name for label in self.base.labels]
        self._label_ids = {name: i for i, name in enumerate(self.labels)}
        self._fitter = fitter
        self._persist = persist  # writes a taught exemplar durably (the data dir's overlay), or None in tests
        self._base_texts, self._base_y = flatten(self.base)
        self._lock = threading.Lock()
        self._taught: list[tuple[str, str]] = []
        self._known: set[tuple[str, str]] = set(
            zip((self.labels[i] for i in self._base_y), self._base_texts, strict=True)
        )
        self._digest = hashlib.sha256()
        for label, text in taught or []:
            if label in self._label_ids:  # a label since removed from the file: its exemplars no longer apply
                self._remember(label, text)
        self.snapshot: FittedProfile | None = None
        self._fitted_event = threading.Event()
        self._fitting = False  # the first fit is running (in some thread)
        self._error: Exception | None = None
        self._progress = (0, len(self._base_texts) + len(self._taught), time.monotonic())  # done, total, since
        # Whether a stored fit is there to load (milliseconds) instead of a fit to run (minutes): the estimate a call
        # waits by. Without it, a call arriving while startup loaded the cached fits read the estimate of a full fit
        # (~20 s for a shipped profile), gave up at once under a 20 s wait, and answered "fitting" for a profile
        # that was ready a moment later. Set once here (two stats); a fit that turns out unreadable is run anyway.
        self._on_disk = fitter.has_fit(self.name, [self._fit_key(), fitter.fit_key(self.base)], self.path)
        self._refit_thread: threading.Thread | None = None
        self._refit_pending = False
        # Refits ran back to back while teaches kept coming: on 2 cores that took a core from serving for the whole
        # stream. Refits now rest in proportion to their cost (the snapshot already counts every taught exemplar
        # through its neighbours and a nudged head; a refit refines the head). Owned by the refit thread.
        self._pacer = RefitPacer(refit_cpu_share)
        self._calibrated_n = 0  # exemplars the current calibration was cross-validated on
        self._calibrated_c = 1.0  # and the head regularization it chose for that many
        self._recalibration_tried_n = 0  # exemplars at the last recalibration, done or failed (the refit thread's)
        self.stream = StreamRecord(stream_window)  # what the verdicts turned out to be: the stream threshold's input
        self.stream_threshold: float | None = None  # the threshold the stream set last (None: the fit's own)
        self.refits = 0  # background refits swapped in (for tests and stats)

    # --- reading -----------------------------------------------------------------------------------------------

    @property
    def exemplars(self) -> int:
        return len(self._base_texts) + len(self._taught)

    @property
    def taught(self) -> int:
        return len(self._taught)

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    def fitted(self, wait: float | None) -> FittedProfile:
        """The snapshot to judge with. Before the first fit: starts it in a background thread if nobody has, then
        waits while the estimate says it ends within `wait` seconds (None: as long as it takes), else raises
        NotReady with the estimate, so a call never sits through a large profile's fit."""
        snapshot = self.snapshot
        if snapshot is not None:
            return snapshot
        if wait is None:
            self.ensure_fitted()  # no budget (library and CLI use): fit here, or wait for whoever is fitting
            self._fitted_event.wait()
            if self.snapshot is None:
                raise NotReady(self._not_ready_message())
            return self.snapshot
        if not self._fitting:
            threading.Thread(target=self.ensure_fitted, name=f"fit-{self.name}", daemon=True).start()
        # Wait while the estimate says the fit ends within what is left of the budget; a large profile answers at
        # once with its estimate instead. `wait` bounds the call: never longer, whatever the estimate said (until
        # issue 21 a floor of 300 s applied here, so a call could outlast every client's request timeout).
        deadline = time.monotonic() + wait
        while not self._fitted_event.wait(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            left = deadline - time.monotonic()
            if left <= 0 or self.eta() > left:
                raise NotReady(self._not_ready_message())
        if self.snapshot is None:
            raise NotReady(self._not_ready_message())
        return self.snapshot

    def wait_fitted(self, timeout: float | None = None) -> bool:
        """Block until the first fit is done or failed, whoever runs it; False on timeout."""
        return self._fitted_event.wait(timeout)

    def waitable(self, wait: float) -> bool:
        """Not ready yet, but expected within `wait` seconds (a call naming it would wait for it)."""
        return self.snapshot is None and self._error is None and self.eta() <= wait

    def status(self) -> dict[str, object]:
        """Readiness for `status`/`profiles`: ready, or fitting with an estimate, or failed with the reason."""
        if self.snapshot is not None:
            return {"ready": True}
        if self._error is not None:
            return {"ready": False, "error": str(self._error)}
        return {"ready": False, "eta_s": round(self.eta(), 1)}

    def eta(self) -> float:
        """Seconds until the first fit is done: embedding at the rate seen so far, then the fit itself (a rough
        cost model of a quiet 2-core machine; once overrun, a second)."""
        done, total, since = self._progress
        if self._on_disk and done == 0:  # a stored fit to load, plus the taught exemplars it may lack to embed
            return 1.0 + len(self._taught) * EMBED_SECONDS_PER_TEXT
        elapsed = time.monotonic() - since
        per_text = elapsed / done if done else EMBED_SECONDS_PER_TEXT
        fit = total * len(self.labels) * FIT_SECONDS_PER_ROW_LABEL
        if done < total:
            return (total - done) * per_text + fit
        return max(1.0, fit - (elapsed - done * per_text))

    def pending_verdict(self, message: str) -> dict[str, object]:
        """What a call shows in place of this profile's verdict when its first fit is not done within the wait:
        no label, unsure (a caller that skips the note escalates, never acts on it), and when to ask again."""
        if self._error is not None:
            return {"label": None, "unsure": True, "error": message}
        return {"label": None, "unsure": True, "fitting": f"fitting, ready in about {max(1, round(self.eta()))} s"}

    def _not_ready_message(self) -> str:
        if self._error is not None:
            return f"profile {self.name!r} could not be fitted: {self._error}"
        done, total, _ = self._progress
        return (
            f"profile {self.name!r} is fitting ({done:,} of {total:,} exemplars embedded), ready in about "
            f"{max(1, round(self.eta()))} s; retry then, or name other profiles."
        )

    # --- the stream ----------------------------------------------------------------------------------------------

    def observe(self, vector: np.ndarray, p: float, in_scope: bool, best: str | None = None) -> None:
        """Record a verdict this profile gave (see `StreamRecord.observe`)."""
        self.stream.observe(vector, p, in_scope, best)

    def stream_verdicts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.stream.verdicts()

    def _on_stream(self, fitted: FittedProfile) -> FittedProfile:
        """The fit answering from the stream's threshold when the stream has set one (`stream_threshold`); a
        fixed threshold in the profile file is left alone."""
        if self.base.threshold is not None:
            return fitted
        threshold = self.stream.threshold(self.base.target_accuracy)
        self.stream_threshold = threshold
        return fitted if threshold is None else fitted.with_threshold(threshold)

    # --- first fit ---------------------------------------------------------------------------------------------

    def load_cached(self) -> bool:
        """Take a cached fit of the current content if there is one (milliseconds, no embedding of the file's
        exemplars); True when the profile is ready. Startup runs this for every profile before any real fit."""
        if not self._claim():
            return self.snapshot is not None
        try:
            fitted, taught_in_fit = self._cached()
            if fitted is not None:
                self._install_first(fitted, taught_in_fit)
            return fitted is not None
        finally:
            self._fitting = False

    def ensure_fitted(self) -> None:
        """Fit now in this thread, unless the profile is ready or another thread is already fitting it."""
        if not self._claim():
            return
        try:
            fitted, taught_in_fit = self._cached()
            if fitted is None:
                with self._lock:
                    key, texts, y, taught = self._fit_key(), *self._rows()
                taught_in_fit = len(taught)
                self._progress = (0, len(texts), time.monotonic())
                self._on_disk = False  # no usable stored fit after all: the estimate is a full fit's from here
                vectors = self._fitter.vectors(self.name, texts, self._advance)
                fitted = self._fit(vectors, texts, y, None)
                self._calibrated_n, self._calibrated_c = len(texts), fitted.calibration.c
                self._fitter.save(self.name, key, fitted, taught=bool(taught))
                log.info("profile %s fitted: %s", self.name, fitted.calibration)
            self._install_first(fitted, taught_in_fit)
        except Exception as exc:
            log.exception("fitting profile %s failed", self.name)
            self._error = exc
            self._fitted_event.set()  # waiters get the error now instead of waiting out their budget
        finally:
            self._fitting = False

    def _claim(self) -> bool:
        """Claim the first fit for this thread; False when the profile is ready or someone else is fitting it."""
        with self._lock:
            if self.snapshot is not None or self._fitting:
                return False
            self._fitting = True
            self._error = None
            return True

    def _cached(self) -> tuple[FittedProfile | None, int]:
        """(cached fit, taught exemplars it includes): the current content's fit, else the file's own fit with the
        taught exemplars added on top (a refit follows), else None."""
        with self._lock:
            key, texts, _, taught = self._fit_key(), *self._rows()
        fitted = self._fitter.load(self.name, key, self.base, texts, self.path)
        if fitted is not None:
            self._calibrated_n, self._calibrated_c = fitted.n, fitted.calibration.c
            return fitted, len(taught)
        if not taught:
            return None, 0
        base_key = self._fitter.fit_key(self.base)
        base = self._fitter.load(self.name, base_key, self.base, self._base_texts, self.path)
        if base is None:
            return None, 0
        self._calibrated_n, self._calibrated_c = base.n, base.calibration.c
        return base, 0

    def _advance(self, count: int) -> None:
        done, total, since = self._progress
        self._progress = (done + count, total, since)

    def _install_first(self, fitted: FittedProfile, taught_in_fit: int) -> None:
        """Swap in the first fit plus whatever was taught after the rows it was fitted on."""
        while True:
            with self._lock:
                late = self._taught[taught_in_fit:]
            # Embedding (the cache file, else the model) runs outside the lock: a teach meanwhile just loops.
            vectors = self._fitter.vectors(self.name, [text for _, text in late]) if late else None
            with self._lock:
                if len(self._taught) != taught_in_fit + len(late):
                    continue
                if late:
                    ids = [self._label_ids[label] for label, _ in late]
                    fitted = fitted.with_exemplars(vectors, ids, [text for _, text in late])
                self.snapshot = fitted
                provisional = fitted.provisional
                break
        self._fitted_event.set()
        if provisional:
            self._schedule_refit()

    # --- learning ----------------------------------------------------------------------------------------------

    def teach(self, label: str, text: str, vector: np.ndarray) -> Learned:
        """Add one exemplar: persisted first, counted from the next verdict (a new snapshot), refitted later."""
        if label not in self._label_ids:
            raise InvalidInput(f"label {label!r} is not in profile {self.name!r}; labels: {', '.join(self.labels)}.")
        text = text.strip()
        with self._lock:
            known = (label, text) in self._known
        if known:
            # Already an exemplar with this label: a repeat changes nothing, no figure either (a second spot check of
            # the same decision would count the same agreement twice and skew the stream's checks).
            return Learned(self.name, label, False, self.exemplars, None)
        snapshot = self.snapshot
        was = None
        if snapshot is not None and snapshot.n:
            verdict = snapshot.verdict(vector, text)
            was = verdict.label
            if verdict.reason != OUT_OF_SCOPE:
                self.stream.check(verdict.p, verdict.best == label)
        self.stream.taught(vector, label)
        with self._lock:
            if (label, text) in self._known:
                return Learned(self.name, label, False, self.exemplars, was)
            if self._persist is not None:
                self._persist(label, text)
            self._remember(label, text)
            if self.snapshot is not None:
                self.snapshot = self.snapshot.with_exemplars(vector[None, :], [self._label_ids[label]], [text])
            exemplars = self.exemplars
        self._schedule_refit()
        return Learned(self.name, label, True, exemplars, was)

    def learn_elsewhere(self, entries: list[tuple[str, str]]) -> int:
        """Exemplars another process taught (already persisted there): embed and apply them; returns how many."""
        fresh = [
            (label, text) for label, text in entries if label in self._label_ids and (label, text) not in self._known
        ]
        if not fresh:
            return 0
        vectors = self._fitter.embedder.embed([text for _, text in fresh])
        with self._lock:
            for (label, text), vector in zip(fresh, vectors, strict=True):
                if (label, text) in self._known:
                    continue
                self._remember(label, text)
                if self.snapshot is not None:
                    self.snapshot = self.snapshot.with_exemplars(vector[None, :], [self._label_ids[label]], [text])
        self._schedule_refit()
        return len(fresh)

    def _remember(self, label: str, text: str) -> None:
        self._taught.append((label, text))
        self._known.add((label, text))
        self._digest.update(f"{label}\0{text}\n".encode())

    # --- background refit --------------------------------------------------------------------------------------

    def _schedule_refit(self) -> None:
        with self._lock:
            self._refit_pending = True
            if self._refit_thread is not None or self.snapshot is None:
                return  # the running refit loops again; a first fit in progress takes the teach along
            self._refit_thread = threading.Thread(target=self._refit_loop, name=f"refit-{self.name}", daemon=True)
            self._refit_thread.start()

    def _refit_loop(self) -> None:
        """Refit while teaches arrive or a recalibration is due, paced by `RefitPacer`; each result is swapped in
        when done."""
        time.sleep(REFIT_DEBOUNCE_SECONDS)  # teaches arriving in a burst share one refit
        while True:
            with self._lock:
                current = self.snapshot
                due = current is not None and self._recalibration_due(current)
                wait = None if current is None else self._pacer.wait(time.monotonic(), self._refit_pending, due)
                if wait is None:
                    self._refit_thread = None
                    return
            if wait > 0:
                time.sleep(wait)
                continue  # look again: more may have been taught meanwhile
            with self._lock:
                self._refit_pending = False
                current, key, has_taught = self.snapshot, self._fit_key(), bool(self._taught)
            assert current is not None
            vectors, y, texts = current.vectors.copy(), current.y.copy(), current.texts
            recalibrate = self._recalibration_due(current) and self._pacer.may_recalibrate(time.monotonic())
            started = time.monotonic()
            try:
                # A head refitted on more exemplars at the same C is less regularized per exemplar, so sharper than
                # the one the temperature and threshold were chosen for: its p drifted up, and answered accuracy
                # below the target (HWU64 stream: 96.7% for a 97% target). Scaling C keeps the head's sharpness.
                scaled = self._calibrated_c * self._calibrated_n / max(len(y), 1)
                reuse = None if recalibrate else replace(current.calibration, c=scaled)
                fitted = self._fit(vectors, texts, y, reuse, current)
            except Exception:
                log.exception("background refit of profile %s failed; keeping the current fit", self.name)
                continue  # paced like any refit; a failed recalibration is tried again only after more teaches
            finally:
                self._pacer.done(started, time.monotonic(), recalibrate)
                if recalibrate:
                    self._recalibration_tried_n = len(y)
            fitted = self._on_stream(fitted)
            with self._lock:
                latest = self.snapshot
                assert latest is not None
                if latest.n > fitted.n:  # taught while refitting: carry those exemplars over
                    rows = slice(fitted.n, latest.n)
                    fitted = fitted.with_exemplars(latest.vectors[rows], latest.y[rows], latest.texts[rows])
                    self._refit_pending = True
                if recalibrate:
                    self._calibrated_n, self._calibrated_c = len(y), fitted.calibration.c
                self.snapshot = fitted
                self.refits += 1
            if recalibrate and not fitted.provisional:
                self._fitter.save(self.name, key, fitted, taught=has_taught)
            log.info(
                "profile %s refitted on %d exemplars (%s)", self.name, len(y), "recalibrated" if recalibrate else "head"
            )

    def _recalibration_due(self, fitted: FittedProfile) -> bool:
        """Whether the calibration is older than the exemplars allow: they grew by RECALIBRATE_GROWTH since, or it
        was never cross-validated (a cold start, or a first fit with too few exemplars per label)."""
        if fitted.n <= self._recalibration_tried_n:  # nothing new since the last try (it may not cross-validate)
            return False
        return fitted.n >= self._calibrated_n * (1 + RECALIBRATE_GROWTH) or fitted.calibration.cv_accuracy is None

    def wait_refitted(self, timeout: float = 300.0) -> bool:
        """Block until no background refit is queued or running; False on timeout (for tests and tools)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._refit_thread
            if thread is None:
                return True
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False

    # --- helpers -----------------------------------------------------------------------------------------------

    def _fit(
        self,
        vectors: np.ndarray,
        texts: list[str],
        y: np.ndarray,
        reuse: Calibration | None,
        warm_start: FittedProfile | None = None,
    ) -> FittedProfile:
        if len(texts) == 0:
            return FittedProfile.empty(self.base, self._fitter.embedder.dim)
        return FittedProfile.fit(self.base, vectors, texts, y, reuse, warm_start)

    def _rows(self) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """Every exemplar text and label id (the file's, then the taught ones in order), and the taught pairs."""
        taught = list(self._taught)
        texts = self._base_texts + [text for _, text in taught]
        y = np.concatenate([self._base_y, np.array([self._label_ids[label] for label, _ in taught], dtype=np.int64)])
        return texts, y, taught

    def _fit_key(self) -> str:
        return self._fitter.fit_key(self.base, self._digest.hexdigest() if self._taught else "")
