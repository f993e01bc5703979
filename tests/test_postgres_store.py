"""What only the PostgreSQL backend has: versioned migrations in a schema, reconnection after the database
restarts, ambiguous commits, and services on several hosts sharing one state. Real PostgreSQL + pgvector."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from test_service_store import wait_for

from mcp_latent.errors import StoreError
from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings
from mcp_latent.store.factory import open_store
from mcp_latent.store.postgres import PostgresStore
from mcp_latent.store.postgres_migrations import SCHEMA_VERSION

DIM = 16


def unit(rows: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def opened(postgres, pg_schema):
    stores: list[PostgresStore] = []

    def open_(model: str | None = "m", dim: int | None = DIM, **kwargs) -> PostgresStore:
        store = PostgresStore(postgres.url, dim, model, schema=pg_schema, **kwargs)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def sql(postgres, statement: str, *params) -> list[tuple]:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def test_open_store_picks_postgres_by_url_and_namespaces_are_a_column(postgres, pg_schema, tmp_path):
    settings = Settings(data_dir=tmp_path, store_url=postgres.url, store_schema=pg_schema)
    store = open_store(settings, DIM, "m")
    try:
        assert isinstance(store, PostgresStore)
        store.add("a", unit(2), ["x", "y"])
        store.add("b", unit(1), ["z"])
    finally:
        store.close()
    tables = {row[0] for row in sql(postgres, "SELECT tablename FROM pg_tables WHERE schemaname = %s", pg_schema)}
    # no table per namespace (handoff_counts holds a few counter rows per namespace)
    assert tables == {"handoffs", "handoff_counts", "store_info", "generations", "taught", "schema_migrations"}
    indexes = dict(sql(postgres, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", pg_schema))
    assert "(namespace, seq)" in indexes["handoffs_by_namespace"]
    assert "hnsw" in indexes["handoffs_by_vector"] and "vector_cosine_ops" in indexes["handoffs_by_vector"]
    assert not (tmp_path / "latent.db").exists()  # nothing embedded was opened


def errors_of_four_at_once(open_one) -> list[BaseException]:
    """Run `open_one` in 4 threads at once (servers starting together); what they raised."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            open_one()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_migrations_are_versioned_and_applied_once_by_concurrent_servers(opened, postgres, pg_schema):
    assert errors_of_four_at_once(opened) == []
    versions = [row[0] for row in sql(postgres, f"SELECT version FROM {pg_schema}.schema_migrations ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_servers_starting_together_on_a_fresh_database_create_pgvector_once(postgres):
    """Found by two servers starting at once: CREATE EXTENSION IF NOT EXISTS raced into a unique violation."""
    database = "fresh_" + uuid.uuid4().hex[:8]
    sql(postgres, f"CREATE DATABASE {database}")
    url = postgres.url.rsplit("/", 1)[0] + "/" + database
    stores = []
    errors = errors_of_four_at_once(lambda: stores.append(PostgresStore(url, DIM, "m")))
    for store in stores:
        store.close()
    sql(postgres, f"DROP DATABASE {database}")
    assert errors == [] and len(stores) == 4


def test_count_reads_the_maintained_counters_not_the_table(opened, postgres, pg_schema):
    """/healthz and status count handoffs on every poll: COUNT(*) read the whole table (seconds at 1M vectors).
    The count now comes from the counters the triggers keep: it answers while the table itself cannot be read."""
    store = opened(statement_timeout_s=2.0)
    store.add("a", unit(3), ["x", "y", "z"])
    store.add("b", unit(2, seed=1), ["u", "v"])
    with psycopg.connect(postgres.url) as blocker:  # holds a lock no reader of `handoffs` gets past
        blocker.execute(f"LOCK TABLE {pg_schema}.handoffs IN ACCESS EXCLUSIVE MODE")
        assert (store.count(), store.count("a"), store.count("b"), store.count("none")) == (5, 3, 2, 0)
        blocker.rollback()


def test_counts_stay_exact_through_every_kind_of_write(opened, postgres, pg_schema):
    store, other = opened(), opened()

    def truth() -> tuple[int, dict[str, int]]:
        rows = sql(postgres, f"SELECT namespace, COUNT(*) FROM {pg_schema}.handoffs GROUP BY namespace")
        return sum(n for _, n in rows), dict(rows)

    def check() -> None:
        total, by_namespace = truth()
        assert store.count() == other.count() == total
        for namespace in ("a", "b", "c", "absent"):
            assert store.count(namespace) == by_namespace.get(namespace, 0)

    def writer(namespace: str, seed: int) -> None:  # concurrent writers, two stores, shared namespaces
        target = store if seed % 2 else other
        for i in range(10):
            target.add(namespace, unit(2, seed=seed * 100 + i), ["p", "q"])

    threads = [threading.Thread(target=writer, args=("ab"[i % 2], i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check()
    assert store.count() == 120
    store.add("c", unit(4, seed=9), list("abcd"))
    store.compact("a", max_records=5)
    check()
    other.drop("b")
    store.retention(max_records=2)
    check()
    # Written beside the server (a bulk migration, an administrator): the triggers count these too.
    sql(postgres, f"INSERT INTO {pg_schema}.handoffs (handle, namespace, created_at, vector)"
        f" SELECT 'h_sql' || i, 'b', 0, (SELECT vector FROM {pg_schema}.handoffs LIMIT 1)"
        " FROM generate_series(1, 7) i")  # fmt: skip
    sql(postgres, f"DELETE FROM {pg_schema}.handoffs WHERE handle = 'h_sql3'")
    check()
    assert store.count("b") == 6
    sql(postgres, f"TRUNCATE {pg_schema}.handoffs")
    check()
    assert store.count() == 0


def test_an_existing_schema_gets_its_counters_backfilled(opened, postgres, pg_schema, monkeypatch):
    """A database written before the counters existed (schema version 3): migration 4 counts what is there."""
    from mcp_latent.store import postgres_migrations as postgres_schema

    monkeypatch.setattr(postgres_schema, "MIGRATIONS", postgres_schema.MIGRATIONS[:3])
    old = opened()
    old.add("a", unit(3), ["x", "y", "z"])
    old.add("b", unit(1), ["w"])
    old.close()
    monkeypatch.undo()
    store = opened()
    versions = [row[0] for row in sql(postgres, f"SELECT version FROM {pg_schema}.schema_migrations ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1)) and SCHEMA_VERSION >= 4
    assert (store.count(), store.count("a"), store.count("b")) == (4, 3, 1)
    store.add("a", unit(1, seed=2), ["v"])
    assert (store.count(), store.count("a")) == (5, 4)


def test_a_schema_from_a_newer_version_is_refused(opened, postgres, pg_schema):
    opened().close()
    sql(postgres, f"INSERT INTO {pg_schema}.schema_migrations VALUES (99, 'future', 0)")
    with pytest.raises(StoreError, match="newer than this mcp-latent"):
        opened()


def test_another_model_is_refused_and_a_model_less_open_adopts_it(opened):
    reader = opened(model=None, dim=None)  # before any model: reads answer, empty
    assert (reader.count(), reader.namespaces(), reader.taught(), reader.dim) == (0, [], [], 0)
    with pytest.raises(StoreError):
        reader.add("ns", unit(1), ["x"])
    opened().add("ns", unit(1), ["x"])
    with pytest.raises(StoreError, match="holds vectors from model 'm'"):
        opened(model="other", dim=8)
    adopted = opened(model=None, dim=None)
    assert (adopted.model_id, adopted.dim, adopted.count()) == ("m", DIM, 1)


def test_unreachable_database_is_a_clear_error_without_credentials():
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://someone:s3cretpw@127.0.0.1:1/latent", DIM, "m", timeout_s=1)
    message = str(caught.value)
    assert "127.0.0.1:1/latent" in message and "unreachable" in message and "s3cretpw" not in message
    assert time.monotonic() - started < 30


def test_restart_gives_clear_errors_meanwhile_and_reconnects_by_itself(opened, postgres):
    store = opened(timeout_s=1)
    before = store.add("ns", unit(3), ["a", "b", "c"])
    postgres.restart()  # every pooled connection dies with the old server; nothing touched the pool meanwhile
    assert store.get(before[0].handle, "ns").text == "a"  # the first call after a restart succeeds
    postgres.restart()
    assert len(store.add("ns", unit(1, 8), ["first write after a restart"])) == 1
    postgres.stop()
    try:
        with pytest.raises(StoreError, match="unreachable or restarting.*Nothing acknowledged was lost"):
            store.get(before[0].handle, "ns")
        with pytest.raises(StoreError, match="unreachable"):
            store.add("ns", unit(1, 9), ["during"])
    finally:
        postgres.start()
    # Every pooled connection died with the old server: the first call after the restart must still succeed.
    assert store.get(before[0].handle, "ns").text == "a"
    assert len(store.add("ns", unit(1, 10), ["after"])) == 1
    assert store.count("ns") == 5
    assert len(store.similar("ns", before[1].vector, 5)) == 5


def test_crash_of_the_database_loses_nothing_acknowledged(opened, postgres):
    store = opened(timeout_s=1)
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            try:
                acknowledged.extend(r.handle for r in store.add("ns", unit(2, i), [f"w{i}", f"w{i}"]))
            except StoreError:
                time.sleep(0.05)  # the database is down: a clear error, retried by this caller
            i += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert wait_for(lambda: len(acknowledged) >= 20, timeout=60)
        postgres.kill()  # SIGKILL of the postmaster and every backend, mid-write
        postgres.start()  # crash recovery replays the WAL
        count = len(acknowledged)
        assert wait_for(lambda: len(acknowledged) >= count + 10, timeout=60)  # the writer went on by itself
    finally:
        stop.set()
        thread.join(30)
    found = {h.handle for h in store.export("ns")}
    assert set(acknowledged) <= found
    assert len(found) - len(acknowledged) <= 2  # at most the batch whose answer the crash cut off


def test_a_write_whose_commit_answer_was_lost_is_stored_once(opened, monkeypatch):
    """The connection broke after COMMIT reached the database: the retry finds the handles, writes nothing twice."""
    store = opened()
    real = store._insert_once

    def commit_then_lose_the_answer(new, handles):
        real(new, handles)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store, "_insert_once", commit_then_lose_the_answer)
    records = store.add("ns", unit(3), ["a", "b", "c"])
    assert [r.text for r in records] == ["a", "b", "c"] and store.count("ns") == 3
    assert store.get(records[2].handle, "ns").text == "c"

    calls = []

    def lose_before_commit(new, handles):
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("connection reset before COMMIT")
        return real(new, handles)

    monkeypatch.setattr(store, "_insert_once", lose_before_commit)
    again = store.add("ns", unit(2, 1), ["d", "e"])
    assert len(again) == 2 and store.count("ns") == 5 and len(calls) == 2


def test_a_teach_on_one_host_reaches_the_next_verdict_on_another(postgres, pg_schema, tmp_path, fake_embedder,
                                                                 fruit_tools_profile, settings):  # fmt: skip
    """Two services with their own data dirs (two hosts) over one PostgreSQL: handles, drops and teaches shared."""
    shared = {"store_url": postgres.url, "store_schema": pg_schema, "store_poll_seconds": 0.1}
    services = []
    for host in ("host-a", "host-b"):
        own = settings.model_copy(update={**shared, "data_dir": tmp_path / host})  # profiles_dir stays shared
        service = LatentService(own, embedder=fake_embedder)
        service.start()
        service.wait_ready(10)
        services.append(service)
    first, second = services
    try:
        made = first.handoff("apple banana cherry", namespace="team")
        assert (
            second.evaluate(handle=made["handle"], namespace="team", profiles=["kind"])["verdicts"]["kind"]["label"]
            == "fruit"
        )
        assert second.similar(text="apple banana", namespace="team", k=1)["similar"][0]["handle"] == made["handle"]

        text = "durian rambutan mangosteen"
        before = second.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]
        assert text not in [n[0] for n in before["neighbours"]]
        taught_at = time.monotonic()
        first.teach("kind", "fruit", text=text)

        def nearest() -> str:
            return second.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]["neighbours"][0][0]

        assert wait_for(lambda: nearest() == text, timeout=10)
        print(f"teach reached the other host after {time.monotonic() - taught_at:.2f} s (poll every 0.1 s)")

        assert second.drop_namespace("team")["dropped"] == 1
        assert first.similar(text="apple banana", namespace="team", k=1)["similar"] == []
    finally:
        for service in services:
            service.close()


def cluster_dir() -> Path:
    """A directory for a cluster outside pytest's tmp_path: a concurrent pytest session makes /tmp/pytest-of-<user>
    private again (mode 0700), and a cluster running as the `pgserver` user (under root) would lose its files."""
    return Path(tempfile.mkdtemp(prefix="mcp-latent-test-pg-"))


def test_cli_starts_a_trial_postgres_that_a_store_url_reaches():
    """The README's trial path: `mcp-latent postgres start` prints the one setting to switch."""
    from test_e2e_stdio import server_command

    cli = server_command()
    directory = cluster_dir()
    started = subprocess.run(cli + ["postgres", "start", "--dir", str(directory)], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().removeprefix("MCP_LATENT_STORE_URL=")
    try:
        store = PostgresStore(url, DIM, "m")
        store.add("trial", unit(2), ["a", "b"])
        store.close()
        listed = subprocess.run(cli + ["namespaces", "list", "--store-url", url], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert listed.returncode == 0 and listed.stdout.split() == ["trial", "2", "handoffs"], listed.stderr
    finally:
        subprocess.run(cli + ["postgres", "stop", "--dir", str(directory)], timeout=60, check=True)
        shutil.rmtree(directory, ignore_errors=True)
    assert "unreachable" in subprocess.run(cli + ["namespaces", "list", "--store-url", url], capture_output=True,
                                           text=True, timeout=120).stderr  # fmt: skip


def test_a_streaming_replica_serves_reads_and_refuses_writes_clearly(opened, postgres):
    primary = opened()
    made = primary.add("ns", unit(20), [str(i) for i in range(20)])
    standby = postgres.replica(cluster_dir())
    try:
        replica = PostgresStore(standby.url, None, None, schema=primary.schema)  # adopts the primary's model
        try:
            assert (replica.replica, replica.model_id, replica.dim) == (True, "m", DIM)
            assert wait_for(lambda: replica.count("ns") == 20, timeout=10)
            assert replica.get(made[3].handle, "ns").text == "3"
            assert replica.similar("ns", made[5].vector, 1)[0][0].handle == made[5].handle
            with pytest.raises(StoreError, match="read-only replica"):
                replica.add("ns", unit(1), ["x"])
            later = primary.add("ns", unit(1, 7), ["later"])[0]  # streamed to the replica within moments
            assert wait_for(lambda: replica.count("ns") == 21, timeout=10)
            assert replica.get(later.handle, "ns").text == "later"
        finally:
            replica.close()
    finally:
        standby.destroy()


def test_a_statement_past_the_timeout_is_cancelled_with_a_clear_error(opened):
    store = opened(statement_timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(StoreError, match="MCP_LATENT_STORE_STATEMENT_TIMEOUT_SECONDS \\(0.2 s\\)"):
        with store._translated("wait"), store._connection() as conn:
            conn.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 4
    assert store.count() == 0  # the connection is usable again
