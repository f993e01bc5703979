"""The storage interface the engine owns: what any backend of the latent state must promise, and how one is opened.

The engine (service, fitter, learning loop) talks only to `LatentStore`. The embedded default is
`SqliteStore` (SQLite in WAL mode + per-namespace hnswlib indexes, `sqlite_store.py`); a shared backend
(PostgreSQL + pgvector) implements the same protocol and is chosen by a setting in `open_store`.
The contract is written in `LatentStore`'s docstring (an ABC: arguments common to every backend are checked
once, in its concrete methods); `tests/test_store_contract.py` checks it against every backend."""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mcp_latent.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    pass


HANDLE_PREFIX = "h_"


_HANDLE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o/1/l: handles get read aloud and retyped


_HANDLE_BODY = 10  # 32**10 = 2**50 possibilities: short, and unguessable enough to not leak across namespaces


HANDLE_RE = re.compile(rf"^{HANDLE_PREFIX}[{_HANDLE_ALPHABET}]{{{_HANDLE_BODY}}}$")  # what `handoff` issues


# What a caller is told a handle looks like ('h_' + 10 letters/digits): a string of that shape is looked up and
# answered "not found" when absent, even with letters handles never use (0/o/1/l, capitals); "malformed" is kept
# for strings that do not have the documented shape at all.
HANDLE_SHAPE = re.compile(rf"^{HANDLE_PREFIX}[A-Za-z0-9]{{{_HANDLE_BODY}}}$")


NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


# Change scopes (see `LatentStore.changes`): one generation per namespace's handoffs and per profile's taught set.
HANDOFFS_SCOPE = "handoffs:"


TAUGHT_SCOPE = "taught:"


REVERTED_SCOPE = "reverted:"  # a profile's taught exemplars were reverted: its owners drop them


UNKNOWN_TEACHER = "(unknown)"  # how exemplars taught before teachers were recorded are counted and shown


def new_handle() -> str:
    return HANDLE_PREFIX + "".join(secrets.choice(_HANDLE_ALPHABET) for _ in range(_HANDLE_BODY))


def check_handle(handle: str) -> str:
    if not isinstance(handle, str) or not HANDLE_SHAPE.match(handle):
        raise InvalidInput(
            f"malformed handle {str(handle)[:40]!r}: handles look like 'h_' + 10 letters/digits "
            "(e.g. 'h_k3v9x2m4qp'); pass a handle returned by `handoff` or `embed`."
        )
    return handle


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
        raise InvalidInput(
            f"invalid namespace {str(namespace)[:80]!r}: use 1-64 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit."
        )
    return namespace


@dataclass
class Handoff:
    """One stored handoff."""

    seq: int  # store-wide, increasing with commit order within a namespace's writer; the index label
    handle: str
    namespace: str
    from_agent: str | None
    created_at: float
    parent: str | None
    meta: dict[str, Any] | None
    text: str | None
    vector: np.ndarray = field(repr=False)

    def public(self) -> dict[str, Any]:
        """The record as JSON-able data (no vector)."""
        return {
            "handle": self.handle,
            "namespace": self.namespace,
            "from_agent": self.from_agent,
            "created_at": self.created_at,
            "parent": self.parent,
            "meta": self.meta,
            "text": self.text,
        }


@dataclass(frozen=True)
class TaughtExemplar:
    """One exemplar taught to a profile at run time (the profile file itself is never rewritten)."""

    id: int  # store-wide and increasing: the cursor for `taught(after=...)`
    profile: str
    label: str
    text: str
    source: str | None  # how it was taught: "teach", "import:<file>"
    created_at: float
    teacher: str | None = None  # who taught it: a token's name, the stdio user; None before teachers were recorded

    @property
    def taught_at(self) -> float:
        """When it was taught (seconds since the epoch; the database's clock on PostgreSQL)."""
        return self.created_at

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "profile": self.profile,
            "label": self.label,
            "text": self.text,
            "teacher": self.teacher,
            "taught_at": round(self.created_at, 3),
        }


@dataclass(frozen=True)
class Changes:
    """What changed in the shared state after a cursor: each changed scope with its new generation."""

    cursor: int  # pass it to the next `changes()` call
    scopes: dict[str, int]

    @property
    def namespaces(self) -> set[str]:
        """Namespaces whose records were removed (compaction, retention or drop): indexes must be repaired."""
        return {s[len(HANDOFFS_SCOPE) :] for s in self.scopes if s.startswith(HANDOFFS_SCOPE)}

    @property
    def profiles(self) -> set[str]:
        """Profiles that were taught something: their fits are stale."""
        return {s[len(TAUGHT_SCOPE) :] for s in self.scopes if s.startswith(TAUGHT_SCOPE)}

    @property
    def reverted(self) -> set[str]:
        """Profiles some of whose taught exemplars were reverted: their owners must drop them."""
        return {s[len(REVERTED_SCOPE) :] for s in self.scopes if s.startswith(REVERTED_SCOPE)}


MetaValue = str | int | float | bool


