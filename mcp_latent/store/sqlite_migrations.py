"""Numbered migrations of the embedded store's SQLite schema, from the first table on.

`schema_migrations` records each applied version. Migration 1 is the schema the store had before versioning
(every statement `IF NOT EXISTS`), so a data dir written by an older mcp-latent migrates in place. Append new
migrations at the end; never edit or renumber an applied one.
"""

from __future__ import annotations

import sqlite3
import time

from mcp_latent.errors import StoreError

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "handoffs and store info",
        [
            """CREATE TABLE IF NOT EXISTS handoffs (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- also the HNSW label; never reused
                handle     TEXT NOT NULL UNIQUE,
                namespace  TEXT NOT NULL,
                from_agent TEXT,
                created_at REAL NOT NULL,
                parent     TEXT,
                meta       TEXT,                               -- JSON object or NULL
                text       TEXT,
                vector     BLOB NOT NULL                       -- float32, unit length
            )""",
            "CREATE INDEX IF NOT EXISTS handoffs_by_namespace ON handoffs(namespace, seq)",
            "CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        "generations: one counter per scope, bumped by removals and teaches, polled by other processes",
        [
            "CREATE TABLE generations (scope TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "CREATE INDEX generations_by_value ON generations(value)",
        ],
    ),
    (
        "taught exemplars (formerly <profiles_dir>/<profile>.taught.jsonl)",
        [
            """CREATE TABLE taught (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- the cursor of `taught(after=...)`
                profile    TEXT NOT NULL,
                label      TEXT NOT NULL,
                text       TEXT NOT NULL,
                source     TEXT,
                created_at REAL NOT NULL,
                import_key TEXT UNIQUE                         -- set for imported lines: importing twice adds nothing
            )""",
            "CREATE INDEX taught_by_profile ON taught(profile, id)",
        ],
    ),
    (
        "handoff counts maintained by triggers (COUNT(*) reads a whole index: /healthz polls it)",
        [
            "CREATE TABLE handoff_counts (namespace TEXT PRIMARY KEY, n INTEGER NOT NULL)",
            """CREATE TRIGGER handoffs_count_insert AFTER INSERT ON handoffs BEGIN
                INSERT INTO handoff_counts(namespace, n) VALUES (NEW.namespace, 1)
                ON CONFLICT(namespace) DO UPDATE SET n = n + 1;
            END""",
            # A trigger also turns off SQLite's truncate shortcut, so a DELETE without WHERE is counted too.
            """CREATE TRIGGER handoffs_count_delete AFTER DELETE ON handoffs BEGIN
                UPDATE handoff_counts SET n = n - 1 WHERE namespace = OLD.namespace;
            END""",
            # Inside BEGIN IMMEDIATE (migrate): no writer runs between this count and the triggers taking over.
            "INSERT INTO handoff_counts(namespace, n) SELECT namespace, COUNT(*) FROM handoffs GROUP BY namespace",
        ],
    ),
    (
        "who taught each exemplar, and reverts (an operator takes a poisoned teach back; the row stays, marked)",
        [
            "ALTER TABLE taught ADD COLUMN teacher TEXT",  # NULL: taught before teachers were recorded
            "ALTER TABLE taught ADD COLUMN reverted_at REAL",
            "ALTER TABLE taught ADD COLUMN reverted_by TEXT",
            "CREATE INDEX taught_by_teacher ON taught(teacher, created_at)",
        ],
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if not exists:
        return 0
    return db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(db: sqlite3.Connection) -> list[int]:
    """Apply every pending migration, each in its own transaction (`db` in autocommit mode); returns those applied.

    BEGIN IMMEDIATE takes the write lock before reading the version, so two processes opening one data dir at
    once apply each migration exactly once."""
    applied = []
    for version, (name, statements) in enumerate(MIGRATIONS, start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = schema_version(db)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the store's schema is version {current}, newer than this mcp-latent knows ({SCHEMA_VERSION}); "
                    "upgrade mcp-latent or use another --data-dir."
                )
            if current < version:
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                applied.append(version)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return applied
