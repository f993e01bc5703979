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
from collections.abc import Iterator, Sequence
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
    source: str | None  # who or what taught it: "teach", "import:<file>", an agent or host name
    created_at: float


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
    - `drop` removes a namespace; `compact` applies a cap (keep the newest `max_records`) and/or a TTL to one
      namespace; `retention` applies them to every namespace. Each bumps the namespace's generation when it
      removed something, in the same transaction.

    Taught exemplars
    - `add_taught` appends one exemplar for (profile, label) and bumps the profile's generation in the same
      transaction. With an `import_key` it is idempotent: a key already stored returns None and adds nothing.
    - `taught(after=cursor, profile=None)` returns exemplars with `id > after`, in id order (all profiles or one).

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
        self, namespace: str, vector: np.ndarray, k: int, exclude: str | None = None
    ) -> list[tuple[Handoff, float]]: ...

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
        self, profile: str, label: str, text: str, source: str | None = None, import_key: str | None = None
    ) -> TaughtExemplar | None: ...

    @abstractmethod
    def taught(self, after: int = 0, profile: str | None = None) -> list[TaughtExemplar]: ...

    @abstractmethod
    def changes(self, after: int = 0) -> Changes: ...

    @abstractmethod
    def close(self) -> None: ...
