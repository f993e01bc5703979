"""The library API: embed, handoff, evaluate, similar, teach as plain Python. The MCP tools wrap these 1:1."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mcp_latent.embedding.base import CachedEmbedder, Embedder
from mcp_latent.embedding.factory import load_configured_embedder
from mcp_latent.errors import InvalidInput, LatentError, ModelError, NotAllowed, NotFound, NotReady
from mcp_latent.judge.decision import OUT_OF_SCOPE
from mcp_latent.judge.ensemble import preload as preload_fitting
from mcp_latent.judge.fitted import FittedProfile, Verdict
from mcp_latent.profiles.fitter import ProfileFitter
from mcp_latent.profiles.registry import ProfileRegistry, import_taught_logs
from mcp_latent.profiles.report import summary as operating_summary
from mcp_latent.service import handoffs
from mcp_latent.service.checks import check_meta, check_name, check_text, check_texts
from mcp_latent.service.live_profile import Learned, LiveProfile
from mcp_latent.service.maintenance import StoreMaintenance
from mcp_latent.service.namespaces import export_namespace
from mcp_latent.service.teachers import current_teacher, follow_reverts, taught_by_teacher
from mcp_latent.service.usage_stats import FIELDS, ProfileStats, describe
from mcp_latent.service.user_profiles import ProfileEditor
from mcp_latent.settings import Settings
from mcp_latent.store.base import Handoff, LatentStore, TaughtExemplar, check_handle, check_namespace
from mcp_latent.store.factory import open_store

log = logging.getLogger(__name__)


PREVIEW_CHARS = 120  # text shown per `similar` hit: enough to recognise it, cheap in tokens


class LatentService:
    """One latent state: an embedder, a store of handoffs and the fitted profiles."""

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

    def wait_ready(self, timeout: float = 300.0) -> None:
        if not self._ready.wait(timeout):
            raise ModelError(f"the embedding model is still loading after {timeout:.0f} s; retry shortly.")
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
        if self.maintenance is not None:
            self.maintenance.stop()
            self.maintenance = None
        self.stats.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    # --- tools -----------------------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str], namespace: str | None = None, return_vectors: bool = False) -> dict[str, Any]:
        """Embed texts, store each as a handoff, return their handles (and vectors when asked)."""
        texts = check_texts(texts, self.settings)
        namespace = self._namespace(namespace)
        vectors = self.embedder.embed(texts)
        stored = self._store().add(namespace, vectors, self._texts_to_store(texts))
        result: dict[str, Any] = {"handles": [r.handle for r in stored]}
        if return_vectors:
            result["dim"] = int(vectors.shape[1])
            result["vectors"] = [[round(float(v), 6) for v in row] for row in vectors]
        return result

    def handoff(
        self,
        text: str,
        from_agent: str | None = None,
        namespace: str | None = None,
        parent: str | None = None,
        evaluate: Sequence[str] | str | None = None,
        meta: dict[str, Any] | None = None,
        detail: bool = False,
    ) -> dict[str, Any]:
        """Embed once, store behind a handle, and (optionally) judge it with profiles in the same call."""
        text = check_text(text, self.settings)
        namespace = self._namespace(namespace)
        if parent is not None:
            check_handle(parent)
        meta = check_meta(meta, self.settings)
        if from_agent is not None and (not isinstance(from_agent, str) or len(from_agent) > 200):
            raise InvalidInput("`from_agent` must be a string of at most 200 characters (an agent's name).")
        fitted = self._profiles(evaluate, default_all=False)
        vector = self.embedder.embed([text])
        record = self._store().add(namespace, vector, self._texts_to_store([text]), from_agent, parent, meta)[0]
        result: dict[str, Any] = {"handle": record.handle}
        if fitted:
            result["verdicts"] = self._shown(self._judge(fitted, vector[0], text, detail), detail)
        return result

    def evaluate(
        self,
        handle: str | None = None,
        text: str | None = None,
        profiles: Sequence[str] | str | None = None,
        namespace: str | None = None,
        detail: bool = False,
        compare_parent: bool = False,
    ) -> dict[str, Any]:
        """Judge a stored handoff (by handle) or a new text against profiles."""
        namespace = self._namespace(namespace)
        fitted = self._profiles(profiles, default_all=True)
        record, vector = self._resolve(handle, text, namespace)
        verdicts = self._judge(fitted, vector, text if record is None else (record.text or None), detail)
        result: dict[str, Any] = {"verdicts": self._shown(verdicts, detail)}
        if profiles is None or profiles == []:
            fitting = sorted(set(self.live) - set(fitted))
            if fitting:
                result["fitting"] = fitting  # not ready yet: name them to wait for them, or retry later
        if compare_parent:
            result["parent"] = self._compare_parent(record, fitted, verdicts)
        return result

    def similar(
        self,
        handle: str | None = None,
        text: str | None = None,
        k: int = 5,
        namespace: str | None = None,
        from_agent: str | None = None,
        meta: dict[str, Any] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """The nearest earlier handoffs of a namespace, with cosine similarity; only those of `from_agent`, with
        these `meta` values, or written within [`since`, `until`) when given (see `handoffs.handoff_filter`)."""
        namespace = self._namespace(namespace)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.settings.max_k:
            raise InvalidInput(f"`k` must be an integer from 1 to {self.settings.max_k} (setting MCP_LATENT_MAX_K).")
        where = handoffs.handoff_filter(from_agent, meta, since, until)
        record, vector = self._resolve(handle, text, namespace)
        hits = self._store().similar(namespace, vector, k, exclude=record.handle if record else None, where=where)
        return {"similar": [self._hit(h, sim) for h, sim in hits]}

    def recent(
        self,
        limit: int = 10,
        namespace: str | None = None,
        from_agent: str | None = None,
        meta: dict[str, Any] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """The newest handoffs of a namespace, newest first, compact (handle, sender, time, text preview)."""
        where = handoffs.handoff_filter(from_agent, meta, since, until)
        return handoffs.recent(self, limit, self._namespace(namespace), where)

    def forget(
        self, handle: str | None = None, from_agent: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """Remove one handoff, or every handoff of one agent in a namespace, for every server on the store."""
        return handoffs.forget(self, handle, from_agent, self._namespace(namespace))

    def teach(
        self,
        profile: str | None = None,
        label: str | None = None,
        handle: str | None = None,
        text: str | None = None,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        teacher: str | None = None,
    ) -> dict[str, Any]:
        """Record a decision as exemplars: `label` for `profile`, or a {profile: label} map for several at once.
        Counted from the next verdict. When a profile had answered, the taught label also counts as agreement
        (same label) or disagreement (another label) with it: a spot check. `teacher` is recorded with each
        exemplar (default: the caller the transport authenticated, see `teachers.current_teacher`)."""
        self.wait_ready()
        teacher = teacher or current_teacher(self.settings)
        decisions = self._decisions(profile, label, labels)
        namespace = self._namespace(namespace)
        targets = {name: self._live(name) for name in decisions}
        for name, live in targets.items():
            if live.builtin and not self.settings.allow_teach_builtin:
                raise NotAllowed(
                    f"profile {name!r} is shipped with mcp-latent and this server keeps shipped profiles read-only "
                    "(MCP_LATENT_ALLOW_TEACH_BUILTIN=false); teach a profile of your own instead."
                )
            if decisions[name] not in live.labels:
                raise InvalidInput(
                    f"label {decisions[name]!r} is not in profile {name!r}; labels: {', '.join(live.labels)}."
                )
        record, vector = self._resolve(handle, text, namespace)
        exemplar = text if record is None else record.text
        if not exemplar:
            raise InvalidInput(
                "that handle has no stored text (MCP_LATENT_STORE_TEXT is off); pass the exemplar as `text`."
            )
        learned = {name: live.teach(decisions[name], exemplar, vector, teacher) for name, live in targets.items()}
        for item in learned.values():
            self._count_teach(item)
        return {"taught": {name: self._learned(item) for name, item in learned.items()}}

    def _decisions(self, profile: Any, label: Any, labels: Any) -> dict[str, str]:
        if labels is not None:
            if profile is not None or label is not None:
                raise InvalidInput("pass either `profile` and `label`, or `labels` ({profile: label}), not both.")
            if not isinstance(labels, dict) or not labels:
                raise InvalidInput('`labels` must be a non-empty object of profile -> label, e.g. {"risk": "high"}.')
            if len(labels) > self.settings.max_profiles_per_call:
                raise InvalidInput(
                    f"{len(labels)} profiles named; at most {self.settings.max_profiles_per_call} per call "
                    "(setting MCP_LATENT_MAX_PROFILES_PER_CALL)."
                )
            for name, value in labels.items():
                check_name(value, f"labels[{name!r}]")
            return dict(labels)
        if profile is None and label is None:
            raise InvalidInput("pass `profile` and `label`, or `labels` ({profile: label}) for several profiles.")
        return {check_name(profile, "profile"): check_name(label, "label")}

    def _count_teach(self, item: Learned) -> None:
        if item.added:
            self.stats.record(item.profile, "taught")
        if item.was is not None:  # the profile had answered: the taught label is a spot check of that answer
            self.stats.record(item.profile, "agreed" if item.was == item.label else "disagreed")

    @staticmethod
    def _learned(item: Learned) -> dict[str, Any]:
        out: dict[str, Any] = {"label": item.label, "exemplars": item.exemplars}
        if not item.added:
            out["added"] = False  # already an exemplar with this label
        if item.was is not None:
            out["agreed"] = item.was == item.label
        return out

    def get(self, handle: str, namespace: str | None = None) -> dict[str, Any]:
        """A stored handoff's text and provenance, so a model can reason about an unsure verdict without the text
        having been passed to it (empty fields are left out to keep the result small)."""
        record = self._store().get(handle, self._namespace(namespace))
        fields = {
            "handle": record.handle,
            "text": record.text,
            "from_agent": record.from_agent,
            "parent": record.parent,
            "meta": record.meta,
            "created_at": round(record.created_at, 3),
        }
        if record.text is None:
            fields["note"] = "no text stored (MCP_LATENT_STORE_TEXT is off)"
        return {key: value for key, value in fields.items() if value is not None}

    def namespaces(self) -> dict[str, Any]:
        """Every namespace with its handoff count and age range."""
        return {"namespaces": self._store().namespaces()}

    def export_namespace(self, namespace: str) -> Iterator[dict[str, Any]]:
        """Every record of a namespace as JSON-able dicts (vectors included), oldest first."""
        return export_namespace(self._store(), namespace)

    def drop_namespace(self, namespace: str) -> dict[str, Any]:
        """Delete a namespace's handoffs and index."""
        return {"namespace": namespace, "dropped": self._store().drop(check_namespace(namespace))}

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
                    if live.stream_threshold is not None:  # what the stream's verdicts asked for
                        summary["stream_threshold"] = round(live.stream_threshold, 3)
                    served, source = snapshot.threshold(True)  # the one answered at (`judge.threshold`)
                    summary["threshold"], summary["threshold_source"] = round(served, 3), source
            out.append(summary)
        return out

    def define_profile(
        self, name: str, description: str = "", labels: list[dict[str, Any]] | None = None, off_topic: bool = True
    ) -> dict[str, Any]:
        """Write (or replace) a user profile from labels with a few examples each; it fits in the background and
        abstains until cross-validation supports answers (see `user_profiles.ProfileEditor`)."""
        return self.editor.define(name, description, labels if labels is not None else [], off_topic)

    def delete_profile(self, name: str) -> dict[str, Any]:
        """Remove a user profile: its file and taught exemplars (shipped profiles are refused)."""
        return self.editor.delete(name)

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
        if not self.ready:
            info["elapsed_s"] = round(time.monotonic() - self.started_at, 1)
        if self.ready:
            info.update(
                model=self.embedder.model_id,
                backend=self._embedder.backend,
                dim=self.embedder.dim,
                handoffs=self._store().count(),
                profiles={name: live.status() for name, live in sorted(self.live.items())},
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

    def is_quick(self, text: Any = None, profiles: Any = None) -> bool:
        """True when a read needs no model call and no fit (tens of microseconds): safe to run inline."""
        if not self.ready or (text is not None and not (isinstance(text, str) and self._embedder.is_cached(text))):
            return False
        names = self.live if profiles is None else profiles
        return isinstance(names, (list, tuple, dict)) and all(
            isinstance(name, str) and name in self.live and self.live[name].ready for name in names
        )

    # --- helpers ---------------------------------------------------------------------------------------------

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

    def _profiles(self, names: Sequence[str] | str | None, default_all: bool) -> dict[str, FittedProfile]:
        self.wait_ready()
        if names is None or names == []:
            # "All" is the operator's choice of profiles, not the caller's list: the per-call cap does not apply.
            if not default_all:
                return {}
            # Every profile that is ready, or will be within the wait; the rest are named in the `fitting` field
            # of the result instead of failing the whole call.
            wait = self.settings.profile_wait_seconds
            ready: dict[str, FittedProfile] = {}
            for name, live in sorted(self.live.items()):
                if live.ready or live.eta() <= wait:
                    with contextlib.suppress(NotReady):
                        ready[name] = live.fitted(wait)
            return ready
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise InvalidInput('`profiles` must be a list of profile names, e.g. ["risk", "roi"].')
        if len(names) > self.settings.max_profiles_per_call:
            raise InvalidInput(
                f"{len(names)} profiles named; at most {self.settings.max_profiles_per_call} per call "
                "(setting MCP_LATENT_MAX_PROFILES_PER_CALL)."
            )
        wait = self.settings.profile_wait_seconds
        return {name: self._live(name).fitted(wait) for name in dict.fromkeys(names)}

    def _judge(
        self, fitted: dict[str, FittedProfile], vector: np.ndarray, text: str | None, detail: bool
    ) -> dict[str, Verdict]:
        """Every named profile's verdict on one text (its words too, when known: None judges by the vector)."""
        show = self.settings.detail_neighbours
        verdicts = {name: profile.verdict(vector, text, detail, show) for name, profile in fitted.items()}
        for name, verdict in verdicts.items():
            self.stats.record(name, "escalated" if verdict.unsure else "answered")
            live = self.live.get(name)
            if live is not None:  # the ensemble's p and best label (also where memory answered): the stream's evidence
                p, best = verdict.model or (verdict.p, verdict.best)
                live.observe(vector, p, verdict.reason != OUT_OF_SCOPE, best)
        return verdicts

    @staticmethod
    def _shown(verdicts: dict[str, Verdict], detail: bool) -> dict[str, Any]:
        return {name: verdict.detailed() if detail else verdict.compact() for name, verdict in verdicts.items()}

    def _compare_parent(
        self, record: Handoff | None, fitted: dict[str, FittedProfile], verdicts: dict[str, Verdict]
    ) -> dict[str, Any] | None:
        """How each verdict moved against the parent handoff's (None without a parent)."""
        if record is None or record.parent is None:
            return None
        try:
            parent = self._store().get(record.parent, record.namespace)
        except NotFound:  # retention or a drop removed it since: say so instead of failing the whole call
            return {"handle": record.parent, "stored": False, "note": "the parent is no longer stored (retention)"}
        changes: dict[str, Any] = {}
        for name, profile in fitted.items():
            was, now = profile.verdict(parent.vector, parent.text or None), verdicts[name]
            change: dict[str, Any] = {"was": was.label, "dp": round(now.p - was.p, 2)}
            if now.score is not None and was.score is not None:
                change["dscore"] = round(now.score - was.score, 2)
            change["changed"] = was.label != now.label
            changes[name] = change
        similarity = float(np.dot(parent.vector, record.vector))
        return {"handle": parent.handle, "similarity": round(similarity, 3), "delta": changes}

    def _resolve(self, handle: str | None, text: str | None, namespace: str) -> tuple[Handoff | None, np.ndarray]:
        if (handle is None) == (text is None):
            raise InvalidInput("pass exactly one of `handle` (from `handoff`/`embed`) or `text`.")
        if handle is not None:
            record = self._store().get(handle, namespace)
            return record, record.vector
        return None, self.embedder.embed([check_text(text, self.settings)])[0]

    def _hit(self, record: Handoff, similarity: float) -> dict[str, Any]:
        hit: dict[str, Any] = {"handle": record.handle, "similarity": round(similarity, 3)}
        if record.from_agent:
            hit["from_agent"] = record.from_agent
        if record.text:
            hit["text"] = record.text[:PREVIEW_CHARS] + ("…" if len(record.text) > PREVIEW_CHARS else "")
        return hit

    def _texts_to_store(self, texts: list[str]) -> list[str | None]:
        return list(texts) if self.settings.store_text else [None] * len(texts)

    def _namespace(self, namespace: str | None) -> str:
        return check_namespace(self.settings.default_namespace if namespace is None else namespace)
