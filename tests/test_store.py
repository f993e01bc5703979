"""The latent store: durable records, namespaces, the derived HNSW index, several processes on one dir."""

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from mcp_latent.errors import InvalidInput, NotFound, StoreError
from mcp_latent.store.base import HANDLE_RE
from mcp_latent.store.sqlite import SqliteStore as LatentStore
from mcp_latent.store.sqlite_migrations import SCHEMA_VERSION
from mcp_latent.store.vector_index import VectorIndex

DIM = 16


def unit(rows: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    s = LatentStore(tmp_path, DIM, "m")
    yield s
    s.close()


def test_add_and_get_round_trip(store):
    vectors = unit(3)
    records = store.add("ns", vectors, ["a", "b", None], from_agent="A", meta={"k": 1})
    assert all(HANDLE_RE.match(r.handle) for r in records)
    got = store.get(records[1].handle, "ns")
    assert got.text == "b" and got.from_agent == "A" and got.meta == {"k": 1}
    np.testing.assert_array_equal(got.vector, vectors[1])


def test_handles_are_invisible_across_namespaces(store):
    handle = store.add("a", unit(1), ["x"])[0].handle
    with pytest.raises(NotFound, match="not found in namespace 'b'"):
        store.get(handle, "b")


def test_malformed_handle_is_invalid_input(store):
    with pytest.raises(InvalidInput, match="malformed handle"):
        store.get("not-a-handle", "ns")


def test_parent_must_exist_in_same_namespace(store):
    parent = store.add("a", unit(1), ["p"])[0].handle
    child = store.add("a", unit(1, 1), ["c"], parent=parent)[0]
    assert child.parent == parent
    with pytest.raises(NotFound):
        store.add("b", unit(1), ["c"], parent=parent)


def test_similar_finds_exact_vector_first_and_respects_namespace(store):
    vectors = unit(50)
    records = store.add("ns", vectors, [str(i) for i in range(50)])
    store.add("other", vectors[:5], ["o"] * 5)
    hits = store.similar("ns", vectors[7], k=3)
    assert hits[0][0].handle == records[7].handle
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(h.namespace == "ns" for h, _ in hits)
    excluded = store.similar("ns", vectors[7], k=3, exclude=records[7].handle)
    assert records[7].handle not in [h.handle for h, _ in excluded] and len(excluded) == 3


def test_similar_with_k_larger_than_namespace(store):
    store.add("ns", unit(2), ["a", "b"])
    assert len(store.similar("ns", unit(1, 9)[0], k=10)) == 2
    assert store.similar("empty", unit(1)[0], k=3) == []


def test_index_saved_on_close_and_caught_up_on_reopen(tmp_path):
    first = LatentStore(tmp_path, DIM, "m")
    vectors = unit(20)
    first.add("ns", vectors[:10], ["x"] * 10)
    first.similar("ns", vectors[0], 1)  # loads the index
    first.close()
    second = LatentStore(tmp_path, DIM, "m")
    late = second.add("ns", vectors[10:], ["y"] * 10)
    assert second.similar("ns", vectors[15], 1)[0][0].handle == late[5].handle
    assert second.count("ns") == 20
    second.close()


def test_crash_without_close_rebuilds_from_record(tmp_path):
    crashed = LatentStore(tmp_path, DIM, "m")
    records = crashed.add("ns", unit(30), ["z"] * 30)
    # no close(): the index was never saved, like after kill -9
    reopened = LatentStore(tmp_path, DIM, "m")
    assert reopened.similar("ns", records[29].vector, 1)[0][0].handle == records[29].handle
    reopened.close()


def test_two_stores_on_one_dir_see_each_others_writes(tmp_path):
    a = LatentStore(tmp_path, DIM, "m")
    b = LatentStore(tmp_path, DIM, "m")
    vectors = unit(4)
    a.similar("ns", vectors[0], 1)  # a holds an index before b writes
    written_by_b = b.add("ns", vectors, ["b"] * 4)
    assert a.get(written_by_b[2].handle, "ns").text == "b"
    assert a.similar("ns", vectors[3], 1)[0][0].handle == written_by_b[3].handle
    a.close()
    b.close()


def test_compaction_drops_oldest_from_record_and_index(store):
    records = store.add("ns", unit(10), [str(i) for i in range(10)])
    store.similar("ns", records[0].vector, 1)
    assert store.compact("ns", max_records=4) == 6
    assert store.count("ns") == 4
    with pytest.raises(NotFound):
        store.get(records[0].handle, "ns")
    handles = [h.handle for h, _ in store.similar("ns", records[0].vector, 10)]
    assert set(handles) == {r.handle for r in records[6:]}


def test_drop_and_export(store):
    store.add("ns", unit(3), ["a", "b", "c"])
    assert [r.text for r in store.export("ns")] == ["a", "b", "c"]
    assert store.namespaces()[0]["count"] == 3
    assert store.drop("ns") == 3
    assert store.count("ns") == 0


def test_other_model_is_refused(tmp_path):
    LatentStore(tmp_path, DIM, "model-a").close()
    with pytest.raises(StoreError, match="use another --data-dir"):
        LatentStore(tmp_path, DIM, "model-b")


# The schema of mcp-latent before versioning, verbatim: a data dir it wrote must migrate in place.
UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- also the HNSW label
    handle     TEXT NOT NULL UNIQUE,
    namespace  TEXT NOT NULL,
    from_agent TEXT,
    created_at REAL NOT NULL,
    parent     TEXT,
    meta       TEXT,                               -- JSON object or NULL
    text       TEXT,
    vector     BLOB NOT NULL                       -- float32, unit length
);
CREATE INDEX IF NOT EXISTS handoffs_by_namespace ON handoffs(namespace, seq);
CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_unversioned_data_dir_migrates_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "latent.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(UNVERSIONED_SCHEMA)
    vectors = unit(3)
    with db:
        db.execute("INSERT INTO store_info VALUES ('model_id', 'm'), ('dim', ?)", (str(DIM),))
        for i, vector in enumerate(vectors):
            db.execute(
                "INSERT INTO handoffs(handle, namespace, created_at, meta, text, vector)"
                " VALUES (?, 'ns', 1.0, ?, ?, ?)",
                (f"h_aaaaaaaaa{'abc'[i]}", '{"k":1}', f"old {i}", vector.tobytes()),
            )
    db.close()
    store = LatentStore(tmp_path, DIM, "m")
    assert store.get("h_aaaaaaaaab", "ns").text == "old 1" and store.get("h_aaaaaaaaab", "ns").meta == {"k": 1}
    assert store.similar("ns", vectors[2], 1)[0][0].handle == "h_aaaaaaaaac"
    fresh = store.add("ns", unit(1, 5), ["new"])[0]
    assert fresh.seq == 4
    assert (store.count(), store.count("ns")) == (4, 4)  # the counters started from the records already there
    store.close()
    check = sqlite3.connect(tmp_path / "latent.db")
    versions = [row[0] for row in check.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    check.close()


def test_count_reads_the_maintained_counters_not_the_handoffs(store):
    """/healthz counts handoffs on every poll: COUNT(*) read a whole index (~100 ms at 1M records)."""
    store.add("a", unit(3), ["x", "y", "z"])
    store.add("b", unit(2, 1), ["u", "v"])
    read: set[str] = set()

    def authorizer(action, table, column, database, trigger):  # told every table a statement reads
        if action == sqlite3.SQLITE_READ:
            read.add(table)
        return sqlite3.SQLITE_OK

    store._reader().set_authorizer(authorizer)
    assert (store.count(), store.count("a"), store.count("b"), store.count("none")) == (5, 3, 2, 0)
    assert read == {"handoff_counts"}


def test_schema_from_a_newer_version_is_refused(tmp_path):
    LatentStore(tmp_path, DIM, "m").close()
    db = sqlite3.connect(tmp_path / "latent.db")
    with db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(StoreError, match="newer than this mcp-latent knows"):
        LatentStore(tmp_path, DIM, "m")


@pytest.mark.parametrize("background", [True, False], ids=["index-in-background", "index-in-call"])
def test_a_committed_write_is_never_reported_failed_and_the_index_repairs(tmp_path, background, monkeypatch, caplog):
    """Issue #12: `add` committed, then failed in the index step: an acknowledged write reported as an error.
    Both ways of adding a committed row to the loaded index (`hnsw_add_in_background`): on the store's catch-up
    thread (the default), or in the writing call."""
    store = LatentStore(tmp_path, DIM, "m", index_in_background=background)
    first = store.add("ns", unit(5), ["x"] * 5)
    store.similar("ns", first[0].vector, 1)  # the namespace's index is loaded: the next add updates it
    real_add = VectorIndex.add
    failures = iter([RuntimeError("hnswlib: cannot allocate")])

    def flaky_add(self, labels, vectors):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_add(self, labels, vectors)

    monkeypatch.setattr(VectorIndex, "add", flaky_add)
    late = store.add("ns", unit(1, 9), ["late"])[0]  # must not raise: the row is committed
    assert store._indexes.settled(10)  # in the background: the catch-up thread has met the failure
    assert "rebuilding it on next read" in caplog.text
    assert store.similar("ns", late.vector, 1)[0][0].handle == late.handle
    assert store.count("ns") == 6
    store.close()


def test_write_lock_held_elsewhere_is_a_store_error_for_every_writer(store, caplog):
    """Issue #12: only __init__ and add translated sqlite3 errors; compact and drop leaked 'database is locked'."""
    store.close()
    store = LatentStore(store.data_dir, DIM, "m", busy_timeout_s=0.05)  # reopened with a short busy timeout
    handle = store.add("ns", unit(1), ["x"])[0].handle
    other = sqlite3.connect(store.data_dir / "latent.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        for call in (
            lambda: store.add("ns", unit(1), ["y"]),
            lambda: store.compact("ns", max_records=0, ttl_seconds=1e-9),
            lambda: store.retention(ttl_seconds=1e-9),
            lambda: store.drop("ns"),
            lambda: store.add_taught("p", "a", "t"),
        ):
            with pytest.raises(StoreError, match="database is locked.*retry"):
                call()
        assert store.get(handle, "ns").text == "x"  # WAL: reads go on while another process writes
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "database is locked" in caplog.text
    assert store.count("ns") == 1 and store.add("ns", unit(1), ["z"])  # the writer is usable again
    store.close()


class BrokenConnection:
    """A connection whose every statement fails like a corrupted or vanished database file."""

    def execute(self, *args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")


def test_every_read_translates_database_errors(store, monkeypatch, caplog):
    """Issue #12: get, similar, count, namespaces leaked raw sqlite3 errors."""
    record = store.add("ns", unit(1), ["x"])[0]
    monkeypatch.setattr(store, "_reader", lambda: BrokenConnection())
    for call in (
        lambda: store.get(record.handle, "ns"),
        lambda: store.similar("ns", record.vector, 1),
        lambda: store.count("ns"),
        lambda: store.count(),
        lambda: store.namespaces(),
        lambda: list(store.export("ns")),
        lambda: store.taught(),
        lambda: store.changes(),
    ):
        with pytest.raises(StoreError, match="malformed"):
            call()
    assert caplog.text.count("malformed") >= 8


def test_index_errors_are_store_errors(store, monkeypatch):
    store.add("ns", unit(3), ["x"] * 3)

    def broken_search(self, vector, k):
        raise RuntimeError("Cannot return the results in a contiguous 2D array")

    monkeypatch.setattr(VectorIndex, "search", broken_search)
    with pytest.raises(StoreError, match="contiguous"):
        store.similar("ns", unit(1)[0], 2)


def test_parent_is_checked_inside_the_insert_transaction(store):
    """Issue #12: the parent was checked before the transaction, so a removal in between left an orphan."""
    parent = store.add("ns", unit(1), ["p"])[0].handle
    statements: list[str] = []
    store._writer.set_trace_callback(statements.append)
    store.add("ns", unit(1, 1), ["c"], parent=parent)
    store._writer.set_trace_callback(None)
    begin = statements.index("BEGIN IMMEDIATE")
    check = next(i for i, s in enumerate(statements) if s.startswith("SELECT 1 FROM handoffs WHERE handle"))
    insert = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO handoffs"))
    assert begin < check < insert < statements.index("COMMIT")


def test_index_sidecars_are_replaced_atomically(tmp_path, monkeypatch):
    """Issue #12: the index sidecar files were written in place: a crash mid-write left them torn."""
    store = LatentStore(tmp_path, DIM, "m")
    records = store.add("ns", unit(6), ["x"] * 6)
    store.similar("ns", records[0].vector, 1)
    store.compact("ns", max_records=3)
    store.similar("ns", records[0].vector, 1)  # the index now has deleted labels: the deleted sidecar is non-empty
    store.close()
    sidecars = sorted((tmp_path / "index").glob("*.json"))
    before = {path: path.read_bytes() for path in sidecars}
    assert len(before) == 2
    real_write = Path.write_text

    def torn_write(self, data, *args, **kwargs):  # a crash half-way through writing
        real_write(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", torn_write)
    again = LatentStore(tmp_path, DIM, "m")
    again.add("ns", unit(2, 3), ["y"] * 2)
    again.similar("ns", records[0].vector, 1)
    again.close()  # logs the failed save; must leave the previous sidecars whole
    assert {path: path.read_bytes() for path in sidecars} == before
    monkeypatch.undo()
    reopened = LatentStore(tmp_path, DIM, "m")
    assert len(reopened.similar("ns", records[5].vector, 10)) == 5
    reopened.close()


def test_opened_without_a_model_it_reads_and_adopts_the_data_dirs_model(tmp_path):
    """Commands that only read (taught exemplars, namespaces) open the store without loading the model."""
    writer = LatentStore(tmp_path / "state", DIM, "m")
    record = writer.add("ns", unit(1), ["x"])[0]
    writer.add_taught("p", "a", "taught")
    reader = LatentStore(tmp_path / "state", None, None)
    assert (reader.model_id, reader.dim) == ("m", DIM)
    assert reader.get(record.handle, "ns").text == "x" and [t.text for t in reader.taught()] == ["taught"]
    reader.close()
    writer.close()
    empty = LatentStore(tmp_path / "empty", None, None)
    assert (empty.model_id, empty.dim, empty.taught()) == (None, 0, [])
    with pytest.raises(StoreError, match="do not fit"):
        empty.add("ns", unit(1), ["x"])
    empty.close()


def test_threads_of_two_instances_writing_searching_and_compacting_at_once(tmp_path):
    """One writer connection, per-thread readers and the index lock hold under mixed load from two processes; the
    index is rebuilt once removed records outnumber live ones (before: live records among 400 removed went missing)."""
    stores = [LatentStore(tmp_path, DIM, "m"), LatentStore(tmp_path, DIM, "m")]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        store, rng = stores[n % 2], np.random.default_rng(n)
        try:
            for i in range(150):
                vector = unit(1, 1000 * n + i)
                if i % 10 == 9:
                    store.compact("ns", max_records=40)
                elif i % 3:
                    store.add("ns", vector, [f"{n}-{i}"])
                else:
                    store.similar("ns", vector[0], int(rng.integers(1, 8)))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    stores[0].compact("ns", max_records=40)
    live = list(stores[0].export("ns"))
    assert len(live) == 40
    for store in stores:
        for record in live:
            assert store.similar("ns", record.vector, 1)[0][0].handle == record.handle
        assert len(store.similar("ns", live[0].vector, 50)) == 40
        store.close()


def test_readers_of_finished_threads_are_closed(store):
    """Each thread reads through its own connection. Worker threads come and go; their connections used to stay
    open until the store closed (30 threads, 30 connections, 90 file descriptors, one page cache each)."""
    store.add("ns", unit(3), ["a", "b", "c"])
    for _ in range(30):
        worker = threading.Thread(target=store.count, args=("ns",))
        worker.start()
        worker.join()
    assert len(store._readers) <= 2  # the last worker's (closed when the next is made) and none of the others
    assert store.count("ns") == 3  # this thread's reader is made, and reads
    alive = threading.Event()
    release = threading.Event()

    def hold() -> None:  # a live thread's reader is never closed under it
        store.count("ns")
        alive.set()
        release.wait(10)
        assert store.count("ns") == 3

    holder = threading.Thread(target=hold)
    holder.start()
    alive.wait(10)
    for _ in range(5):
        worker = threading.Thread(target=store.count, args=("ns",))
        worker.start()
        worker.join()
    release.set()
    holder.join()
