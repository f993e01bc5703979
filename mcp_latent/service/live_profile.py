"""The fit lifecycle of one profile, owned by one object: fitting at startup, learning from `teach`, refitting in
the background, and the snapshot every reader judges with.

Who owns what (one `LiveProfile` per profile; nothing here is shared across profiles):
- `snapshot` is an immutable `FittedProfile`. Readers (any thread, the event loop included) take it with one
  attribute read and never wait; writers replace it whole (an atomic reference swap).
- `_lock` (this profile's only lock) serialises writers: `teach`, the swap after a fit, and the start of a fit.
  It is never held while fitting or embedding, so a teach is never stuck behind a minute-long refit.
- `_taught` (a `TaughtSet`: the taught pairs in order, each text's latest label and store id, their hash)
  belongs to `_lock`.
- The background refit is single-flight: at most one thread per profile (`_refit_thread`), which loops while
  teaches keep arriving; exemplars taught during a refit are appended to its result before it is swapped in.
- `stream` (`StreamRecord`: recent verdicts, spot checks and the threshold they set) guards its own state.
- The first fit is single-flight too: whoever needs the profile first (the startup thread or a call) fits it;
  everyone else waits on `_fitted_event` up to their budget (never longer), then gets "fitting, ready in about N s".
"""

from __future__ import annotations

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
from mcp_latent.judge.support import is_unsupported
from mcp_latent.judge.threshold import answered_at_threshold
from mcp_latent.profiles.fitter import ProfileFitter, flatten
from mcp_latent.profiles.registry import Profile
from mcp_latent.service.fit_estimate import FitEstimate
from mcp_latent.service.refit_pacer import REFIT_DEBOUNCE_SECONDS, CalibrationAge, RefitPacer
from mcp_latent.service.stream_record import StreamRecord
from mcp_latent.service.taught_set import TaughtSet

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 0.25  # how often a caller waiting for a first fit re-checks the estimate


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
        persist: Callable[[str, str, str | None], None] | None = None,
        taught: list[tuple[str, str]] | None = None,
        refit_cpu_share: float = 1.0,
        stream_window: int = 0,
    ):
        self.name = profile.name
        self.base = profile.spec  # the file's content; never changes while the server runs
        self.path = profile.path
        self.builtin = profile.builtin
        self.labels = [label.name for label in self.base.labels]
        self._label_ids = {name: i for i, name in enumerate(self.labels)}
        self._fitter = fitter
        self._persist = persist  # writes a taught exemplar durably (the data dir's overlay), or None in tests
        self._base_texts, self._base_y = flatten(self.base)
        abstain_ids = [i for i, label in enumerate(self.base.labels) if label.abstain]
        self._abstain_rows = int(np.isin(self._base_y, abstain_ids).sum())  # the file's abstain exemplars
        self._lock = threading.Lock()
        file_labels = dict(zip(self._base_texts, (self.labels[i] for i in self._base_y), strict=True))
        # A label since removed from the file: its taught exemplars no longer apply.
        self._taught = TaughtSet(file_labels, [(lb, text) for lb, text in taught or [] if lb in self._label_ids])
        # Bumped (under `_lock`) when taught exemplars are dropped (`forget`): a refit begun before then fitted on
        # rows that are gone, so it is thrown away instead of swapped in. `_forget_lock` serialises forgets.
        self._epoch = 0
        self._forget_lock = threading.Lock()
        self.snapshot: FittedProfile | None = None
        self._fitted_event = threading.Event()
        self._fitting = False  # the first fit is running (in some thread)
        self._error: Exception | None = None
        on_disk = fitter.has_fit(self.name, [self._fit_key(), fitter.fit_key(self.base)], self.path)
        self._estimate = FitEstimate(len(self._base_texts) + len(self._taught), len(self.labels), on_disk)
        self._refit_thread: threading.Thread | None = None
        self._refit_pending = False
        # Refits ran back to back while teaches kept coming: on 2 cores that took a core from serving for the whole
        # stream. Refits now rest in proportion to their cost (the snapshot already counts every taught exemplar
        # through its neighbours and a nudged head; a refit refines the head). Owned by the refit thread.
        self._pacer = RefitPacer(refit_cpu_share)
        self._calibration = CalibrationAge()  # when the head was last cross-validated, and when it is due again
        # Recent verdicts and spot checks, and the threshold they set at each refit (`stream_record`).
        self.stream = StreamRecord(stream_window)
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
        """Seconds until the first fit is done (`FitEstimate`)."""
        return self._estimate.eta(len(self._taught))

    def pending_verdict(self, message: str) -> dict[str, object]:
        """What a call shows in place of this profile's verdict when its first fit is not done within the wait:
        no label, unsure (a caller that skips the note escalates, never acts on it), and when to ask again."""
        if self._error is not None:
            return {"label": None, "unsure": True, "error": message}
        return {"label": None, "unsure": True, "fitting": f"fitting, ready in about {max(1, round(self.eta()))} s"}

    def _not_ready_message(self) -> str:
        if self._error is not None:
            return f"profile {self.name!r} could not be fitted: {self._error}"
        return self._estimate.fitting_message(self.name, len(self._taught))

    # --- the stream ----------------------------------------------------------------------------------------------

    def _on_stream(self, fitted: FittedProfile) -> FittedProfile:
        """The fit answering from the threshold the stream and spot checks ask for; a fixed threshold in the
        profile file is left alone, and so is a profile abstaining until its evidence supports answers."""
        if self.base.threshold is not None or is_unsupported(fitted.calibration):
            return fitted
        served = None if self.snapshot is None else self.snapshot.threshold(True)[0]
        return self.stream.operate(fitted, self.base.target_accuracy, served)

    def _restate(self) -> None:
        """The stream rule run again on the snapshot serving now, between refits (`StreamRecord.restate_due`)."""
        current = self.snapshot
        operated = None if current is None else self._on_stream(current)
        with self._lock:
            if operated is not None and self.snapshot is current:  # else a newer snapshot: the next restate
                self.snapshot = operated

    def spot_checks(self) -> dict[str, object]:
        """The threshold answered at, with its source, and what the spot checks measured (`latent://stats`)."""
        return self.stream.summary(self.snapshot, self.base.target_accuracy)

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
                self._estimate.start(len(texts))  # no usable stored fit after all
                vectors = self._fitter.vectors(self.name, texts, self._estimate.advance)
                fitted = self._fit(vectors, texts, y, None)
                self._calibration.calibrated(len(texts), fitted.calibration.c)
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
            self._calibration.calibrated(fitted.n, fitted.calibration.c)
            return fitted, len(taught)
        if not taught:
            return None, 0
        base_key = self._fitter.fit_key(self.base)
        base = self._fitter.load(self.name, base_key, self.base, self._base_texts, self.path)
        if base is None:
            return None, 0
        self._calibration.calibrated(base.n, base.calibration.c)
        return base, 0

    def _install_first(self, fitted: FittedProfile, taught_in_fit: int) -> None:
        """Swap in the first fit plus whatever was taught after the rows it was fitted on."""
        fitted.shipped = len(self._base_texts)  # not yet shared: set before the swap publishes it
        while True:
            with self._lock:
                late = self._taught.pairs[taught_in_fit:]
            # Embedding (the cache file, else the model) runs outside the lock: a teach meanwhile just loops.
            vectors = self._fitter.vectors(self.name, [text for _, text in late]) if late else None
            with self._lock:
                if len(self._taught) != taught_in_fit + len(late):
                    continue
                if late:
                    ids = [self._label_ids[label] for label, _ in late]
                    fitted = fitted.with_exemplars(vectors, ids, [text for _, text in late])
                self.snapshot = fitted
                # the stream's ranking counts exemplars from the first fit on (under the lock: no teach between)
                self.stream.count_exemplars(fitted)
                provisional = fitted.provisional
                break
        self._fitted_event.set()
        if provisional:
            self._schedule_refit()

    # --- learning ----------------------------------------------------------------------------------------------

    def teach(self, label: str, text: str, vector: np.ndarray, teacher: str | None = None) -> Learned:
        """Add one exemplar: persisted first (with who taught it), counted from the next verdict (a new snapshot),
        refitted later."""
        if label not in self._label_ids:
            raise InvalidInput(f"label {label!r} is not in profile {self.name!r}; labels: {', '.join(self.labels)}.")
        text = text.strip()
        with self._lock:
            known = self._taught.has(label, text)
        if known:
            # Already its label: a repeat changes nothing, no figure either (a second spot check of the same decision
            # would count the same agreement twice and skew the stream's checks).
            return Learned(self.name, label, False, self.exemplars, None)
        snapshot = self.snapshot
        was, check, answered = None, None, False
        if snapshot is not None and snapshot.n:
            verdict = snapshot.verdict(vector, text)
            was = verdict.label
            # p's check is the ensemble's (also where memory answered); out of scope: answered at no threshold
            check = verdict.model if verdict.reason != OUT_OF_SCOPE else None
            answered = answered_at_threshold(verdict)  # a spot check (`threshold.answered_at_threshold`)
        self.stream.taught(vector, label, check, answered)
        with self._lock:
            if self._taught.has(label, text):  # already its label (a text relabelled since is taught again)
                return Learned(self.name, label, False, self.exemplars, was)
            stored = self._persist(label, text, teacher) if self._persist is not None else None
            self._taught.add(label, text, getattr(stored, "id", None))
            if self.snapshot is not None:
                self.snapshot = self.snapshot.with_exemplars(vector[None, :], [self._label_ids[label]], [text])
            exemplars = self.exemplars
        self._schedule_refit()
        if self.stream.restate_due():  # a refit may be a recalibration away: the threshold follows the stream
            self._restate()
        return Learned(self.name, label, True, exemplars, was)

    def learn_elsewhere(self, entries: list[tuple[str, str, int | None]]) -> int:
        """Exemplars taught through the store (label, text, store id; by another process, or this one: already
        persisted): embed and apply those this profile does not hold yet; returns how many. Of conflicting labels
        for one text the one taught last in the store wins here as on every other server."""
        with self._lock:
            fresh = [(label, text, i) for label, text, i in entries if self._is_news(label, text, i)]
        if not fresh:
            return 0
        vectors = self._fitter.embedder.embed([text for _, text, _ in fresh])
        added = 0
        with self._lock:
            for (label, text, i), vector in zip(fresh, vectors, strict=True):
                if not self._is_news(label, text, i):
                    continue
                self._taught.add(label, text, i)
                added += 1
                if self.snapshot is not None:
                    self.snapshot = self.snapshot.with_exemplars(vector[None, :], [self._label_ids[label]], [text])
        if added:
            self._schedule_refit()
        return added

    def _is_news(self, label: str, text: str, store_id: int | None) -> bool:
        """Whether a stored teach changes what this profile holds (under `_lock`): a known label, a label this
        profile does not have, or a teach older than the last one seen of that text (its own) changes nothing."""
        return label in self._label_ids and self._taught.is_news(label, text, store_id)

    def forget(self, remaining: set[tuple[str, str]]) -> int:
        """Drop every taught exemplar not in `remaining` (the profile's taught pairs the store still holds: an
        operator reverted the others). Before this returns, the snapshot is rebuilt without them: their neighbours,
        their words and their pull on the head are gone from the next verdict. Returns how many were dropped."""
        with self._forget_lock:
            with self._lock:
                kept = [pair for pair in self._taught if pair in remaining]
                dropped = len(self._taught) - len(kept)
                if not dropped:
                    return 0
                self._taught.reset(kept)
                self._epoch += 1
                first_fit_running = self.snapshot is None and self._fitting
            if first_fit_running:  # it may have read the dropped rows: let it finish, then rebuild without them
                self._fitted_event.wait()
            if self.snapshot is not None:
                self._rebuild()
        log.info("profile %s: %d reverted exemplar(s) dropped", self.name, dropped)
        return dropped

    def _rebuild(self) -> None:
        """Make the snapshot exactly the file's exemplars plus `_taught`, in order (vectors reused from the current
        snapshot, the rest embedded), with the head and words refitted at the current calibration (seconds)."""
        with self._lock:
            current, taught = self.snapshot, list(self._taught)
        assert current is not None
        base_n = len(self._base_texts)
        rows = {(self.labels[current.y[i]], current.texts[i]): i for i in range(base_n, current.n)}
        missing = [text for label, text in taught if (label, text) not in rows]
        embedded = iter(self._fitter.embedder.embed(missing)) if missing else iter(())
        taught_vectors = [current.vectors[rows[pair]] if pair in rows else next(embedded) for pair in taught]
        kept = set(taught)
        self.stream.unlabel([current.vectors[i] for pair, i in rows.items() if pair not in kept])
        dim = current.vectors.shape[1]
        vectors = np.concatenate([current.vectors[:base_n], np.array(taught_vectors, np.float32).reshape(-1, dim)])
        texts, y, _ = self._rows_of(taught)
        fitted = self._fit(vectors, texts, y, replace(current.calibration, c=self._calibration.scaled_c(len(y))))
        with self._lock:
            latest = self.snapshot
            assert latest is not None
            if latest.n > current.n:  # taught while rebuilding (appended to the old line): carry those over
                new = slice(current.n, latest.n)
                fitted = fitted.with_exemplars(latest.vectors[new], latest.y[new], latest.texts[new])
            self.snapshot = fitted
            self._epoch += 1  # a refit begun on the old rows must not replace this one

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
                due = current is not None and self._calibration.due(current)
                wait = None if current is None else self._pacer.wait(time.monotonic(), self._refit_pending, due)
                if wait is None:
                    self._refit_thread = None
                    return
            if wait > 0:
                time.sleep(wait)
                continue  # look again: more may have been taught meanwhile
            with self._lock:
                self._refit_pending = False
                current, key, epoch = self.snapshot, self._fit_key(), self._epoch
                has_taught = bool(self._taught)
            assert current is not None
            vectors, y, texts = current.vectors.copy(), current.y.copy(), current.texts
            recalibrate = self._calibration.due(current) and self._pacer.may_recalibrate(time.monotonic())
            started = time.monotonic()
            try:
                # A head refit keeps the calibrated sharpness (`CalibrationAge.scaled_c` says why).
                reuse = None if recalibrate else replace(current.calibration, c=self._calibration.scaled_c(len(y)))
                fitted = self._fit(vectors, texts, y, reuse, current)
            except Exception:
                log.exception("background refit of profile %s failed; keeping the current fit", self.name)
                continue  # paced like any refit; a failed recalibration is tried again only after more teaches
            finally:
                self._pacer.done(started, time.monotonic(), recalibrate)
                if recalibrate:
                    self._calibration.tried_n = len(y)
            fitted = self._on_stream(fitted)
            with self._lock:
                if self._epoch != epoch:  # exemplars were reverted meanwhile: this fit still holds them
                    self._refit_pending = True
                    continue
                latest = self.snapshot
                assert latest is not None
                if latest.n > fitted.n:  # taught while refitting: carry those exemplars over
                    rows = slice(fitted.n, latest.n)
                    fitted = fitted.with_exemplars(latest.vectors[rows], latest.y[rows], latest.texts[rows])
                    self._refit_pending = True
                if recalibrate:
                    self._calibration.calibrated(len(y), fitted.calibration.c)
                self.snapshot = fitted
                self.refits += 1
            if recalibrate and not fitted.provisional:
                self._fitter.save(self.name, key, fitted, taught=has_taught)
            log.info(
                "profile %s refitted on %d exemplars (%s)", self.name, len(y), "recalibrated" if recalibrate else "head"
            )

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
        self, vectors: np.ndarray, texts: list[str], y: np.ndarray, reuse: Calibration | None, warm_start=None
    ) -> FittedProfile:
        fitter, base = self._fitter, self.base
        if len(texts) == 0:
            fitted = FittedProfile.empty(base, fitter.embedder.dim)
        else:
            fitted = FittedProfile.fit(base, vectors, texts, y, reuse, warm_start, fitter.evidence(base))
        fitted.shipped = len(self._base_texts)  # not yet shared: set before a swap publishes it
        return fitted

    def _rows(self) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """Every exemplar text and label id (the file's, then the taught ones in order), and the taught pairs."""
        return self._rows_of(list(self._taught))

    def _rows_of(self, taught: list[tuple[str, str]]) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        texts = self._base_texts + [text for _, text in taught]
        y = np.concatenate([self._base_y, np.array([self._label_ids[label] for label, _ in taught], dtype=np.int64)])
        return texts, y, taught

    def _fit_key(self) -> str:
        return self._fitter.fit_key(self.base, self._taught.fingerprint())
