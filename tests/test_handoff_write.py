"""`handoff`'s store write beside its verdicts (`service/write_beside.py`) and the HNSW insert of a committed
handoff on the store's catch-up thread (`store/sqlite_index.py`): what callers see is unchanged (the handle is
stored before it is returned, a failed write stores nothing and counts nothing, a failed verdict loses no handle,
a search never misses a stored handoff), whichever thread did the work. No timing is asserted."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mcp_latent.errors import NotFound
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.service.api import LatentService
from mcp_latent.service.write_beside import WriteBeside
from mcp_latent.store.sqlite import SqliteStore
from mcp_latent.store.sqlite_index import NamespaceIndexes

TEXT = "apple banana cherry fruit salad for the team lunch"


def started(settings, fake_embedder, **changes) -> LatentService:
    service = LatentService(settings.model_copy(update=changes), embedder=fake_embedder)
    service.start()
    service.wait_ready(5)
    return service


def counted(service: LatentService, name: str = "kind") -> int:
    stats = service.profile_stats()["stats"].get(name, {})
    return stats.get("answered", 0) + stats.get("escalated", 0)


@pytest.mark.usefixtures("fruit_tools_profile")
@pytest.mark.parametrize("threads", [2, 0], ids=["write-beside", "write-first"])
def test_the_handle_is_stored_when_a_verdict_fails(settings, fake_embedder, monkeypatch, caplog, threads):
    service = started(settings, fake_embedder, handoff_write_threads=threads)
    try:

        def broken(*args, **kwargs):
            raise RuntimeError("verdict exploded")

        monkeypatch.setattr(FittedProfile, "verdict", broken)
        result = service.handoff(TEXT, evaluate=["kind"])
        verdict = result["verdicts"]["kind"]
        assert verdict["label"] is None and verdict["unsure"] is True  # never acted on: a caller escalates
        assert "verdict exploded" in verdict["error"] and "stored" in verdict["error"]
        assert service.get(result["handle"])["text"] == TEXT  # stored, and its handle returned
        assert "a verdict of a handoff failed" in caplog.text
        assert counted(service) == 0  # nothing was served
        monkeypatch.undo()
        again = service.evaluate(handle=result["handle"], profiles=["kind"])["verdicts"]["kind"]
        assert again["label"] == "fruit"
    finally:
        service.close()


@pytest.mark.usefixtures("fruit_tools_profile")
@pytest.mark.parametrize("threads", [2, 0], ids=["write-beside", "write-first"])
def test_a_failed_write_stores_nothing_and_counts_no_verdict(settings, fake_embedder, threads):
    service = started(settings, fake_embedder, handoff_write_threads=threads)
    try:
        before = service.namespaces()["namespaces"]
        with pytest.raises(NotFound, match="parent"):  # checked inside the write's transaction
            service.handoff(TEXT, evaluate=["kind"], parent="h_" + "0" * 10)
        assert service.namespaces()["namespaces"] == before
        assert counted(service) == 0  # the verdicts computed beside the failed write were dropped uncounted
        stored = service.handoff(TEXT, evaluate=["kind"])
        assert stored["verdicts"]["kind"]["label"] == "fruit" and counted(service) == 1
    finally:
        service.close()


@pytest.mark.usefixtures("fruit_tools_profile")
def test_the_write_runs_beside_the_verdicts_and_equals_writing_first(settings, fake_embedder, monkeypatch):
    """The write is on a helper thread while the call's thread judges (setting 0: on the call's thread, first),
    and the result is the same either way."""
    writers: list[str] = []
    real_add = SqliteStore.add

    def add(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "add", add)
    results = {}
    for threads in (2, 0):
        service = started(settings, fake_embedder, handoff_write_threads=threads)
        try:
            writers.clear()
            result = service.handoff(TEXT, evaluate=["kind"], detail=True)
            results[threads] = result["verdicts"]
            assert service.get(result["handle"])["text"] == TEXT
            assert writers == (["handoff-write_0"] if threads else [threading.current_thread().name])
            service.handoff(TEXT + " again")  # no verdicts asked: written on the call's thread, nothing to overlap
            assert writers[-1] == threading.current_thread().name
        finally:
            service.close()
    assert results[2] == results[0]


def test_a_busy_helper_means_the_call_writes_itself():
    writes = WriteBeside(1)
    release = threading.Event()
    try:
        busy = writes.start(lambda: release.wait(10) and threading.current_thread().name)
        here = writes.start(lambda: threading.current_thread().name)
        assert here.result(5) == threading.current_thread().name  # did not queue behind the busy helper
        release.set()
        assert busy.result(5).startswith("handoff-write")
        failing = writes.start(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):  # a helper's error reaches the caller
            failing.result(5)
    finally:
        release.set()
        writes.close()
    assert writes.start(lambda: 7).result(1) == 7  # after close: on the calling thread


@pytest.mark.usefixtures("fruit_tools_profile")
def test_on_postgres_the_write_beside_stores_what_another_server_reads(
    settings, fake_embedder, monkeypatch, postgres, pg_schema
):
    """The shared store: the helper thread writes through the PostgreSQL pool; another server reading the row back
    computes the verdicts the handoff returned, and a failing verdict still returns a stored handle."""
    shared = {"store_url": postgres.url, "store_schema": pg_schema, "verdict_cache_size": 0}
    one = started(settings, fake_embedder, **shared)
    other = started(
        settings.model_copy(update={"data_dir": settings.data_dir.parent / "other"}), fake_embedder, **shared
    )
    try:
        for text in (TEXT, "hammer wrench screwdriver for the workshop", "apple hammer"):
            stored = one.handoff(text, evaluate=["kind"], from_agent="a", meta={"k": 1})
            assert other.evaluate(handle=stored["handle"], profiles=["kind"])["verdicts"] == stored["verdicts"]
            assert other.get(stored["handle"]) | {"created_at": 0} == {
                "handle": stored["handle"],
                "text": text,
                "from_agent": "a",
                "meta": {"k": 1},
                "created_at": 0,
            }
        monkeypatch.setattr(FittedProfile, "verdict", lambda *a, **k: 1 / 0)
        kept = one.handoff(TEXT, evaluate=["kind"])
        assert "ZeroDivisionError" in kept["verdicts"]["kind"]["error"] and other.get(kept["handle"])["text"] == TEXT
    finally:
        one.close()
        other.close()


def unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_search_finds_a_handoff_the_catch_up_thread_has_not_added(tmp_path, monkeypatch):
    """The insert is off the writing call's path; the next search catches up on every committed row itself."""
    store = SqliteStore(tmp_path, 16, "m")
    try:
        store.add("ns", unit(20), ["x"] * 20)
        store.similar("ns", unit(1)[0], 1)  # the index is loaded: later writes are handed to the catch-up thread
        held, entered = threading.Event(), threading.Event()
        real = NamespaceIndexes._add_committed

        def slow(self, namespace):
            entered.set()
            held.wait(10)
            real(self, namespace)

        monkeypatch.setattr(NamespaceIndexes, "_add_committed", slow)
        late = store.add("ns", unit(1, seed=5), ["late"])[0]  # returns before the insert
        assert entered.wait(10) and not held.is_set()
        hits = store.similar("ns", late.vector, 1)  # the catch-up thread is still held: the search adds the row
        assert hits[0][0].handle == late.handle and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        held.set()
        assert store._indexes.settled(10)
        assert [h.handle for h, _ in store.similar("ns", late.vector, 2)][0] == late.handle  # added once
        assert len(store._indexes.entries["ns"].index) == 21
    finally:
        held.set()
        store.close()


