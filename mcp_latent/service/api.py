"""The library API: embed, handoff, evaluate, similar, teach as plain Python. The MCP tools wrap these 1:1.

Startup, readiness and shutdown live in `lifecycle.py` (`ServiceRuntime`); this module holds the calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mcp_latent.errors import InvalidInput, NotAllowed, NotFound, NotReady
from mcp_latent.judge.decision import OUT_OF_SCOPE
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.verdict import Verdict
from mcp_latent.service import handoffs
from mcp_latent.service.checks import check_meta, check_name, check_text, check_texts
from mcp_latent.service.lifecycle import ServiceRuntime
from mcp_latent.service.live_profile import Learned
from mcp_latent.service.namespaces import existing_namespace, export_namespace
from mcp_latent.service.teachers import current_teacher
from mcp_latent.store.base import Handoff, check_handle, check_namespace

log = logging.getLogger(__name__)


PREVIEW_CHARS = 120  # text shown per `similar` hit: enough to recognise it, cheap in tokens


class LatentService(ServiceRuntime):
    """The calls over one latent state (see `ServiceRuntime` for its lifecycle)."""

    # --- tools -----------------------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str], namespace: str | None = None, return_vectors: bool = False) -> dict[str, Any]:
        """Embed texts, store each as a handoff, return their handles (and vectors when asked)."""
        texts = check_texts(texts, self.settings)
        namespace = self._namespace(namespace)
        vectors = self.embedder.embed(texts)
        stored = self._store().add(namespace, vectors, self._texts_to_store(texts))
        self.prefetch.stored([r.vector for r in stored], [r.text or None for r in stored])  # as `evaluate` reads them
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
        deadline = time.monotonic() + self.settings.profile_wait_seconds  # the whole call's wait, startup included
        self.wait_ready(self.settings.profile_wait_seconds)
        names = self._named(evaluate)  # unknown names fail now, before anything is stored
        vector = self.embedder.embed([text])
        store, texts = self._store(), self._texts_to_store([text])

        def write() -> list[Handoff]:
            return store.add(namespace, vector, texts, from_agent, parent, meta)

        if not names:
            record = write()[0]
        else:
            # The write on a helper thread while this one computes the verdicts (`write_beside.py`); the call returns
            # only once it has committed, and a write that fails fails the call (nothing stored) as before. A profile
            # still fitting past the wait gets a note in its verdict's place, and so does one whose verdict failed:
            # the caller keeps the handle (it used to get an error, or a client timeout, and lose it).
            writing = self.writes.start(write)
            judged = self._judged_beside(names, deadline, vector[0], text, detail)
            record = writing.result()[0]
        result: dict[str, Any] = {"handle": record.handle}
        if names:
            self._served(judged["verdicts"], vector[0])  # counted once stored: a call that failed served nothing
            shown = self._shown(judged["verdicts"], detail)
            result["verdicts"] = {name: shown.get(name) or judged["notes"][name] for name in names}
        # After its own verdicts (so they are not computed twice): the recent profiles it did not name.
        self.prefetch.stored([record.vector], [record.text or None])
        return result

    def _judged_beside(
        self, names: list[str], deadline: float, vector: np.ndarray, text: str, detail: bool
    ) -> dict[str, Any]:
        """A handoff's verdicts, computed while its write runs: {"verdicts": {name: Verdict}, "notes": {name: what
        to show instead}}. Nothing is counted here (`_served`, once the write has committed). Never raises: the
        handle must reach the caller even when a verdict fails (a bug: logged, and said in its place)."""
        try:
            fitted, pending = self._fits(names, deadline)
            verdicts = self.verdicts.verdicts(fitted, vector, text, detail, self.settings.detail_neighbours)
            return {"verdicts": verdicts, "notes": pending}
        except Exception as exc:
            log.exception("a verdict of a handoff failed; the handoff is stored and its handle returned")
            note = (
                f"verdict failed ({type(exc).__name__}: {exc}); the handoff is stored: evaluate its handle again, "
                "and report it if it repeats."
            )
            return {"verdicts": {}, "notes": {name: {"label": None, "unsure": True, "error": note} for name in names}}

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
        deadline = time.monotonic() + self.settings.profile_wait_seconds  # the whole call's wait, startup included
        self.wait_ready(self.settings.profile_wait_seconds)
        names = self._named(profiles)
        record, vector = self._resolve(handle, text, namespace)
        fitted, pending = self._fits(names, deadline)
        verdicts = self._judge(fitted, vector, text if record is None else (record.text or None), detail)
        shown = self._shown(verdicts, detail)
        ordered = shown if names is None else {name: shown.get(name) or pending[name] for name in names}
        result: dict[str, Any] = {"verdicts": ordered}
        if names is None:
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

    def define_profile(
        self, name: str, description: str = "", labels: list[dict[str, Any]] | None = None, off_topic: bool = True
    ) -> dict[str, Any]:
        """Write (or replace) a user profile from labels with a few examples each; it fits in the background and
        abstains until cross-validation supports answers (see `user_profiles.ProfileEditor`)."""
        return self.editor.define(name, description, labels if labels is not None else [], off_topic)

    def delete_profile(self, name: str) -> dict[str, Any]:
        """Remove a user profile: its file and taught exemplars (shipped profiles are refused)."""
        return self.editor.delete(name)

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
        if item.added and item.was is not None:  # it had answered: the taught label is a spot check of that answer
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
        # A mistyped name is an error naming the namespaces there are, as the CLI's `namespaces drop` says it: a
        # success with `dropped: 0` read as if the intended namespace had gone.
        store = self._store()
        return {"namespace": namespace, "dropped": store.drop(existing_namespace(store, namespace))}

    def _named(self, names: Sequence[str] | str | None) -> list[str] | None:
        """The profiles a call names, checked (unknown names raise NotFound naming the others); None for "all"."""
        if names is None or names == []:
            return None
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise InvalidInput('`profiles` must be a list of profile names, e.g. ["risk", "roi"].')
        if len(names) > self.settings.max_profiles_per_call:
            raise InvalidInput(
                f"{len(names)} profiles named; at most {self.settings.max_profiles_per_call} per call "
                "(setting MCP_LATENT_MAX_PROFILES_PER_CALL)."
            )
        self.wait_ready()
        for name in names:
            self._live(name)
        return list(dict.fromkeys(names))

    def _fits(self, names: list[str] | None, deadline: float) -> tuple[dict[str, FittedProfile], dict[str, Any]]:
        """(fits to judge with, notes for the named profiles that are not ready): each profile is waited for while
        its fit is estimated to end before `deadline` (the call's share of `profile_wait_seconds`), and no longer.

        None ("all", the operator's choice: the per-call cap does not apply) takes every profile that is ready or
        ends within the wait; the others are listed in the result's `fitting` field instead of failing the call."""
        fitted: dict[str, FittedProfile] = {}
        pending: dict[str, Any] = {}
        # "All" is the profiles of one read of `live` (replaced whole on define/delete): a profile deleted meanwhile
        # is judged from that view instead of failing the call with "not found".
        every = self.live
        for name in sorted(every) if names is None else names:
            live = every[name] if names is None else self._live(name)
            left = max(0.0, deadline - time.monotonic())
            if names is None and not (live.ready or live.eta() <= left):
                continue
            try:
                fitted[name] = live.fitted(left)
            except NotReady as exc:
                if names is not None:  # named: a note inside the result (a handoff keeps its handle)
                    pending[name] = live.pending_verdict(str(exc))
        return fitted, pending

    def _judge(
        self, fitted: dict[str, FittedProfile], vector: np.ndarray, text: str | None, detail: bool
    ) -> dict[str, Verdict]:
        """Every named profile's verdict on one text (its words too, when known: None judges by the vector)."""
        show, memo = self.settings.detail_neighbours, self.verdicts  # memo: a snapshot's verdicts, never stale
        verdicts = memo.verdicts(fitted, vector, text, detail, show)  # several: one product over their exemplars
        self._served(verdicts, vector)
        return verdicts

    def _served(self, verdicts: dict[str, Verdict], vector: np.ndarray) -> None:
        """Record verdicts a call is served: usage stats, each profile's stream evidence, the prefetch's profiles."""
        self.prefetch.used(list(verdicts))  # served: these profiles judge the next texts stored ahead of time
        for name, verdict in verdicts.items():
            self.stats.record(name, "escalated" if verdict.unsure else "answered")
            live = self.live.get(name)
            if live is not None:  # the ensemble's p and best label (also where memory answered): the stream's evidence
                p, best = verdict.model or (verdict.p, verdict.best)
                live.stream.observe(vector, p, verdict.reason != OUT_OF_SCOPE, best)

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
