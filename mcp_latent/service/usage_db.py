"""The usage database, `<data dir>/stats.sqlite`: its schema, writes, roll-ups and reads (no threads here).

Two tables keyed by unix minute: `tallies` (verdicts answered/escalated, teaches and spot checks per profile) and
`calls` (tool calls per tool and outcome, counted per latency bucket with their summed seconds). Both stay small:
`compact` sums minutes older than the detail window into one row per day, and days older than the kept window
into one row at minute 0 ("before the window"), so totals stay exact while the time series is bounded.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

FIELDS = ("answered", "escalated", "taught", "agreed", "disagreed")
# Upper bounds (seconds) of the latency buckets a call is counted in; the last one is +Inf.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))
DAY = 1440  # minutes
BEFORE_WINDOW = 0  # the minute key of the row holding everything older than the kept window

# Numbered migrations, applied in order; PRAGMA user_version records how many ran.
MIGRATIONS = (
    """CREATE TABLE tallies (
        profile TEXT NOT NULL,
        minute INTEGER NOT NULL,  -- unix time // 60
        answered INTEGER NOT NULL DEFAULT 0,
        escalated INTEGER NOT NULL DEFAULT 0,
        taught INTEGER NOT NULL DEFAULT 0,
        agreed INTEGER NOT NULL DEFAULT 0,
        disagreed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (profile, minute)
    )""",
    """CREATE TABLE calls (
        tool TEXT NOT NULL,
        minute INTEGER NOT NULL,
        outcome TEXT NOT NULL,  -- ok | error
        bucket INTEGER NOT NULL,  -- index into LATENCY_BUCKETS
        count INTEGER NOT NULL DEFAULT 0,
        seconds REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (tool, minute, outcome, bucket)
    )""",
)

TALLY_UPSERT = (
    f"INSERT INTO tallies (profile, minute, {', '.join(FIELDS)}) VALUES (?, ?, {', '.join('?' * len(FIELDS))}) "
    f"ON CONFLICT (profile, minute) DO UPDATE SET {', '.join(f'{f} = {f} + excluded.{f}' for f in FIELDS)}"
)
CALL_UPSERT = (
    "INSERT INTO calls (tool, minute, outcome, bucket, count, seconds) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (tool, minute, outcome, bucket) DO UPDATE SET count = count + excluded.count, "
    "seconds = seconds + excluded.seconds"
)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, statement in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        if db.execute("PRAGMA user_version").fetchone()[0] < number:  # another process may have just run it
            db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    return db


def write(path: Path, tallies: dict[tuple[str, int], dict[str, int]], calls: dict[tuple, list[float]]) -> None:
    """Add counts in one transaction: tallies[(profile, minute)] = {field: n}, calls[(tool, minute, outcome,
    bucket)] = [count, seconds]."""
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(TALLY_UPSERT, [(p, m, *(c[f] for f in FIELDS)) for (p, m), c in tallies.items()])
        db.executemany(CALL_UPSERT, [(*key, int(n), s) for key, (n, s) in calls.items()])
        db.execute("COMMIT")
    finally:
        db.close()


def _roll_up(
    db: sqlite3.Connection, table: str, keys: tuple[str, ...], sums: tuple[str, ...], lo: int, hi: int, target: str
) -> None:
    """Replace the rows with lo <= minute < hi by their sums per (keys, target minute)."""
    where = f"minute >= {lo} AND minute < {hi}"
    rows = db.execute(
        f"SELECT {', '.join(keys)}, {target} AS m, {', '.join(f'SUM({s})' for s in sums)} FROM {table} "
        f"WHERE {where} GROUP BY {', '.join(keys)}, m"
    ).fetchall()
    db.execute(f"DELETE FROM {table} WHERE {where}")
    conflict = ", ".join(f"{s} = {s} + excluded.{s}" for s in sums)
    db.executemany(
        f"INSERT INTO {table} ({', '.join(keys)}, minute, {', '.join(sums)}) "
        f"VALUES ({', '.join('?' * (len(keys) + 1 + len(sums)))}) "
        f"ON CONFLICT ({', '.join(keys)}, minute) DO UPDATE SET {conflict}",
        rows,
    )


def compact(path: Path, now_minute: int, detail_hours: int, keep_days: int) -> None:
    """Minutes older than `detail_hours` become one row per day; days older than `keep_days` one row at minute 0.
    Idempotent, and safe beside other processes' writes (one IMMEDIATE transaction)."""
    detail_cut = (now_minute - detail_hours * 60) // DAY * DAY  # whole days only: a day is never split
    keep_cut = (now_minute // DAY - keep_days) * DAY
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        for table, keys, sums in (
            ("tallies", ("profile",), FIELDS),
            ("calls", ("tool", "outcome", "bucket"), ("count", "seconds")),
        ):
            # minutes of days before detail_cut that are not a day's own row yet
            _roll_up(db, table, keys, sums, BEFORE_WINDOW + 1, max(keep_cut, BEFORE_WINDOW + 1), str(BEFORE_WINDOW))
            _roll_up(db, table, keys, sums, max(keep_cut, BEFORE_WINDOW + 1), detail_cut, f"(minute / {DAY}) * {DAY}")
        db.execute("COMMIT")
    finally:
        db.close()


def query(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    if not path.exists():
        return []
    db = connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def totals(path: Path) -> dict[str, dict[str, int]]:
    rows = query(path, f"SELECT profile, {', '.join(f'SUM({f})' for f in FIELDS)} FROM tallies GROUP BY profile")
    return {profile: dict(zip(FIELDS, counts, strict=True)) for profile, *counts in rows}


def series(path: Path, profile: str) -> list[tuple[int, dict[str, int]]]:
    """(unix minute, counts) of one profile, oldest first; rows older than the detail window are whole days, and
    the row before the kept window is left out."""
    rows = query(
        path,
        f"SELECT minute, {', '.join(FIELDS)} FROM tallies WHERE profile = ? AND minute > ? ORDER BY minute",
        (profile, BEFORE_WINDOW),
    )
    return [(minute, dict(zip(FIELDS, counts, strict=True))) for minute, *counts in rows]


def call_totals(path: Path) -> dict[str, dict[str, Any]]:
    """Per tool: calls, errors, summed seconds and the count per latency bucket (every process on the data dir)."""
    out: dict[str, dict[str, Any]] = {}
    for tool, outcome, bucket, count, seconds in query(
        path, "SELECT tool, outcome, bucket, SUM(count), SUM(seconds) FROM calls GROUP BY tool, outcome, bucket"
    ):
        entry = out.setdefault(tool, {"calls": 0, "errors": 0, "seconds": 0.0, "buckets": [0] * len(LATENCY_BUCKETS)})
        entry["calls"] += count
        entry["errors"] += count if outcome == "error" else 0
        entry["seconds"] += seconds
        entry["buckets"][min(bucket, len(LATENCY_BUCKETS) - 1)] += count
    return out


def quantile(buckets: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (what a histogram can say: 'at most this')."""
    total = sum(buckets)
    if not total:
        return None
    running = 0
    for bound, count in zip(LATENCY_BUCKETS, buckets, strict=True):
        running += count
        if running >= q * total:
            return bound
    return LATENCY_BUCKETS[-1]
