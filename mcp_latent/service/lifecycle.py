"""The service's runtime: startup (model, store, profiles), readiness, shutdown, and the state every call reads.

`ServiceRuntime` owns the lifecycle; `LatentService` (api.py) adds the calls. Who owns what:
- `live` (one `LiveProfile` per profile) is filled once by `start` before `_ready` is set, then only read.
- `store`, `registry`, `maintenance` and `fitter` are set by the startup thread before `_ready`; calls reach them
  only through `_store()` / `wait_ready`, so they never see a half-started service.
- `phase` is written by the startup thread only (a str swap), read by any thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mcp_latent.embedding.base import CachedEmbedder, Embedder
from mcp_latent.embedding.factory import load_configured_embedder
from mcp_latent.errors import LatentError, ModelError, NotFound
from mcp_latent.judge.ensemble import preload as preload_fitting
from mcp_latent.judge.exemplar_rows import use_int8_neighbours
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.profiles.fitter import ProfileFitter
from mcp_latent.profiles.registry import ProfileRegistry, import_taught_logs
from mcp_latent.profiles.report import summary as operating_summary
from mcp_latent.service.heap_trim import fix_mmap_threshold
from mcp_latent.service.live_profile import LiveProfile
from mcp_latent.service.maintenance import StoreMaintenance
from mcp_latent.service.prefetch import VerdictPrefetch
from mcp_latent.service.teachers import follow_reverts, taught_by_teacher
from mcp_latent.service.usage_stats import FIELDS, ProfileStats, describe
from mcp_latent.service.user_profiles import ProfileEditor
from mcp_latent.service.verdict_memo import VerdictMemo
from mcp_latent.service.write_beside import WriteBeside
from mcp_latent.settings import Settings
from mcp_latent.store.base import LatentStore, TaughtExemplar
from mcp_latent.store.factory import open_store

log = logging.getLogger(__name__)


class ServiceRuntime:
    """One latent state: an embedder, a store of handoffs and the fitted profiles, from start to close."""

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None):
        self.settings = settings or Settings()
        self._embedder = CachedEmbedder(embedder, self.settings.embed_cache_size) if embedder else None
        self._ready = threading.Event()
        self._start_lock = threading.Lock()
        self._started = False
        self._startup_error: LatentError | None = None
        # One owner per profile for its fit lifecycle. The dict is filled by `start` before `_ready` is set; after
        # that it is only ever replaced whole (copy-on-write, by `user_profiles.ProfileEditor` under its lock), so
        # readers need no lock; each LiveProfile guards its own state.
        self.live: dict[str, LiveProfile] = {}
        self.editor = ProfileEditor(self)  # define_profile / delete_profile
        self.stats = ProfileStats.for_settings(self.settings)
        use_int8_neighbours(self.settings.int8_neighbours)  # process-wide: the exemplar storages' search path
        self.verdicts = VerdictMemo(
            self.settings.verdict_cache_size,
            self.settings.shared_product_sets,
            self.settings.prefetch_keep,
            self.settings.prefetch_recent_seconds,
        )  # verdicts per fitted snapshot, remembered
        # Stored texts judged ahead by the profiles used recently (`prefetch.py`); owns one worker thread.
        self.prefetch = VerdictPrefetch(self.settings, self.verdicts, lambda: self.live)
        self.writes = WriteBeside(self.settings.handoff_write_threads)  # a handoff's write beside its verdicts
        self.store: LatentStore | None = None
        self.registry = ProfileRegistry(self.settings.user_profiles_dir, self.settings.builtin_profiles)
        self.started_at = time.monotonic()
        self.maintenance: StoreMaintenance | None = None  # retention and other servers' teaches; owns a thread
        self.ready_after: float | None = None
        # What startup is doing now, for /healthz and latent://status. Written only by the startup thread, read by
        # any thread: a str reference is swapped atomically, so readers need no lock.
        self.phase = "not started"

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self, fit_profiles: bool = True) -> None:
        """Load the model, open the store and read the profiles (then calls are served); then make each profile
        ready on its own: cached fits first, then the unfitted ones smallest first. The server runs this in a
        background thread; library users get every profile fitted when it returns."""
        self._started = True
        try:
            s = self.settings
            if s.memory_mmap_threshold_kb:  # before the model and the store allocate (heap_trim.py says why)
                fix_mmap_threshold(s.memory_mmap_threshold_kb * 1024)
            if self._embedder is None:
                self.phase = "loading the embedding model"
                self._embedder = CachedEmbedder(
                    load_configured_embedder(s),
                    s.embed_cache_size,
                )
            self.phase = "opening the store"
            self.store = open_store(s, self._embedder.dim, self._embedder.model_id)
            self.registry.store = self.store
            imported = import_taught_logs(self.store, self.registry.user_dir)
            if imported:
                log.info("imported %d taught exemplars from .taught.jsonl files into the store", imported)
            self.phase = "loading profiles"
            self.registry.load_all()
            self.fitter = ProfileFitter.for_settings(s, self._embedder)
            self.live = {
                name: LiveProfile(
                    profile,
                    self.fitter,
                    self._persister(name),
                    profile.taught_entries,
                    s.refit_cpu_share,
                    s.stream_calibration_window,
                )
                for name, profile in self.registry.profiles.items()
            }
            if s.stream_trace:  # each stream rule run appends a line there (replayed offline by tools/stream_*.py)
                for name, live in self.live.items():
                    live.stream.trace = (s.stream_trace, name)
            self.stats.start()
            self.maintenance = StoreMaintenance(
                self.store,
                self._learn_taught,
                taught_after=self.registry.taught_cursor,
                on_reverted=lambda names: follow_reverts(self.store, self.live, names),
                max_records=s.retention_max_records,
                ttl_seconds=s.retention_ttl_seconds,
                retention_interval_seconds=s.retention_interval_seconds,
                poll_seconds=s.store_poll_seconds,
                trim_memory=s.memory_trim,
            )
            self.maintenance.start()
            self.ready_after = time.monotonic() - self.started_at
            self.phase = "ready"
            self._ready.set()  # calls are served from here on; each profile answers once its own fit is ready
            if fit_profiles:
                self._fit_profiles()
        except LatentError as exc:
            self._startup_error = exc
            self.phase = "failed"
            log.error("startup failed: %s", exc)
        except Exception as exc:  # keep the server up to report it on every call
            self._startup_error = ModelError(f"startup failed: {exc!r}")
            self.phase = "failed"
            log.exception("startup failed")
        finally:
            self._ready.set()

    def start_in_background(self) -> None:
        """Start loading once; later calls (one per HTTP session) do nothing. Servers call this once they answer
        (stdio builds the service then, HTTP after its imports), so loading never competes with their own start."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self.start, name="mcp-latent-startup", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for startup (model, store, profiles read) up to `timeout`, by default `profile_wait_seconds`: no call
        waits longer than that setting for anything (the CLI, with no event loop to keep free, waits longer)."""
        timeout = self.settings.profile_wait_seconds if timeout is None else timeout
        if not self._ready.wait(timeout):
            raise ModelError(
                f"the server is still starting ({self.phase}) after {timeout:.0f} s; nothing was done by this call, "
                "retry in a few seconds (MCP_LATENT_PROFILE_WAIT_SECONDS bounds each call's wait)."
            )
        if self._startup_error is not None:
            raise self._startup_error

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._startup_error is None

    @property
    def embedder(self) -> Embedder:
        self.wait_ready()
        assert self._embedder is not None
        return self._embedder

    def _fit_profiles(self) -> None:
        """Startup: every cached fit first (milliseconds each), then fit the rest, smallest first, so one large
        profile never holds up the small ones. A call for a profile not reached yet fits it in its own thread; the
        startup thread then waits for that fit before starting a larger one (else the small fit would share the
        cores with a large profile's embedding)."""
        pending = [live for live in self.live.values() if not live.load_cached()]
        if pending:
            # The fitting libraries import only when a profile needs a fit: with every fit cached, scipy and
            # scikit-learn (~1 CPU-second) would compete with the server's first calls.
            threading.Thread(target=preload_fitting, name="mcp-latent-imports", daemon=True).start()
        for live in sorted(pending, key=lambda p: p.exemplars * len(p.labels)):
            live.ensure_fitted()
            live.wait_fitted()

    def _persister(self, name: str) -> Callable[[str, str, str | None], TaughtExemplar | None]:
        """How a taught exemplar of this profile is stored: in the store (per data dir, or the shared database),
        an overlay: profile files, shipped ones above all, are never written."""
        return lambda label, text, teacher: self._store().add_taught(name, label, text, source="teach", teacher=teacher)

    def close(self) -> None:
        """Save indexes and close the store (waits for a startup in progress, so nothing is left half-open)."""
        if self._started:
            self._ready.wait(timeout=600)
        self.prefetch.close()
        self.writes.close()  # before the store closes: a write under way commits first
        if self.maintenance is not None:
            self.maintenance.stop()
            self.maintenance = None
        self.stats.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    def _learn_taught(self, exemplars: list[TaughtExemplar]) -> None:
        """Exemplars taught through the store since the last poll (from the maintenance thread), by other servers
        on it or by this one: each profile's owner adds those it does not know yet."""
        fresh: dict[str, list[tuple[str, str, int]]] = {}
        for exemplar in exemplars:
            fresh.setdefault(exemplar.profile, []).append((exemplar.label, exemplar.text, exemplar.id))
        for name, entries in fresh.items():
            live = self.live.get(name)  # one read: a profile deleted meanwhile is simply skipped
            if live is not None:
                live.learn_elsewhere(entries)

    def list_profiles(self) -> list[dict[str, Any]]:
        self.wait_ready()
        out = []
        for profile in self.registry.profiles.values():
            summary = profile.summary()
            live = self.live.get(profile.name)
            if live is not None:
                summary.update(exemplars=live.exemplars, taught=live.taught, **live.status())
                snapshot = live.snapshot
                if snapshot is not None:
                    summary.update(operating_summary(snapshot.calibration, profile.spec))
                    if live.stream.stream_threshold is not None:  # what the stream's verdicts asked for
                        summary["stream_threshold"] = round(live.stream.stream_threshold, 3)
                    served, source = snapshot.threshold(True)  # the one answered at (`judge.threshold`)
                    summary["threshold"], summary["threshold_source"] = round(served, 3), source
            out.append(summary)
        return out

    def skipped_profiles(self) -> list[dict[str, str]]:
        """Profile files that did not load, each with why (the file and the field): every one, not the first."""
        return [{"file": str(path), "error": error} for path, error in self.registry.skipped.items()]

    def profile_stats(self) -> dict[str, Any]:
        """Per profile: answered, escalated, taught, agreement from spot checks (every server on the data dir)."""
        totals = self.stats.summary()
        for name in self.registry.profiles:
            totals.setdefault(name, describe(dict.fromkeys(FIELDS, 0)))
        for name, live in self.live.items():  # this server's operating point and what its spot checks measured
            if name in totals:
                totals[name]["operating"] = live.spot_checks()
        taught_by_teacher(self._store(), totals)
        return {"stats": dict(sorted(totals.items()))}

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "ready": self.ready,
            "phase": self.phase,
            "startup_error": str(self._startup_error or "") or None,
        }
        if self.registry.skipped:
            info["skipped_profiles"] = self.skipped_profiles()
        if not self.ready:
            info["elapsed_s"] = round(time.monotonic() - self.started_at, 1)
        if self.ready:
            info.update(
                model=self.embedder.model_id,
                backend=self._embedder.backend,
                dim=self.embedder.dim,
                handoffs=self._store().count(),
                profiles={name: live.status() for name, live in sorted(self.live.items())},
                prefetch=self.prefetch.status(),
                ready_after_s=round(self.ready_after or 0.0, 3),
            )
            # Profiles a call would wait for (estimated within the wait) and that are not ready yet; a large one
            # estimated beyond it does not hold up the server (calls naming it get "fitting, ready in about N s").
            wait = self.settings.profile_wait_seconds
            pending = [n for n, live in sorted(self.live.items()) if live.waitable(wait)]
            info["profiles_ready"] = not pending
            if pending:
                info["phase"] = f"fitting profiles: {', '.join(pending)}"
        return info

    def _store(self) -> LatentStore:
        self.wait_ready()
        assert self.store is not None
        return self.store

    def _live(self, name: str) -> LiveProfile:
        live = self.live.get(name)
        if live is None:
            self.registry.get(name)  # raises NotFound naming the available profiles
            raise NotFound(f"profile {name!r} was just deleted; see `profiles`.")  # deleted between the two reads
        return live

    def fitted_profile(self, name: str, wait: float | None = None) -> FittedProfile:
        """The fit that verdicts of profile `name` are judged with now; before its first fit, waits up to `wait`
        seconds (None: until it is fitted, for library use)."""
        self.wait_ready()
        return self._live(name).fitted(wait)

    def wait_refitted(self, timeout: float = 300.0) -> bool:
        """Block until no profile has a background refit queued or running; False on timeout."""
        deadline = time.monotonic() + timeout
        return all(live.wait_refitted(max(0.0, deadline - time.monotonic())) for live in self.live.values())
