"""Numbered migrations of the PostgreSQL store's schema (one schema per latent state, `mcp_latent` by default).

`schema_migrations` records each applied version. The server applies pending migrations on start, under a
session advisory lock, so several servers starting at once against one database apply each exactly once.
Append new migrations at the end; never edit or renumber an applied one.

The vector column is created without a dimension: a schema can exist (and be read, empty) before any model
is known. The first server that stores with a model binds the column to its dimension and builds the HNSW index
(`bind_model`), in one transaction with the store_info row that records that model.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from mcp_latent.errors import StoreError

MIGRATION_LOCK = 0x6D63706C  # advisory lock key ("mcpl"): one migrating server at a time per database
COUNT_SHARDS = 16  # counter rows per namespace (handoff_counts): spreads concurrent writers' row locks

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "handoffs (namespace an indexed column, HNSW over cosine) and store info",
        [
            """CREATE TABLE handoffs (
                seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                handle     TEXT NOT NULL UNIQUE,
                namespace  TEXT NOT NULL,
                from_agent TEXT,
                created_at DOUBLE PRECISION NOT NULL,  -- seconds since the epoch, the database's clock
                parent     TEXT,
                meta       JSONB,
                text       TEXT,
                vector     vector NOT NULL             -- unit length; dimension bound by `bind_model`
            )""",
            "CREATE INDEX handoffs_by_namespace ON handoffs (namespace, seq)",
            "CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        "generations: one counter per scope, bumped by removals and teaches, polled by every server",
        [
            "CREATE TABLE generations (scope TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "CREATE INDEX generations_by_value ON generations (value)",
        ],
    ),
    (
        "taught exemplars",
        [
            """CREATE TABLE taught (
                id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the cursor of `taught(after=...)`
                profile    TEXT NOT NULL,
                label      TEXT NOT NULL,
                text       TEXT NOT NULL,
                source     TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                import_key TEXT UNIQUE
            )""",
            "CREATE INDEX taught_by_profile ON taught (profile, id)",
        ],
    ),
    (
        "handoff counts maintained by triggers (COUNT(*) over a large table reads all of it: /healthz polls it)",
        [
            # Counted under a lock that keeps writers out, so the counter starts equal to the table.
            "LOCK TABLE handoffs IN SHARE ROW EXCLUSIVE MODE",
            # One row per namespace and shard; a statement adds its delta to the shard of its backend, so
            # concurrent writers to one namespace rarely wait on one row. count = SUM(n), exact and transactional.
            """CREATE TABLE handoff_counts (
                namespace TEXT NOT NULL,
                shard     SMALLINT NOT NULL,
                n         BIGINT NOT NULL,
                PRIMARY KEY (namespace, shard)
            )""",
            f"""CREATE FUNCTION count_handoffs() RETURNS trigger LANGUAGE plpgsql
            SET search_path FROM CURRENT AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    INSERT INTO handoff_counts (namespace, shard, n)
                    SELECT namespace, pg_backend_pid() % {COUNT_SHARDS}, COUNT(*) FROM added
                    GROUP BY namespace ORDER BY namespace
                    ON CONFLICT (namespace, shard) DO UPDATE SET n = handoff_counts.n + excluded.n;
                ELSIF TG_OP = 'DELETE' THEN
                    INSERT INTO handoff_counts (namespace, shard, n)
                    SELECT namespace, pg_backend_pid() % {COUNT_SHARDS}, -COUNT(*) FROM removed
                    GROUP BY namespace ORDER BY namespace
                    ON CONFLICT (namespace, shard) DO UPDATE SET n = handoff_counts.n + excluded.n;
                ELSE  -- TRUNCATE
                    DELETE FROM handoff_counts;
                END IF;
                RETURN NULL;
            END $$""",
            "CREATE TRIGGER handoffs_count_inserts AFTER INSERT ON handoffs REFERENCING NEW TABLE AS added"
            " FOR EACH STATEMENT EXECUTE FUNCTION count_handoffs()",
            "CREATE TRIGGER handoffs_count_deletes AFTER DELETE ON handoffs REFERENCING OLD TABLE AS removed"
            " FOR EACH STATEMENT EXECUTE FUNCTION count_handoffs()",
            "CREATE TRIGGER handoffs_count_truncates AFTER TRUNCATE ON handoffs"
            " FOR EACH STATEMENT EXECUTE FUNCTION count_handoffs()",
            "INSERT INTO handoff_counts (namespace, shard, n) SELECT namespace, 0, COUNT(*) FROM handoffs"
            " GROUP BY namespace",
        ],
    ),
    (
        "who taught each exemplar, and reverts (an operator takes a poisoned teach back; the row stays, marked)",
        [
            "ALTER TABLE taught ADD COLUMN teacher TEXT",  # NULL: taught before teachers were recorded
            "ALTER TABLE taught ADD COLUMN reverted_at DOUBLE PRECISION",
            "ALTER TABLE taught ADD COLUMN reverted_by TEXT",
            "CREATE INDEX taught_by_teacher ON taught (teacher, created_at)",
        ],
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection, schema: str) -> list[int]:
    """Create the schema if needed and apply every pending migration, each in its own transaction.

    `conn` is in autocommit mode with `schema` first on its search_path. Returns the versions applied."""
    applied = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the database schema {schema!r} is version {current}, newer than this mcp-latent knows "
                f"({SCHEMA_VERSION}); upgrade mcp-latent or set another MCP_LATENT_STORE_SCHEMA."
            )
        for version, (name, statements) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                    (version, name, time.time()),
                )
            applied.append(version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


def bind_model(conn: psycopg.Connection, model_id: str, dim: int, m: int, ef_construction: int) -> dict[str, str]:
    """Record the model on first use (and bind the vector column to its dimension, with its HNSW index);
    returns the stored model info, for the caller to compare with its own."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        stored = dict(conn.execute("SELECT key, value FROM store_info").fetchall())
        if stored:
            return stored
        conn.execute("INSERT INTO store_info (key, value) VALUES ('model_id', %s), ('dim', %s)", (model_id, str(dim)))
        conn.execute(sql.SQL("ALTER TABLE handoffs ALTER COLUMN vector TYPE vector({})").format(sql.Literal(dim)))
        # One graph for every namespace; a search filters by namespace with pgvector's iterative scan. A namespace
        # much larger than the rest may get its own partial index (README, "Scale-out").
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS handoffs_by_vector ON handoffs USING hnsw (vector vector_cosine_ops)"
                " WITH (m = {}, ef_construction = {})"
            ).format(sql.Literal(m), sql.Literal(ef_construction))
        )
        return {"model_id": model_id, "dim": str(dim)}


