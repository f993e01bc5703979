"""The `LatentStore` contract (store.py), checked against every backend.

A backend joins by adding a parameter to `open_backend`: a factory that opens a new store instance on ONE
shared state each time it is called (two instances stand for two processes or two hosts). The PostgreSQL
backend runs against a real PostgreSQL + pgvector (the session's `postgres` fixture), one schema per test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from mcp_latent.errors import InvalidInput, NotFound, StoreError
from mcp_latent.store.base import UNKNOWN_TEACHER, HandoffFilter, LatentStore
from mcp_latent.store.sqlite import SqliteStore

DIM = 16


def unit(rows: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=["sqlite", "postgres"])
def open_backend(request, tmp_path) -> Iterator[Callable[[], LatentStore]]:
    opened: list[LatentStore] = []
    if request.param == "postgres":
        from mcp_latent.store.postgres import PostgresStore

        url, schema = request.getfixturevalue("postgres").url, request.getfixturevalue("pg_schema")

    def factory() -> LatentStore:
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "state", DIM, "m")
        else:
            store = PostgresStore(url, DIM, "m", schema=schema)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_backend) -> LatentStore:
    return open_backend()


def test_backend_implements_the_protocol(store):
    assert isinstance(store, LatentStore) and store.dim == DIM


def test_add_get_and_namespaces(store):
    records = store.add("ns", unit(3), ["a", "b", None], from_agent="A", meta={"k": 1})
    got = store.get(records[1].handle, "ns")
    assert (got.text, got.from_agent, got.meta) == ("b", "A", {"k": 1})
    np.testing.assert_allclose(got.vector, unit(3)[1])
    with pytest.raises(NotFound):
        store.get(records[0].handle, "other")
    with pytest.raises(InvalidInput):
        store.get("h_nope", "ns")
    assert [r.text for r in store.export("ns")] == ["a", "b", None]
    listed = store.namespaces()[0]
    assert (listed["namespace"], listed["count"]) == ("ns", 3) and listed["oldest"] <= listed["newest"]


def test_namespaces_follow_adds_compaction_and_drops(store):
    """Listed from the counters (no scan of `handoffs`): counts, first/last written, emptied namespaces gone."""
    first = store.add("a", unit(2), ["a1", "a2"])
    store.add("b", unit(1, 1), ["b1"])
    last = store.add("a", unit(1, 2), ["a3"])[0]
    listed = {entry["namespace"]: entry for entry in store.namespaces()}
    assert {n: e["count"] for n, e in listed.items()} == {"a": 3, "b": 1}
    assert (listed["a"]["oldest"], listed["a"]["newest"]) == (first[0].created_at, last.created_at)
    assert store.compact("a", max_records=1) == 2
    listed = {entry["namespace"]: entry for entry in store.namespaces()}
    assert listed["a"]["count"] == 1 and listed["a"]["oldest"] == listed["a"]["newest"] == last.created_at
    assert store.drop("b") == 1
    assert [entry["namespace"] for entry in store.namespaces()] == ["a"]


def test_sqlite_namespaces_never_scan_the_handoffs_table(tmp_path):
    """The listing must cost per namespace, not per handoff: no full scan of `handoffs` in its query plan."""
    store = SqliteStore(tmp_path / "state", DIM, "m")
    try:
        store.add("ns", unit(3), ["a", "b", "c"])
        statements: list[str] = []
        store._reader().set_trace_callback(statements.append)
        store.namespaces()
        store._reader().set_trace_callback(None)
        plans = [
            " / ".join(row[-1] for row in store._reader().execute("EXPLAIN QUERY PLAN " + sql))
            for sql in statements
            if sql.lstrip().upper().startswith("SELECT")
        ]
        assert plans and not any("SCAN handoffs" in plan or "SCAN h " in plan for plan in plans), plans
    finally:
        store.close()


def test_parent_in_another_namespace_is_refused_and_nothing_written(store):
    parent = store.add("a", unit(1), ["p"])[0].handle
    assert store.add("a", unit(1, 1), ["c"], parent=parent)[0].parent == parent
    with pytest.raises(NotFound, match="parent"):
        store.add("b", unit(1), ["c"], parent=parent)
    assert store.count("b") == 0


def test_compaction_by_another_instance_reaches_this_ones_index(open_backend):
    """Issue #12: after another process compacted a namespace to 5 records, similar(k=5) returned 1 hit."""
    first, second = open_backend(), open_backend()
    vectors = unit(40)
    records = first.add("ns", vectors, [str(i) for i in range(40)])
    assert len(first.similar("ns", vectors[0], 5)) == 5  # first now holds an index of all 40
    assert second.compact("ns", max_records=5) == 35
    hits = first.similar("ns", vectors[0], 5)
    assert {h.handle for h, _ in hits} == {r.handle for r in records[-5:]}