@dataclass(frozen=True)
class HandoffFilter:
    """Which handoffs of a namespace a `similar` or `recent` call considers: every condition set must hold.

    `meta` matches top-level keys of a handoff's meta exactly (JSON equality of scalars: "1" is not 1, true is
    not 1); `since`/`until` bound `created_at` (unix seconds, since inclusive, until exclusive)."""

    from_agent: str | None = None
    meta: dict[str, MetaValue] | None = None
    since: float | None = None
    until: float | None = None

    @property
    def empty(self) -> bool:
        return self.from_agent is None and not self.meta and self.since is None and self.until is None

    def matches(self, record: Handoff) -> bool:
        """The same test in Python (the backends run it in SQL): for checks and tests."""
        if self.from_agent is not None and record.from_agent != self.from_agent:
            return False
        if self.since is not None and record.created_at < self.since:
            return False
        if self.until is not None and record.created_at >= self.until:
            return False
        for key, value in (self.meta or {}).items():
            stored = (record.meta or {}).get(key, _MISSING)
            if stored is _MISSING or type(stored) is bool or type(value) is bool:
                if not (type(stored) is bool and type(value) is bool and stored == value):
                    return False
            elif isinstance(value, str) != isinstance(stored, str) or stored != value:
                return False
        return True


_MISSING = object()


@dataclass(frozen=True)
class NewHandoffs:
    """Checked arguments of one `add` call, handed to the backend's `_insert`."""

    namespace: str
    vectors: np.ndarray  # float32, C-contiguous, shape (n, dim)
    texts: list[str | None]
    from_agent: str | None
    parent: str | None
    meta: dict[str, Any] | None


