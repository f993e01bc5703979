"""The savings in the open: per profile, how many verdicts were answered by vector math, how many were escalated
(unsure), how many exemplars were taught, and how often a taught label agreed with an answered verdict.

Who owns what: judging threads (and the event loop) only append events to `_events`, a deque (appends are
atomic: nobody waits). One flusher thread drains it into `<data dir>/stats.sqlite` every `flush_seconds`, adding
per-minute counts, so every server on a data dir (and `mcp-latent profiles stats`) sees the sum of all of them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FIELDS = ("answered", "escalated", "taught", "agreed", "disagreed")
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
)


def _connect(path: Path) -> sqlite3.Connection:
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


class ProfileStats:
    """Counts per profile and minute: recorded in memory without waiting, flushed to SQLite in the background."""

    def __init__(self, path: Path, flush_seconds: float = 5.0):
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self._events: deque[tuple[str, int, str, int]] = deque()
        self._flush_lock = threading.Lock()  # one flush at a time (the timer thread, or close/read)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, profile: str, field: str, count: int = 1) -> None:
        """Count an event now (any thread, the event loop included: one deque append)."""
        self._events.append((profile, int(time.time() // 60), field, count))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mcp-latent-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        """Add the counts recorded so far to the database; on failure they stay queued for the next flush."""
        with self._flush_lock:
            drained: list[tuple[str, int, str, int]] = []
            while self._events:
                drained.append(self._events.popleft())
            if not drained:
                return
            rows: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
            for profile, minute, field, count in drained:
                rows[(profile, minute)][field] += count
            columns = ", ".join(FIELDS)
            marks = ", ".join("?" * len(FIELDS))
            updates = ", ".join(f"{f} = {f} + excluded.{f}" for f in FIELDS)
            try:
                db = _connect(self.path)
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(
                        f"INSERT INTO tallies (profile, minute, {columns}) VALUES (?, ?, {marks}) "
                        f"ON CONFLICT (profile, minute) DO UPDATE SET {updates}",
                        [(p, m, *(c[f] for f in FIELDS)) for (p, m), c in rows.items()],
                    )
                    db.execute("COMMIT")
                finally:
                    db.close()
            except sqlite3.Error as exc:
                log.warning("could not save profile stats (%s); retrying at the next flush", exc)
                self._events.extendleft(reversed(drained))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    # --- reading -----------------------------------------------------------------------------------------------

    def summary(self) -> dict[str, dict[str, Any]]:
        """Totals per profile (every process on the data dir): counts, escalation rate and measured agreement."""
        self.flush()
        out: dict[str, dict[str, Any]] = {}
        for profile, *counts in self._query(
            f"SELECT profile, {', '.join(f'SUM({f})' for f in FIELDS)} FROM tallies GROUP BY profile ORDER BY profile"
        ):
            out[profile] = describe(dict(zip(FIELDS, counts, strict=True)))
        return out

    def series(self, profile: str) -> list[tuple[int, dict[str, int]]]:
        """Per-minute counts of one profile, oldest first: (unix minute, counts)."""
        self.flush()
        rows = self._query(
            f"SELECT minute, {', '.join(FIELDS)} FROM tallies WHERE profile = ? ORDER BY minute", (profile,)
        )
        return [(minute, dict(zip(FIELDS, counts, strict=True))) for minute, *counts in rows]

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        db = _connect(self.path)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


def describe(counts: dict[str, int]) -> dict[str, Any]:
    """Counts plus the derived rates: escalation share of verdicts, agreement share of spot checks."""
    verdicts = counts["answered"] + counts["escalated"]
    checks = counts["agreed"] + counts["disagreed"]
    return {
        **counts,
        "escalation_rate": round(counts["escalated"] / verdicts, 4) if verdicts else None,
        "agreement": round(counts["agreed"] / checks, 4) if checks else None,
    }


def plot_escalation(stats: ProfileStats, profiles: list[str], out: Path, bucket_minutes: int = 0) -> Path:
    """A PNG of each profile's escalation rate over time (buckets sized so the plot has about 40 points).
    Raises PlotsUnavailable (one line: what to install) without matplotlib."""
    from mcp_latent.plotting import figure

    with figure(out, dpi=100, figsize=(8, 4)) as (_, ax):
        for name in profiles:
            series = stats.series(name)
            if not series:
                continue
            first, last = series[0][0], series[-1][0]
            size = bucket_minutes or max(1, (last - first + 1) // 40)
            buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for minute, counts in series:
                bucket = buckets[(minute - first) // size]
                bucket[0] += counts["escalated"]
                bucket[1] += counts["answered"] + counts["escalated"]
            points = sorted((b * size / 60, e / v) for b, (e, v) in buckets.items() if v)
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
        ax.set_xlabel("hours since first verdict")
        ax.set_ylabel("escalation rate (unsure / verdicts)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    return out