def test_drop_by_another_instance_reaches_this_ones_index(open_backend):
    first, second = open_backend(), open_backend()
    first.add("ns", unit(20), ["old"] * 20)
    first.similar("ns", unit(1, 5)[0], 3)
    assert second.drop("ns") == 20
    fresh = second.add("ns", unit(3, 7), ["new"] * 3)
    hits = first.similar("ns", unit(1, 5)[0], 10)
    assert {h.handle for h, _ in hits} == {r.handle for r in fresh}


def test_retention_caps_every_namespace_and_ages_out_idle_ones(store):
    """Issue #12: cap 2 with writes alternating A and B (40 each) left A with 40 records."""
    for i in range(40):
        store.add("A", unit(1, i), ["a"])
        store.add("B", unit(1, 100 + i), ["b"])
    assert store.retention(max_records=2) == {"A": 38, "B": 38}
    assert store.count("A") == store.count("B") == 2
    store.add("idle", unit(3), ["x"] * 3)
    time.sleep(0.05)
    assert store.retention(ttl_seconds=0.01) == {"A": 2, "B": 2, "idle": 3}
    assert store.count() == 0


def test_counts_are_exact_across_instances_through_adds_and_removals(open_backend):
    """count() reads counters the store maintains (it is on every /healthz poll); they must equal the records."""
    first, second = open_backend(), open_backend()
    assert (first.count(), first.count("A")) == (0, 0)
    for i in range(5):
        first.add("A", unit(2, i), ["a", "a"])
        second.add("B", unit(1, 50 + i), ["b"])
    assert (second.count(), second.count("A"), first.count("B"), first.count("none")) == (15, 10, 5, 0)
    assert first.compact("A", max_records=4) == 6
    assert second.drop("B") == 5
    assert (first.count(), second.count(), second.count("A"), second.count("B")) == (4, 4, 4, 0)
    second.add("B", unit(1, 99), ["again"])
    assert {n["namespace"]: n["count"] for n in first.namespaces()} == {"A": 4, "B": 1}
    assert (first.count(), first.count("B")) == (5, 1)


def test_taught_exemplars_append_and_read_since_a_cursor(open_backend):
    first, second = open_backend(), open_backend()
    one = first.add_taught("risk", "high", "drop the prod database", source="teach")
    two = first.add_taught("mood", "sad", "a catastrophe")
    assert one is not None and two is not None and one.id < two.id
    assert [(t.profile, t.label, t.text, t.source) for t in second.taught()] == [
        ("risk", "high", "drop the prod database", "teach"),
        ("mood", "sad", "a catastrophe", None),
    ]
    assert [t.text for t in second.taught(after=one.id)] == ["a catastrophe"]
    assert [t.text for t in second.taught(profile="risk")] == ["drop the prod database"]


def test_taught_import_key_is_idempotent(store):
    assert store.add_taught("p", "a", "x", source="import:p.taught.jsonl", import_key="p.taught.jsonl:1") is not None
    assert store.add_taught("p", "a", "x", source="import:p.taught.jsonl", import_key="p.taught.jsonl:1") is None
    assert len(store.taught(profile="p")) == 1