def test_close_while_rows_wait_for_the_catch_up_thread_loses_nothing(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path, 16, "m")
    store.add("ns", unit(5), ["x"] * 5)
    store.similar("ns", unit(1)[0], 1)
    monkeypatch.setattr(NamespaceIndexes, "_catch_up_later", lambda self: None)  # the thread never adds anything
    late = store.add("ns", unit(1, seed=9), ["late"])[0]
    store.close()  # saves the index without the late row
    reopened = SqliteStore(tmp_path, 16, "m")
    try:
        assert reopened.similar("ns", late.vector, 1)[0][0].handle == late.handle  # caught up from the record
        assert reopened.count("ns") == 6
    finally:
        reopened.close()


# --- end to end: a real `mcp-latent serve` with the real model, driven by the SDK client ---------------------------


@pytest.mark.e2e
@pytest.mark.anyio
@pytest.mark.usefixtures("warm_profile_cache")
async def test_handoff_verdicts_equal_evaluate_by_handle_through_a_real_server(tmp_path):
    """The verdicts a handoff computed beside its write equal those computed afresh from the record it stored
    (the memo is off, so `evaluate` by handle judges the vector and text read back from SQLite), and the handle is
    found by `similar` at once (the HNSW insert happens after the reply)."""
    from mcp import Client
    from test_e2e_stdio import call, params

    server = params(tmp_path / "d")
    server.env = {**server.env, "MCP_LATENT_VERDICT_CACHE_SIZE": "0"}
    profiles = ["risk", "roi", "category"]
    texts = [
        "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test.",
        "Fix a typo in the onboarding email template and add a unit test for it.",
        "Buy a second monitor for every engineer to speed up code review.",
        "What time is the team lunch on Friday?",
    ]
    async with Client(server, mode="legacy", read_timeout_seconds=300) as client:
        first = (await call(client, "embed", {"texts": ["a note stored before the handoffs"]}))["handles"][0]
        await call(client, "similar", {"handle": first, "k": 1})  # the namespace's index is loaded from here on
        for text in texts:
            handles = set()
            for detail in (False, True):
                stored = await call(client, "handoff", {"text": text, "evaluate": profiles, "detail": detail})
                handles.add(stored["handle"])
                again = await call(
                    client, "evaluate", {"handle": stored["handle"], "profiles": profiles, "detail": detail}
                )
                assert set(stored["verdicts"]) == set(profiles)
                assert stored["verdicts"] == again["verdicts"]
                assert all("error" not in v and "fitting" not in v for v in again["verdicts"].values())
                assert (await call(client, "get", {"handle": stored["handle"]}))["text"] == text
            hits = (await call(client, "similar", {"text": text, "k": 2}))["similar"]
            assert {hit["handle"] for hit in hits} == handles  # both just stored (same text): found at once