class LatentStore(ABC):
    """The durable latent state shared by every server on one data dir (or one database).

    Contract (every backend; `tests/test_store_contract.py`):

    Handoffs
    - `add` stores one record per vector in ONE transaction and returns them only after it commits: a returned
      record is acknowledged and survives kill -9 of any process. A parent is checked inside that transaction
      (it must exist in the same namespace, else NotFound and nothing is written). Once committed, `add` never
      raises: a failure of a derived structure (an index) is logged and repaired on the next read.
    - `get` returns the record behind a handle in that namespace, or raises NotFound (a handle of another
      namespace is as absent as a made-up one); a malformed handle raises InvalidInput.
    - `similar` returns up to `k` records of one namespace nearest to a unit vector, best first, with cosine
      similarity in [-1, 1], never a record another process removed, and every committed record of the namespace
      (by any process) as a candidate.
    - `count` (exact, from counters kept in the write transactions: cheap at any size, `/healthz` polls it),
      `namespaces` (name, count, oldest, newest), `export` (oldest first, streamed).
    - `similar` and `recent` take a `HandoffFilter` (agent, meta key/values, time window): only matching records
      are candidates, and a filtered `similar` is as complete as an unfiltered one (k matches when k exist).
    - `recent` returns the newest records of a namespace, newest first.
    - `forget` removes one handle, or every record of one agent, from a namespace: gone from the record and
      from every process's index (its namespace's generation moves in the same transaction, like `drop`).
    - `drop` removes a namespace; `compact` applies a cap (keep the newest `max_records`) and/or a TTL to one
      namespace; `retention` applies them to every namespace. Each bumps the namespace's generation when it
      removed something, in the same transaction.

    Taught exemplars
    - `add_taught` appends one exemplar for (profile, label) and bumps the profile's generation in the same
      transaction. With an `import_key` it is idempotent: a key already stored returns None and adds nothing.
    - `taught(after=cursor, profile=None)` returns exemplars with `id > after`, in id order (all profiles or one).
    - `drop_taught(profile)` removes every exemplar taught to a profile (a deleted profile); returns how many.
    - `taught(after=cursor, profile=None)` returns exemplars with `id > after`, in id order (all profiles or one),
      never a reverted one. Each records its `teacher` (None when taught before teachers were recorded).
    - `find_taught(profile, teacher, since, until)` lists the exemplars not reverted that match every filter given
      (`since` <= taught_at < `until`), in id order; `revert_taught(ids, reverted_by)` marks those of the ids not yet
      reverted as reverted (kept, for the record; never returned by `taught` again, and an `import_key` stays
      taken so a re-import does not bring one back), bumps `reverted:<profile>` for each profile touched in the
      same transaction, and returns them. `taught_counts()`: {profile: {teacher: exemplars not reverted}}.

    Changes
    - `changes(after=cursor)` is a cheap poll (one indexed read): the scopes (`handoffs:<ns>`, `taught:<profile>`)
      whose generation moved after the cursor, and the new cursor. Plain inserts do not move a generation:
      readers find new records by their own means (`seq`), so the poll stays quiet under normal write load.

    Errors: every method raises only the project's errors (errors.py): StoreError for the backend failing (the
    message says what to do; nothing acknowledged was lost), NotFound, InvalidInput. Lower-layer errors are
    logged and translated at this boundary.

    Threads: every method may be called from any thread at once; the backend owns its connections and locks.
    """

    dim: int  # 0 when opened without a model on a data dir that holds none yet
    model_id: str | None

    def add(
        self,
        namespace: str,
        vectors: np.ndarray,
        texts: Sequence[str | None],
        from_agent: str | None = None,
        parent: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> list[Handoff]:
        """Store one record per vector in a single transaction; returns them once committed (= acknowledged)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(texts) != len(vectors):
            raise StoreError(
                f"{len(texts)} texts with vectors of shape {vectors.shape} do not fit this store (dim {self.dim})"
            )
        if parent is not None:
            check_handle(parent)
        return self._insert(NewHandoffs(namespace, vectors, list(texts), from_agent, parent, meta))

    @abstractmethod
    def _insert(self, new: NewHandoffs) -> list[Handoff]:
        """`add` after its arguments are checked."""

    @abstractmethod
    def get(self, handle: str, namespace: str) -> Handoff: ...

    @abstractmethod
    def similar(
        self,
        namespace: str,
        vector: np.ndarray,
        k: int,
        exclude: str | None = None,
        where: HandoffFilter | None = None,
    ) -> list[tuple[Handoff, float]]: ...

    @abstractmethod
    def recent(self, namespace: str, limit: int, where: HandoffFilter | None = None) -> list[Handoff]: ...

    def forget(self, namespace: str, handle: str | None = None, from_agent: str | None = None) -> int:
        """Remove one handle, or every record `from_agent` wrote, from a namespace; returns how many went (0: none
        matched). Exactly one of `handle` and `from_agent`."""
        if (handle is None) == (from_agent is None):
            raise InvalidInput("pass exactly one of `handle` or `from_agent` to forget.")
        if handle is not None:
            check_handle(handle)
        return self._forget(namespace, handle, from_agent)

    @abstractmethod
    def _forget(self, namespace: str, handle: str | None, from_agent: str | None) -> int:
        """`forget` after its arguments are checked."""

    @abstractmethod
    def count(self, namespace: str | None = None) -> int: ...

    @abstractmethod
    def namespaces(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def export(self, namespace: str) -> Iterator[Handoff]: ...

    @abstractmethod
    def drop(self, namespace: str) -> int: ...

    @abstractmethod
    def compact(self, namespace: str, max_records: int | None = None, ttl_seconds: float | None = None) -> int: ...

    @abstractmethod
    def retention(self, max_records: int | None = None, ttl_seconds: float | None = None) -> dict[str, int]: ...

    @abstractmethod
    def add_taught(
        self,
        profile: str,
        label: str,
        text: str,
        source: str | None = None,
        import_key: str | None = None,
        teacher: str | None = None,
    ) -> TaughtExemplar | None: ...

    @abstractmethod
    def taught(self, after: int = 0, profile: str | None = None) -> list[TaughtExemplar]: ...

    def find_taught(
        self,
        profile: str | None = None,
        teacher: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[TaughtExemplar]:
        """Exemplars not reverted matching every filter given, in id order (operator tools: list, then revert)."""
        where, params = _taught_filter(profile, teacher, since, until)
        return self._select_taught(where, params)

    @abstractmethod
    def _select_taught(self, where: list[str], params: list[Any]) -> list[TaughtExemplar]:
        """Rows of `taught` not reverted, matching every condition of `where` (with `?` placeholders), by id."""

    @abstractmethod
    def revert_taught(self, ids: Sequence[int], reverted_by: str | None = None) -> list[TaughtExemplar]: ...

    @abstractmethod
    def taught_counts(self) -> dict[str, dict[str, int]]: ...

    @abstractmethod
    def drop_taught(self, profile: str) -> int: ...

    @abstractmethod
    def changes(self, after: int = 0) -> Changes: ...

    @abstractmethod
    def close(self) -> None: ...


TAUGHT_COLUMNS = "id, profile, label, text, source, created_at, teacher"
# Both backends' `taught_counts` query: exemplars not reverted, per profile and teacher.
TAUGHT_COUNTS_SQL = "SELECT profile, teacher, COUNT(*) FROM taught WHERE reverted_at IS NULL GROUP BY profile, teacher"


def counts_by_teacher(rows: Iterable[tuple[str, str | None, int]]) -> dict[str, dict[str, int]]:
    """{profile: {teacher: exemplars}} from (profile, teacher, count) rows; no teacher reads UNKNOWN_TEACHER."""
    counts: dict[str, dict[str, int]] = {}
    for profile, teacher, n in rows:
        counts.setdefault(profile, {})[teacher or UNKNOWN_TEACHER] = n
    return counts


def _taught_filter(
    profile: str | None, teacher: str | None, since: float | None, until: float | None
) -> tuple[list[str], list[Any]]:
    """SQL conditions (with `?` placeholders; a backend swaps its own in) for `find_taught`'s filters. The
    teacher UNKNOWN_TEACHER selects exemplars taught before teachers were recorded."""
    where: list[str] = []
    params: list[Any] = []
    if profile is not None:
        where.append("profile = ?")
        params.append(profile)
    if teacher == UNKNOWN_TEACHER:
        where.append("teacher IS NULL")
    elif teacher is not None:
        where.append("teacher = ?")
        params.append(teacher)
    if since is not None:
        where.append("created_at >= ?")
        params.append(float(since))
    if until is not None:
        where.append("created_at < ?")
        params.append(float(until))
    return where, params