def test_taught_exemplars_record_their_teacher_and_when(open_backend):
    first, second = open_backend(), open_backend()
    before = time.time() - 1
    taught = first.add_taught("risk", "high", "rm -rf /", source="teach", teacher="planner")
    old = first.add_taught("risk", "low", "rename a file")  # as taught before teachers were recorded
    assert taught is not None and taught.teacher == "planner" and before <= taught.taught_at <= time.time() + 1
    read = {t.text: t for t in second.taught()}
    assert read["rm -rf /"].teacher == "planner" and read["rm -rf /"].taught_at == pytest.approx(taught.taught_at)
    assert read["rename a file"].teacher is None and old is not None
    assert second.taught_counts() == {"risk": {"planner": 1, UNKNOWN_TEACHER: 1}}


def test_find_and_revert_taught_by_teacher_and_time(open_backend):
    first, second = open_backend(), open_backend()
    a = first.add_taught("risk", "low", "drop the prod database", teacher="mallory")
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    b = first.add_taught("risk", "low", "disable the firewall", teacher="mallory")
    c = first.add_taught("risk", "high", "delete all backups", teacher="alice")
    d = first.add_taught("mood", "sad", "a catastrophe", teacher="mallory")
    assert a and b and c and d
    assert [t.id for t in second.find_taught(teacher="mallory")] == [a.id, b.id, d.id]
    assert [t.id for t in second.find_taught(teacher="mallory", since=middle)] == [b.id, d.id]
    assert [t.id for t in second.find_taught(teacher="mallory", until=middle)] == [a.id]
    assert [t.id for t in second.find_taught(teacher="mallory", profile="risk")] == [a.id, b.id]
    assert [t.id for t in second.find_taught(teacher=UNKNOWN_TEACHER)] == []
    cursor = second.changes().cursor
    reverted = second.revert_taught([a.id, b.id, 10**9], reverted_by="operator")
    assert [t.id for t in reverted] == [a.id, b.id]
    assert second.revert_taught([a.id]) == []  # reverting twice reverts nothing more
    changed = first.changes(cursor)
    assert changed.reverted == {"risk"} and changed.profiles == set()
    # A reverted exemplar is never read again (a restarting server, another server following), nor counted.
    assert [t.id for t in first.taught()] == [c.id, d.id]
    assert [t.id for t in first.find_taught(teacher="mallory")] == [d.id]
    assert first.taught_counts() == {"risk": {"alice": 1}, "mood": {"mallory": 1}}


def test_a_reverted_import_stays_reverted_on_reimport(store):
    first = store.add_taught("p", "a", "x", source="import:p.taught.jsonl", import_key="p.taught.jsonl:1")
    assert first is not None and [t.id for t in store.revert_taught([first.id])] == [first.id]
    assert store.add_taught("p", "a", "x", source="import:p.taught.jsonl", import_key="p.taught.jsonl:1") is None
    assert store.taught(profile="p") == []


def test_changes_name_removals_and_teaches_but_not_inserts(open_backend):
    first, second = open_backend(), open_backend()
    cursor = second.changes().cursor
    first.add("ns", unit(5), ["x"] * 5)
    quiet = second.changes(cursor)
    assert quiet.scopes == {} and quiet.cursor == cursor
    first.compact("ns", max_records=2)
    first.add_taught("risk", "high", "rm -rf /")
    changed = second.changes(cursor)
    assert changed.namespaces == {"ns"} and changed.profiles == {"risk"} and changed.cursor > cursor
    assert second.changes(changed.cursor).scopes == {}
    first.drop("ns")
    assert second.changes(changed.cursor).namespaces == {"ns"}


