"""How the PostgreSQL backend talks to the database: pgvector's binary vector format, rows into `Handoff`s, a
`HandoffFilter` into SQL, the pgvector extension at open, and psycopg's errors into `StoreError`s that say what to
do. Plain functions and psycopg adapters; the store's state lives in `store/postgres.py`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psycopg
from psycopg.adapt import AdaptersMap, Dumper, Loader
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from mcp_latent.errors import LatentError, StoreError
from mcp_latent.store.base import Handoff, HandoffFilter

log = logging.getLogger(__name__)

COLUMNS = "seq, handle, namespace, from_agent, created_at, parent, meta, text, vector"
# One row per namespace that holds handoffs; first/last by seq (insertion order) through handoffs_by_namespace.
NAMESPACES_SQL = (
    "SELECT c.namespace, c.total,"
    " (SELECT created_at FROM handoffs h WHERE h.namespace = c.namespace ORDER BY h.seq LIMIT 1),"
    " (SELECT created_at FROM handoffs h WHERE h.namespace = c.namespace ORDER BY h.seq DESC LIMIT 1)"
    " FROM (SELECT namespace, SUM(n)::bigint AS total FROM handoff_counts GROUP BY namespace HAVING SUM(n) > 0) c"
    " ORDER BY c.namespace"
)
_PGVECTOR_SCHEMA = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"


# --- pgvector's binary format: uint16 dim, uint16 unused, dim big-endian float32 ------------------------------


class _VectorDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: np.ndarray) -> bytes:
        return struct.pack(">HH", obj.shape[0], 0) + obj.astype(">f4", copy=False).tobytes()


class _VectorLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        return np.frombuffer(bytes(data)[4:], dtype=">f4").astype(np.float32)


def vector_adapters(vector_oid: int) -> AdaptersMap:
    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_dumper(np.ndarray, type("VectorDumper", (_VectorDumper,), {"oid": vector_oid}))
    adapters.register_loader(vector_oid, _VectorLoader)
    return adapters


def handoff_from_row(row: tuple) -> Handoff:
    seq, handle, namespace, from_agent, created_at, parent, meta, text, vector = row
    return Handoff(seq, handle, namespace, from_agent, created_at, parent, meta, text, vector)


def filter_sql(where: HandoffFilter | None) -> tuple[str, list[Any]]:
    """` AND ...` conditions (and their parameters) that keep the records matching `where`."""
    if where is None or where.empty:
        return "", []
    conditions, params = [], []
    if where.from_agent is not None:
        conditions.append("from_agent = %s")
        params.append(where.from_agent)
    if where.since is not None:
        conditions.append("created_at >= %s")
        params.append(float(where.since))
    if where.until is not None:
        conditions.append("created_at < %s")
        params.append(float(where.until))
    if where.meta:
        # jsonb containment of a one-level object: equal scalars per key, JSON types kept ("1" is not 1).
        conditions.append("meta @> %s")
        params.append(Jsonb(dict(where.meta)))
    return "".join(" AND " + condition for condition in conditions), params


def describe_url(url: str) -> str:
    """host:port/database of a libpq URL, without the credentials (for error messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path or '/'}"


def ensure_pgvector(conn: psycopg.Connection) -> str:
    """The schema pgvector lives in, creating the extension when this role may."""
    row = conn.execute(_PGVECTOR_SCHEMA).fetchone()
    if row is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.UniqueViolation:
            pass  # another server created it at the same moment (IF NOT EXISTS does not guard that race)
        except psycopg.Error as exc:
            raise StoreError(
                f"the database has no pgvector extension and this role may not create it ({exc}); "
                "ask its administrator to run `CREATE EXTENSION vector;` (pgvector 0.8 or newer)."
            ) from exc
        row = conn.execute(_PGVECTOR_SCHEMA).fetchone()
    return row[0]


@contextmanager
def translated_errors(action: str, where: str, statement_timeout_s: float, unreachable_hint: str) -> Iterator[None]:
    """Translate psycopg and pool errors of one store action into StoreError, saying what to do."""
    try:
        yield
    except LatentError:
        raise
    except psycopg.errors.QueryCanceled as exc:
        log.warning("latent store: could not %s: %s", action, exc)
        raise StoreError(
            f"the latent store could not {action}: the database took longer than "
            f"MCP_LATENT_STORE_STATEMENT_TIMEOUT_SECONDS ({statement_timeout_s:g} s) and the statement was "
            "cancelled; nothing acknowledged was lost, retry the call."
        ) from exc
    except (PoolTimeout, psycopg.OperationalError) as exc:
        log.warning("latent store: could not %s: %s", action, exc)
        raise StoreError(
            f"the latent store could not {action}: PostgreSQL at {where} is unreachable or restarting "
            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
            f"{unreachable_hint}: retry in a few seconds. Nothing acknowledged was lost."
        ) from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise StoreError(
            f"the latent store could not {action}: {where} is a read-only replica; send writes to a server "
            "on the primary (a server on a replica should run with MCP_LATENT_READ_ONLY=true)."
        ) from exc
    except psycopg.Error as exc:
        log.warning("latent store: could not %s: %s", action, exc)
        raise StoreError(
            f"the latent store could not {action}: {str(exc).strip()}; nothing acknowledged was lost, retry the call."
        ) from exc