def check_replica(conn: psycopg.Connection, where: str, schema: str, model_id: str | None, dim: int) -> tuple[str, int]:
    """On a read-only standby: the primary's schema must be this version and hold this model (or adopt it).
    Returns the model id and dimension to serve."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0] if exists else 0
    stored = dict(conn.execute("SELECT key, value FROM store_info").fetchall()) if exists else {}
    if version != SCHEMA_VERSION or not stored:
        raise StoreError(
            f"{where} is a read-only replica whose schema {schema!r} is at version {version} (this "
            f"mcp-latent needs {SCHEMA_VERSION}, with a model bound); start one server on the primary first."
        )
    if model_id is None:
        return stored["model_id"], int(stored["dim"])
    if stored["model_id"] != model_id or int(stored["dim"]) != dim:
        raise StoreError(
            f"the replica's schema {schema!r} at {where} holds vectors from model {stored['model_id']!r}"
            f" (dim {stored['dim']}), but this server embeds with {model_id!r} (dim {dim})."
        )
    return model_id, dim


def check_model(
    conn: psycopg.Connection, where: str, schema: str, model_id: str | None, dim: int, m: int, ef_construction: int
) -> tuple[str | None, int]:
    """On the primary: bind the schema to this model, or refuse one that holds another's vectors. Opened without a
    model, adopt the schema's (None / 0 while it holds none). Returns the model id and dimension to serve."""
    if model_id is None:
        stored = dict(conn.execute("SELECT key, value FROM store_info").fetchall())
        return stored.get("model_id"), int(stored.get("dim", 0))
    stored = bind_model(conn, model_id, dim, m, ef_construction)
    if stored["model_id"] != model_id or int(stored["dim"]) != dim:
        raise StoreError(
            f"the database schema {schema!r} at {where} holds vectors from model "
            f"{stored['model_id']!r} (dim {stored['dim']}), but this server embeds with {model_id!r} "
            f"(dim {dim}); set another MCP_LATENT_STORE_SCHEMA or use the same model."
        )
    return model_id, dim