def test_similar_is_best_first_complete_and_per_namespace(store):
    """A small namespace beside a large one still gets its full top-k (a filtered HNSW walk can come up short)."""
    big = unit(3000, seed=1)
    for start in range(0, len(big), 1000):
        store.add("big", big[start : start + 1000], [None] * 1000)
    small = store.add("small", unit(30, seed=2), [f"s{i}" for i in range(30)])
    query = unit(1, seed=3)[0]
    hits = store.similar("small", query, 10)
    assert len(hits) == 10 and all(h.namespace == "small" for h, _ in hits)
    similarities = [s for _, s in hits]
    assert similarities == sorted(similarities, reverse=True) and all(-1 <= s <= 1 for s in similarities)
    exact = sorted(small, key=lambda r: -float(r.vector @ query))[:10]
    assert [h.handle for h, _ in hits] == [r.handle for r in exact]
    np.testing.assert_allclose(similarities, [float(r.vector @ query) for r in exact], atol=1e-5)


def test_similar_k_beyond_the_search_list_and_exclude(store):
    records = store.add("ns", unit(150, seed=4), [None] * 150)
    hits = store.similar("ns", records[0].vector, 120, exclude=records[0].handle)
    assert len(hits) == 120 and records[0].handle not in {h.handle for h, _ in hits}
    assert len(store.similar("empty", records[0].vector, 5)) == 0


def test_export_streams_every_record_in_order(store):
    made = store.add("ns", unit(1200, seed=5), [str(i) for i in range(1200)])
    assert [r.handle for r in store.export("ns")] == [r.handle for r in made]


def test_a_closed_store_refuses_with_a_store_error(open_backend):
    store = open_backend()
    store.add("ns", unit(1), ["x"])
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.add("ns", unit(1), ["y"])


# --- forgetting and filtering (issue 22) ----------------------------------------------------------------------------


def test_forget_one_handle_is_gone_for_every_instance_and_their_indexes(open_backend):
    first, second = open_backend(), open_backend()
    vectors = unit(30, seed=8)
    records = first.add("ns", vectors, [str(i) for i in range(30)], from_agent="A")
    other = first.add("other", vectors[:1], ["same vector, other namespace"])[0]
    assert first.similar("ns", vectors[0], 3)[0][0].handle == records[0].handle  # first holds a loaded index
    second.similar("ns", vectors[0], 3)  # and so does second
    assert second.forget("other", handle=records[0].handle) == 0  # another namespace's handle is not there
    assert second.forget("ns", handle=records[0].handle) == 1
    assert second.forget("ns", handle=records[0].handle) == 0  # forgetting twice removes nothing more
    for store in (first, second):
        with pytest.raises(NotFound):
            store.get(records[0].handle, "ns")
        hits = store.similar("ns", vectors[0], 30)
        assert records[0].handle not in {h.handle for h, _ in hits} and len(hits) == 29
        assert records[0].handle not in {r.handle for r in store.recent("ns", 50)}
        assert store.count("ns") == 29
    assert first.get(other.handle, "other").text == "same vector, other namespace"
    assert "handoffs:ns" in first.changes().scopes  # the removal moved the namespace's generation


def test_forget_every_handle_of_one_agent(open_backend):
    first, second = open_backend(), open_backend()
    a = first.add("ns", unit(10, seed=9), ["a"] * 10, from_agent="alice")
    b = first.add("ns", unit(5, seed=10), ["b"] * 5, from_agent="bob")
    elsewhere = first.add("ns2", unit(2, seed=11), ["a2"] * 2, from_agent="alice")
    first.similar("ns", a[0].vector, 3)
    assert second.forget("ns", from_agent="alice") == 10
    hits = first.similar("ns", a[0].vector, 15)
    assert {h.handle for h, _ in hits} == {r.handle for r in b}
    assert first.count("ns2") == 2 and {r.handle for r in first.recent("ns2", 5)} == {r.handle for r in elsewhere}
    with pytest.raises(InvalidInput, match="exactly one"):
        first.forget("ns")
    with pytest.raises(InvalidInput, match="exactly one"):
        first.forget("ns", handle=b[0].handle, from_agent="bob")
    with pytest.raises(InvalidInput, match="malformed handle"):
        first.forget("ns", handle="h_nope")


