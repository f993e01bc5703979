#!/usr/bin/env python3
"""Load, soak and faults of real `mcp-latent serve` processes (real model): the figures of docs/load-and-faults.md.

    .venv/bin/python tools/bench_faults.py [--parts load,soak,faults] [--clients 8] [--calls-per-client 2000]
                                           [--soak-minutes 10] [--soak-rate 10] [--out faults-out]

- load: bench_reliability.py's HTTP part: `--clients` MCP sessions, each `--calls-per-client` mixed calls at once
  (handoff with and without verdicts, evaluate by handle and by text, similar, get, embed, profiles, namespaces,
  teach); every error counts; every acknowledged handle is read back afterwards. p50/p99 per call.
- soak: `--soak-rate` mixed calls a second (handoff, evaluate, similar, get, teach), paced, for `--soak-minutes`;
  the server's resident memory (VmRSS) sampled every 10 s. Growth = the last sample against the one at the end of
  the first minute (the warm-up: caches and the index fill); it must stay under 10%.
- faults: writers that handoff and teach without pause, and count a write only once it is acknowledged;
  (a) SQLite: kill -9 of the server mid-write, restart it, (b) PostgreSQL (a throwaway local one, the [pgserver]
  extra): two servers, the database killed and restarted mid-load, then kill -9 of one server mid-write while the
  other carries on. Then the store is opened directly: every acknowledged handoff and every acknowledged teach
  must be there.

Servers share one profile cache (`--profile-cache`, kept between runs) so the shipped profiles fit once.
Writes faults.json and faults.md. Not in CI (minutes of model time); tests/test_bench_faults.py runs `--quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_reliability import MOOD_PROFILE, free_port, http_session, load, percentile, proposal, start_http

TOKEN = "faults-bench-token"
SOAK_OPS = ["handoff", "evaluate", "similar", "get", "teach"]
SOAK_WEIGHTS = [30, 35, 15, 15, 5]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MB: VmRSS (all resident), RssAnon (the process's own memory) or
    RssFile (mapped files: the model's weights are paged in as new tokens are seen, up to the file's size)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def prepare(args: argparse.Namespace, work: Path) -> float:
    """Write the benchmark's own profile, then run one server until every profile is fitted (/healthz "ok"), so
    the shared profile cache holds every fit: the parts measure serving, not a first fit (docs/first-hour)."""
    (work / "profiles").mkdir(parents=True, exist_ok=True)
    (work / "profiles" / "fuzzmood.toml").write_text(MOOD_PROFILE, encoding="utf-8")
    started = time.monotonic()
    port = free_port()
    proc, log = start_http(work, port, TOKEN, name="warm", **args.server_env)
    try:
        while httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json().get("status") != "ok":
            if time.monotonic() - started > 1800 or proc.poll() is not None:
                raise RuntimeError(f"profiles did not fit: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(120)
    return round(time.monotonic() - started, 1)


# --- soak -------------------------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    proc, _ = start_http(work, port, TOKEN, name="soak", **args.server_env)
    rng = random.Random(args.seed)
    latencies: list[float] = []
    errors: list[str] = []
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
    split: list[tuple[float, float, float, int]] = []  # (seconds, RssAnon MB, RssFile MB, handoffs stored)
    handles: list[str] = []
    duration = args.soak_minutes * 60
    try:
        http, client = await http_session(port, TOKEN)
        async with http, client:
            started = time.monotonic()
            next_sample = started
            for i in range(10**9):
                now = time.monotonic()
                if now - started >= duration:
                    break
                if now >= next_sample:
                    samples.append((round(now - started, 1), round(rss_mb(proc.pid), 1)))
                    anon, mapped = rss_mb(proc.pid, "RssAnon"), rss_mb(proc.pid, "RssFile")
                    split.append((round(now - started, 1), round(anon, 1), round(mapped, 1), len(handles)))
                    next_sample += 10
                op = rng.choices(SOAK_OPS, args.soak_weights)[0] if handles else "handoff"
                handle = rng.choice(handles[-500:]) if handles else ""
                tool, arguments = {
                    "handoff": ("handoff", {"text": proposal(rng), "evaluate": ["risk"] if i % 2 else []}),
                    "evaluate": ("evaluate", {"handle": handle, "profiles": ["risk", "roi", "category"]}),
                    "similar": ("similar", {"handle": handle, "k": 5}),
                    "get": ("get", {"handle": handle}),
                    "teach": (
                        "teach",
                        {"profile": "fuzzmood", "label": rng.choice(["happy", "sad"]), "text": proposal(rng)},
                    ),
                }[op]
                began = time.perf_counter()
                try:
                    result = await client.call_tool(tool, arguments)
                    if result.is_error:
                        errors.append(f"{op}: {result.content[0].text[:200]}")
                    elif tool == "handoff":
                        handles.append(result.structured_content["handle"])
                except Exception as exc:
                    errors.append(f"{op}: {exc!r}"[:200])
                latencies.append(time.perf_counter() - began)
                # Paced: call i starts at i / rate seconds (a steady rate, not as fast as possible).
                await anyio.sleep(max(0.0, started + (i + 1) / args.soak_rate - time.monotonic()))
            samples.append((round(time.monotonic() - started, 1), round(rss_mb(proc.pid), 1)))
            anon, mapped = rss_mb(proc.pid, "RssAnon"), rss_mb(proc.pid, "RssFile")
            split.append((samples[-1][0], round(anon, 1), round(mapped, 1), len(handles)))
    finally:
        proc.terminate()
        proc.wait(120)
    warm = next((rss for at, rss in samples if at >= 60), samples[0][1])
    last = samples[-1][1]
    return {
        "minutes": args.soak_minutes,
        "rate_per_s": args.soak_rate,
        "calls": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:10],
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "rss_start_mb": samples[0][1],
        "rss_after_1_min_mb": warm,
        "rss_end_mb": last,
        "rss_max_mb": max(rss for _, rss in samples),
        "rss_growth_after_warmup": round((last - warm) / warm, 4),
        "rss_at_minute_mb": {m: next((r for at, r in samples if at >= m * 60), None) for m in (1, 5, 10, 20, 30)},
        "handoffs_stored": len(handles),
        "rss_samples": samples,
        "rss_anon_file_handoffs_samples": split,
    }


# --- faults -----------------------------------------------------------------------------------------------------


class Ledger:
    """What the servers acknowledged: handles (namespace, handle) and taught (label, text) pairs."""

    def __init__(self) -> None:
        self.handles: list[tuple[str, str]] = []
        self.taught: list[tuple[str, str]] = []
        self.tool_errors: list[str] = []

    @property
    def writes(self) -> int:
        return len(self.handles) + len(self.taught)


async def writer(port: int, name: str, ledger: Ledger, may_die: anyio.Event) -> None:
    """handoff, and every third step a teach, until cancelled; a write is counted once it is acknowledged."""
    try:
        http, client = await http_session(port, TOKEN)
        async with http, client:
            for i in range(10**9):
                namespace = "shared" if i % 2 else name
                result = await client.call_tool("handoff", {"text": f"{name} writes step {i}", "namespace": namespace})
                if result.is_error:
                    ledger.tool_errors.append(result.content[0].text[:300])
                    await anyio.sleep(0.05)
                    continue
                ledger.handles.append((namespace, result.structured_content["handle"]))
                if i % 3 == 0:
                    label, text = ("happy" if i % 2 else "sad"), f"{name} teaches step {i}"
                    taught = await client.call_tool("teach", {"profile": "fuzzmood", "label": label, "text": text})
                    if taught.is_error:
                        ledger.tool_errors.append(taught.content[0].text[:300])
                    else:
                        ledger.taught.append((label, text))
    except Exception:
        if not may_die.is_set():
            raise  # only the client of a server killed on purpose may lose its connection


async def until(ledger: Ledger, count: int, seconds: float = 300) -> None:
    with anyio.fail_after(seconds):
        while ledger.writes < count:
            await anyio.sleep(0.01)


def verify(ledger: Ledger, **settings: Any) -> dict[str, int]:
    """Open the store directly (no model) and look for every acknowledged write."""
    from mcp_latent.errors import NotFound
    from mcp_latent.settings import Settings
    from mcp_latent.store.factory import open_store

    store = open_store(Settings(**settings))
    try:
        lost_handles = 0
        for namespace, handle in ledger.handles:
            try:
                store.get(handle, namespace)
            except NotFound:
                lost_handles += 1
        stored = {(e.label, e.text) for e in store.taught(profile="fuzzmood")}
        lost_taught = sum(1 for pair in ledger.taught if pair not in stored)
    finally:
        store.close()
    return {
        "handoffs_acknowledged": len(ledger.handles),
        "handoffs_lost": lost_handles,
        "teaches_acknowledged": len(ledger.taught),
        "teaches_lost": lost_taught,
        "tool_errors": len(ledger.tool_errors),
    }


async def sqlite_kill_9(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    proc, _ = start_http(work, port, TOKEN, name="crash", **args.server_env)
    ledger, dying = Ledger(), anyio.Event()
    try:
        async with anyio.create_task_group() as group:
            for n in range(2):
                group.start_soon(writer, port, f"w{n}", ledger, dying)
            await until(ledger, args.fault_writes)
            dying.set()
            os.kill(proc.pid, signal.SIGKILL)  # mid-write: both writers have calls in flight
            await anyio.to_thread.run_sync(proc.wait, 10)
            group.cancel_scope.cancel()
    finally:
        if proc.poll() is None:
            proc.kill()
    # Restarted on the crashed data dir: it must open, repair its index and answer.
    proc, _ = start_http(work, port, TOKEN, name="crash", **args.server_env)
    proc.terminate()
    proc.wait(120)
    return verify(ledger, data_dir=work / "crash-data") | {"examples": ledger.tool_errors[:3]}


async def postgres_restart_and_kill_9(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from mcp_latent.store.local_postgres import LocalPostgres

    database = LocalPostgres(work / "pg").start()
    env = {
        **args.server_env,
        "MCP_LATENT_STORE_URL": database.url,
        "MCP_LATENT_STORE_POLL_SECONDS": "0.5",
        "MCP_LATENT_STORE_TIMEOUT_SECONDS": "2",
    }
    ports = [free_port(), free_port()]
    servers = [start_http(work, port, TOKEN, name=f"pg{n}", **env)[0] for n, port in enumerate(ports)]
    ledger, dying = Ledger(), anyio.Event()
    try:
        async with anyio.create_task_group() as group:
            for n, port in enumerate(ports):
                group.start_soon(writer, port, f"pg{n}", ledger, dying)
            await until(ledger, args.fault_writes)
            down_at = ledger.writes
            await anyio.to_thread.run_sync(database.kill)  # the database crashes mid-load ...
            await anyio.sleep(1.0)
            await anyio.to_thread.run_sync(database.start)  # ... and comes back; the servers reconnect
            await until(ledger, ledger.writes + args.fault_writes)
            dying.set()
            os.kill(servers[0].pid, signal.SIGKILL)  # then one server dies mid-write
            await anyio.to_thread.run_sync(servers[0].wait, 10)
            await until(ledger, ledger.writes + args.fault_writes // 2)  # the other carries on
            group.cancel_scope.cancel()
        report = verify(ledger, store_url=database.url)
        unclear = [e for e in ledger.tool_errors if not ("PostgreSQL" in e and "unreachable" in e)]
        report |= {"writes_before_restart": down_at, "unclear_tool_errors": len(unclear), "examples": unclear[:3]}
        return report
    finally:
        for proc in servers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
        database.destroy()


# --- report -----------------------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    lines = []
    if "load" in report:
        h = report["load"]
        lines += [
            f"Load: {h['clients']} HTTP clients x {h['calls_per_client']:,} mixed calls ({h['calls']:,} calls in "
            f"{h['seconds']} s, {h['calls_per_second']} calls/s): {h['errors']} errors, p50 {h['p50_ms']} ms, "
            f"p99 {h['p99_ms']} ms; {h['handles_acknowledged']:,} handles acknowledged, {h['handles_unreadable']} "
            f"unreadable after; server tracebacks {h['server_tracebacks']}.",
            "",
            "| call | n | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: |",
            *(f"| {op} | {v['n']:,} | {v['p50_ms']} | {v['p99_ms']} |" for op, v in h["per_op"].items()),
            "",
        ]
    if "soak" in report:
        s = report["soak"]
        lines += [
            f"Soak: {s['minutes']} min at {s['rate_per_s']} calls/s ({s['calls']:,} calls): {s['errors']} errors, "
            f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms; RSS {s['rss_start_mb']} MB at start, "
            f"{s['rss_after_1_min_mb']} MB after 1 min, {s['rss_end_mb']} MB at the end (max {s['rss_max_mb']}): "
            f"growth after warm-up {s['rss_growth_after_warmup']:.1%}.",
            "",
        ]
    for key, title in (("sqlite_kill_9", "SQLite, kill -9 of the server mid-write"),
                       ("postgres_faults", "PostgreSQL killed and restarted mid-load, then kill -9 of one of two servers")):  # fmt: skip
        if key in report:
            f = report[key]
            lines.append(
                f"{title}: {f['handoffs_acknowledged']:,} handoffs and {f['teaches_acknowledged']:,} teaches "
                f"acknowledged, {f['handoffs_lost']} and {f['teaches_lost']} lost; {f['tool_errors']} tool errors "
                "during the fault (clear, retryable)."
            )
    return "\n".join(lines) + "\n"


def failed(report: dict[str, Any]) -> bool:
    bad = False
    if "load" in report:
        h = report["load"]
        bad |= bool(h["errors"] or h["handles_unreadable"] or h["server_tracebacks"] or not h["healthy_after"])
    if "soak" in report:  # memory growth is judged only past the warm-up (a soak of 3 minutes or more)
        soak = report["soak"]
        bad |= soak["errors"] > 0 or (soak["minutes"] >= 3 and soak["rss_growth_after_warmup"] >= 0.10)
    for key in ("sqlite_kill_9", "postgres_faults"):
        if key in report:
            bad |= bool(report[key]["handoffs_lost"] or report[key]["teaches_lost"])
            bad |= bool(report[key].get("unclear_tool_errors"))
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="load,soak,faults", help="comma-separated: load, soak, faults")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--calls-per-client", type=int, default=2000)
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="the issue asks 30; default 10")
    parser.add_argument("--soak-rate", type=float, default=10.0, help="calls a second during the soak")
    parser.add_argument(
        "--soak-weights",
        default=",".join(map(str, SOAK_WEIGHTS)),
        help=f"the soak's mix: weights of {', '.join(SOAK_OPS)} (e.g. 30,35,15,15,0: no teach)",
    )
    parser.add_argument("--fault-writes", type=int, default=100, help="acknowledged writes between faults")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile-cache", default=str(Path(tempfile.gettempdir()) / "mcp-latent-bench-profiles"))
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting, e.g. EMBED_CACHE_SIZE=256",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 clients x 50 calls, 0.5 min soak")
    parser.add_argument("--out", default="faults-out")
    args = parser.parse_args()
    args.soak_weights = [float(w) for w in args.soak_weights.split(",")]
    if len(args.soak_weights) != len(SOAK_OPS):
        parser.error(f"--soak-weights takes {len(SOAK_OPS)} weights: {', '.join(SOAK_OPS)}")
    if args.quick:
        args.clients, args.calls_per_client, args.soak_minutes, args.soak_rate, args.fault_writes = 2, 50, 0.5, 5, 20
    args.server_env = {"MCP_LATENT_PROFILE_CACHE_DIR": args.profile_cache}
    args.server_env |= {f"MCP_LATENT_{k.upper()}": v for k, _, v in (item.partition("=") for item in args.setting)}
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "args": vars(args).copy()}
    with tempfile.TemporaryDirectory(prefix="mcp-latent-faults-") as tmp:
        work = Path(tmp)
        report["warm_up_seconds"] = prepare(args, work)
        if "load" in parts:
            report["load"] = anyio.run(load, args, work)
        if "soak" in parts:
            report["soak"] = anyio.run(soak, args, work)
        if "faults" in parts:
            report["sqlite_kill_9"] = anyio.run(sqlite_kill_9, args, work)
            if not args.no_postgres:
                report["postgres_faults"] = anyio.run(postgres_restart_and_kill_9, args, work)
    (out / "faults.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "faults.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