def test_recent_is_newest_first_and_filtered(store):
    made = [store.add("ns", unit(1, seed=i), [f"t{i}"], from_agent="A" if i % 2 else "B")[0] for i in range(8)]
    assert [r.handle for r in store.recent("ns", 3)] == [r.handle for r in made[::-1][:3]]
    only_a = store.recent("ns", 10, HandoffFilter(from_agent="A"))
    assert [r.handle for r in only_a] == [r.handle for r in made[::-1] if r.from_agent == "A"]
    assert store.recent("nothing", 5) == []


def test_similar_filters_by_agent_meta_and_time_window(store):
    """Each filter keeps exactly the matching records, best first, complete (k matches when k exist)."""
    vectors = unit(300, seed=12)
    metas = [{"topic": "billing" if i % 3 == 0 else "ops", "n": i % 5, "urgent": i % 4 == 0} for i in range(300)]
    records = []
    for i in range(0, 300, 100):  # three batches: three distinct created_at values to window on
        records += [
            store.add("ns", vectors[j : j + 1], [f"t{j}"], from_agent=f"agent{j % 7}", meta=metas[j])[0]
            for j in range(i, i + 100)
        ]
        time.sleep(0.02)
    store.add("ns", unit(1, seed=13), ["string n"], meta={"n": "1", "urgent": 1})  # not n=1, not urgent=true
    query = unit(1, seed=14)[0]
    cut = records[100].created_at
    filters = [
        HandoffFilter(from_agent="agent3"),
        HandoffFilter(meta={"topic": "billing"}),
        HandoffFilter(meta={"n": 1}),
        HandoffFilter(meta={"urgent": True, "topic": "ops"}),
        HandoffFilter(since=cut),
        HandoffFilter(until=cut),
        HandoffFilter(from_agent="agent1", meta={"topic": "ops"}, since=cut),
    ]
    everything = list(store.export("ns"))
    for where in filters:
        expected = sorted((r for r in everything if where.matches(r)), key=lambda r: -float(r.vector @ query))[:10]
        assert expected, where
        hits = store.similar("ns", query, 10, where=where)
        assert [h.handle for h, _ in hits] == [r.handle for r in expected], where
        assert all(where.matches(h) for h, _ in hits)
    assert store.similar("ns", query, 5, where=HandoffFilter(from_agent="nobody")) == []
    assert store.similar("ns", query, 5, where=HandoffFilter(meta={"topic": "billing'; DROP TABLE handoffs"})) == []
    assert store.count("ns") == 301


def test_sqlite_filtered_search_over_many_matches_walks_the_graph_with_an_allow_list(tmp_path, monkeypatch):
    """Past FILTER_EXACT_ROWS matches the graph is searched with the matches as an allow-list: same top-k."""
    import mcp_latent.store.sqlite as sqlite_module

    store = SqliteStore(tmp_path / "state", DIM, "m")
    try:
        vectors = unit(2000, seed=15)
        records = store.add("ns", vectors, [None] * 2000)
        store.add("ns", unit(500, seed=16), [None] * 500, from_agent="other")
        query = unit(1, seed=17)[0]
        where = HandoffFilter(until=time.time() + 60)
        exact = store.similar("ns", query, 10, where=HandoffFilter(from_agent="other"))
        monkeypatch.setattr(sqlite_module, "FILTER_EXACT_ROWS", 100)
        walked = store.similar("ns", query, 10, where=HandoffFilter(from_agent="other"))
        assert [h.handle for h, _ in walked] == [h.handle for h, _ in exact]
        store.forget("ns", handle=exact[0][0].handle)
        after = store.similar("ns", query, 10, where=HandoffFilter(from_agent="other"))
        assert exact[0][0].handle not in {h.handle for h, _ in after} and len(after) == 10
        everything = store.similar("ns", query, 10, where=where)
        expected = sorted(records + [h for h, _ in after], key=lambda r: -float(r.vector @ query))
        assert len(everything) == 10 and everything[0][1] >= expected[0].vector @ query - 1e-5
    finally:
        store.close()
