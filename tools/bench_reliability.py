#!/usr/bin/env python3
"""Reliability of a real `mcp-latent serve` (real model) under fuzzed calls and concurrent HTTP clients.

    .venv/bin/python tools/bench_reliability.py [--fuzz-calls 5000] [--clients 8] [--calls-per-client 2000]
                                               [--seed 1] [--out reliability-out]

Part 1, stdio: `--fuzz-calls` tool calls of every shape, through the official SDK client, to every tool the
server lists: valid arguments, wrong types, unknown names, edge values (empty, whitespace, past every limit,
control characters, huge integers, deep nesting), made-up and real handles, junk. Each outcome is one of
  ok             a result
  tool error     `isError` with a message for the model (what was wrong, what to send)
  crash          the SDK's bare "Error executing tool X": an exception escaped a tool
  raw pydantic   a tool error carrying pydantic's text or links instead of a sentence
  non-tool error the call raised on the client (a JSON-RPC error, a dropped connection) or timed out
The server must stay up (a `profiles` call every 250 calls) and write no traceback to stderr.

Part 2, HTTP: `--clients` clients, each its own MCP session, each making `--calls-per-client` mixed calls at
once (handoff with and without verdicts, evaluate by handle and by text, similar, get, embed, profiles,
namespaces, teach) in a namespace all share and one of their own. Every error counts. Afterwards every acknowledged handle
is read back (`evaluate` by handle in its namespace).

Writes reliability.json and reliability.md. Not run in CI (minutes of model time); `--quick` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from tqdm import tqdm

CRASH = re.compile(r"^Error executing tool \w+$")
NAMESPACES = ["default", "fuzz-a", "fuzz-b"]
SUBJECTS = ["payment service", "login page", "billing export", "search index", "onboarding email", "data warehouse"]
ACTIONS = ["migrate", "rewrite", "deploy", "delete", "refactor", "document", "load-test", "roll back"]
WHEN = ["on Friday night", "next sprint", "without review", "after the audit", "today", "this quarter"]
MOOD_PROFILE = """name = "fuzzmood"
description = "a small user profile the benchmark may teach"
[[labels]]
name = "happy"
examples = ["I love this, great work", "what a wonderful day", "this makes me so glad", "fantastic news"]
[[labels]]
name = "sad"
examples = ["this is terrible news", "I feel so down today", "what a disappointing result", "I am heartbroken"]
"""


def proposal(rng: random.Random) -> str:
    return f"{rng.choice(ACTIONS)} the {rng.choice(SUBJECTS)} {rng.choice(WHEN)} (ticket {rng.randrange(10**6)})"


def server_command() -> list[str]:
    exe = shutil.which("mcp-latent", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "mcp_latent"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LATENT_")}
    return {**env, **extra}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def tracebacks(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Traceback") + text.count("unexpected exception")


# --- part 1: fuzzed calls over stdio ---------------------------------------------------------------------------


class Fuzzer:
    """Arguments of every shape for a tool, drawn from its published input schema."""

    def __init__(self, rng: random.Random, profiles: dict[str, list[str]]):
        self.rng = rng
        self.profiles = profiles  # name -> labels
        self.handles: list[tuple[str, str]] = []  # (handle, namespace) the server returned

    def junk(self, depth: int = 0) -> Any:
        rng = self.rng
        makers = [
            lambda: None,
            lambda: rng.choice([True, False]),
            lambda: rng.choice([0, -1, 1, 7, 2**31, -(2**63), 10**30]),
            lambda: rng.choice([0.5, -1e308, 1e-300, 3.0]),
            lambda: rng.choice(["", " ", "\x00", "h_", "🙂" * 5, "\u202eevil", "null", '["risk"]', "{}", "a" * 300]),
            lambda: proposal(rng),
            lambda: [self.junk(depth + 1) for _ in range(rng.randrange(4))],
            lambda: {rng.choice(["a", "", "text", "$ref"]): self.junk(depth + 1) for _ in range(rng.randrange(3))},
            lambda: self.nested(rng.randrange(5, 60)),
        ]
        return makers[rng.randrange(len(makers) if depth < 3 else 6)]()

    @staticmethod
    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = {"x": value}
        return value

    def edge_text(self) -> str:
        return self.rng.choice(
            ["", "   \n\t", "x" * 20_001, "word " * 3999, "\x00\x01\x02", "🙂" * 500, "a", "<script>alert(1)</script>"]
        )

    def handle(self) -> str:
        rng = self.rng
        if self.handles and rng.random() < 0.7:
            return rng.choice(self.handles)[0]
        return rng.choice(["h_aaaaaaaaaa", "h_", "not a handle", "h_" + "z" * 10, "H_ABCDEFGHIJ", "h_a/../../b"])

    def valid(self, tool: str, name: str, args: dict[str, Any]) -> Any:
        rng = self.rng
        names = list(self.profiles)
        if name == "text":
            return proposal(rng)
        if name == "texts":
            return [proposal(rng) for _ in range(rng.randrange(1, 4))]
        if name in ("handle", "parent"):
            return self.handle()
        if name in ("profiles", "evaluate"):
            chosen = rng.sample(names, rng.randrange(1, len(names) + 1))
            return chosen + (["no-such-profile"] if rng.random() < 0.1 else [])
        if name == "profile":
            return rng.choice(names + ["no-such-profile"])
        if name == "label":
            profile = args.get("profile")
            labels = self.profiles.get(profile, ["high"]) if isinstance(profile, str) else ["high"]
            return rng.choice(labels + ["no-such-label"])
        if name == "namespace":
            return rng.choice(NAMESPACES + ["bad/namespace", ""]) if tool != "drop_namespace" else "fuzz-b"
        if name == "k":
            return rng.randrange(1, 20)
        if name in ("detail", "compare_parent", "return_vectors"):
            return rng.random() < 0.5
        if name == "meta":
            return {"step": rng.randrange(100), "tags": ["fuzz"]}
        if name == "from_agent":
            return f"agent-{rng.randrange(5)}"
        return self.junk()

    def edge(self, name: str) -> Any:
        rng = self.rng
        if name == "text":
            return self.edge_text()
        if name == "texts":
            return rng.choice([[], [self.edge_text()], ["x"] * 257, [proposal(rng), None], "one string"])
        if name == "k":
            return rng.choice([0, -1, 101, 10**12, 2**70, 5.5, "5"])
        if name in ("profiles", "evaluate"):
            return rng.choice([[], [""], ["risk"] * 40, "risk,roi", [None], [f"p{i}" for i in range(100)]])
        if name == "meta":
            return rng.choice([{"big": "x" * 5000}, self.nested(80), {"": None}, []])
        if name == "namespace":
            return rng.choice(["", " ", "x" * 300, "../etc", "ns\x00", "NS"])
        return self.junk()

    def arguments(self, tool: str, schema: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        properties, required = schema.get("properties", {}), set(schema.get("required", []))
        shape = rng.choices(["valid", "wrong type", "edge", "unknown", "junk", "empty"], [40, 15, 20, 10, 10, 5])[0]
        if shape == "empty":
            return {}
        if shape == "junk":
            return {rng.choice(["", "x", "text ", "__class__", "handle"]): self.junk() for _ in range(rng.randrange(4))}
        args: dict[str, Any] = {}
        for name in properties:
            if name in required or rng.random() < 0.5:
                if shape == "wrong type" and rng.random() < 0.5:
                    args[name] = self.junk()
                elif shape == "edge" and rng.random() < 0.5:
                    args[name] = self.edge(name)
                else:
                    args[name] = self.valid(tool, name, args)
        if shape == "unknown":
            near = [name[:-1] for name in properties] + [name + "s" for name in properties]
            args[rng.choice(near + ["foo", "Text", "profile_name"])] = self.junk()
        return args


async def fuzz(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    profiles_dir = work / "profiles"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    (profiles_dir / "fuzzmood.toml").write_text(MOOD_PROFILE, encoding="utf-8")
    log = work / "stdio-server.log"
    command = server_command() + ["serve", "--data-dir", str(work / "stdio-data"), "--profiles-dir", str(profiles_dir)]
    # stderr to a file, so the run can check the server logged no traceback
    shell = ["/bin/sh", "-c", 'exec "$@" 2>>"$LOG"', "sh", *command]
    server = StdioServerParameters(command=shell[0], args=shell[1:], env=clean_env(LOG=str(log)))
    outcomes: Counter[str] = Counter()
    per_tool: dict[str, Counter[str]] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    latencies: list[float] = []
    async with Client(server, mode="legacy", read_timeout_seconds=300) as client:
        listed = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        described = (await client.call_tool("profiles", {})).structured_content["profiles"]  # waits until ready
        fuzzer = Fuzzer(rng, {p["name"]: p["labels"] for p in described})
        started = time.monotonic()
        for i in tqdm(range(args.fuzz_calls), desc="fuzzed calls (stdio)", unit="call", file=sys.stderr):
            tool = rng.choice(list(listed))
            arguments = fuzzer.arguments(tool, listed[tool])
            began = time.perf_counter()
            try:
                with anyio.fail_after(120):
                    result = await client.call_tool(tool, arguments)
                outcome = classify(result)
            except Exception as exc:  # a JSON-RPC error, a timeout, a dead server: none may happen
                outcome, result = "non-tool error", None
                examples.setdefault(outcome, []).append({"tool": tool, "error": repr(exc)[:300]})
            latencies.append(time.perf_counter() - began)
            outcomes[outcome] += 1
            per_tool.setdefault(tool, Counter())[outcome] += 1
            if outcome in ("crash", "raw pydantic") and len(examples.get(outcome, [])) < 10:
                examples.setdefault(outcome, []).append(
                    {"tool": tool, "arguments": repr(arguments)[:300], "text": result.content[0].text[:300]}
                )
            if outcome == "tool error" and len(examples.setdefault(f"tool error: {tool}", [])) < 4:
                examples[f"tool error: {tool}"].append(
                    {"arguments": repr(arguments)[:200], "text": result.content[0].text}
                )
            if outcome == "ok" and result.structured_content:
                remember_handles(fuzzer, result.structured_content, arguments)
            if i % 250 == 249:  # still answering?
                with anyio.fail_after(120):
                    alive = await client.call_tool("profiles", {})
                if alive.is_error:
                    outcomes["server not answering"] += 1
    return {
        "calls": args.fuzz_calls,
        "tools": sorted(listed),
        "outcomes": dict(outcomes),
        "per_tool": {tool: dict(counts) for tool, counts in sorted(per_tool.items())},
        "examples": examples,
        "server_tracebacks": tracebacks(log),
        "seconds": round(time.monotonic() - started, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def classify(result: Any) -> str:
    if not result.is_error:
        return "ok"
    text = result.content[0].text if result.content else ""
    if CRASH.match(text) or not text:
        return "crash"
    if "pydantic" in text or "https://" in text or "validation error" in text:
        return "raw pydantic"
    return "tool error"


def remember_handles(fuzzer: Fuzzer, data: dict[str, Any], arguments: dict[str, Any]) -> None:
    namespace = arguments.get("namespace") or "default"
    for handle in [data.get("handle"), *data.get("handles", [])]:
        if isinstance(handle, str):
            fuzzer.handles.append((handle, namespace))


# --- part 2: concurrent HTTP clients ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http(work: Path, port: int, token: str, name: str = "http", **env: str) -> tuple[subprocess.Popen, Path]:
    """A real HTTP server on `work/<name>-data` (extra settings in `env`), once /healthz answers 200."""
    log = work / f"{name}-server.log"
    profiles_dir = work / "profiles"
    command = server_command() + [
        "serve",
        "--transport",
        "http",
        "--port",
        str(port),
        "--data-dir",
        str(work / f"{name}-data"),
        "--profiles-dir",
        str(profiles_dir),
    ]
    proc = subprocess.Popen(command, env=clean_env(MCP_LATENT_TOKEN=token, **env), stderr=log.open("wb"))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc, log
        except httpx2.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError("the HTTP server did not become ready in 10 minutes")


async def http_session(port: int, token: str):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=300)
    return http, Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode="legacy")


async def one_client(
    number: int, port: int, token: str, calls: int, seed: int, bar: tqdm, results: dict[str, Any]
) -> None:
    rng = random.Random(seed * 1000 + number)
    own = f"client-{number}"
    handles: list[tuple[str, str]] = []
    ops = ["handoff", "handoff+verdicts", "evaluate handle", "evaluate text", "similar", "embed", "profiles"]
    ops += ["namespaces", "teach", "get"]
    weights = [15, 15, 25, 10, 12, 10, 5, 5, 3, 8]
    http, client = await http_session(port, token)
    async with http, client:
        for _ in range(calls):
            op = rng.choices(ops, weights)[0]
            namespace = rng.choice(["shared", own])
            mine = [h for h in handles[-50:] if h[1] == namespace]
            if op in ("evaluate handle", "similar", "get") and not mine:
                op = "handoff"
            tool, arguments = {
                "handoff": ("handoff", {"text": proposal(rng), "namespace": namespace, "from_agent": own}),
                "handoff+verdicts": (
                    "handoff",
                    {"text": proposal(rng), "namespace": namespace, "evaluate": ["risk", "roi", "category"]},
                ),
                "evaluate handle": (
                    "evaluate",
                    {"handle": rng.choice(mine)[0] if mine else "", "namespace": namespace, "profiles": ["risk"]},
                ),
                "evaluate text": ("evaluate", {"text": proposal(rng), "profiles": ["risk", "category"]}),
                "similar": ("similar", {"handle": rng.choice(mine)[0] if mine else "", "namespace": namespace, "k": 5}),
                "embed": ("embed", {"texts": [proposal(rng), proposal(rng)], "namespace": namespace}),
                "get": ("get", {"handle": rng.choice(mine)[0] if mine else "", "namespace": namespace}),
                "profiles": ("profiles", {}),
                "namespaces": ("namespaces", {}),
                "teach": (
                    "teach",
                    {"profile": "fuzzmood", "label": rng.choice(["happy", "sad"]), "text": proposal(rng)},
                ),
            }[op]
            began = time.perf_counter()
            try:
                result = await client.call_tool(tool, arguments)
                error = result.content[0].text if result.is_error else None
            except Exception as exc:
                result, error = None, repr(exc)
            results["latency"].setdefault(op, []).append(time.perf_counter() - began)
            results["calls"] += 1
            if error is not None:
                results["errors"].append({"op": op, "error": error[:300]})
            elif tool in ("handoff", "embed"):
                data = result.structured_content
                for handle in [data.get("handle"), *data.get("handles", [])]:
                    if handle:
                        handles.append((handle, namespace))
            bar.update()
    results["handles"].extend(handles)


async def read_back(port: int, token: str, handles: list[tuple[str, str]]) -> list[dict[str, str]]:
    missing = []
    http, client = await http_session(port, token)
    async with http, client:
        for handle, namespace in tqdm(handles, desc="reading every handle back", unit="handle", file=sys.stderr):
            result = await client.call_tool(
                "evaluate", {"handle": handle, "namespace": namespace, "profiles": ["risk"]}
            )
            if result.is_error:
                missing.append({"handle": handle, "namespace": namespace, "error": result.content[0].text[:200]})
    return missing


async def load(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port, token = free_port(), "reliability-bench-token"
    proc, log = start_http(work, port, token, **getattr(args, "server_env", {}))  # bench_faults.py shares a cache
    results: dict[str, Any] = {"calls": 0, "errors": [], "handles": [], "latency": {}}
    try:
        started = time.monotonic()
        total = args.clients * args.calls_per_client
        with tqdm(total=total, desc=f"{args.clients} HTTP clients", unit="call", file=sys.stderr) as bar:
            async with anyio.create_task_group() as group:
                for number in range(args.clients):
                    group.start_soon(one_client, number, port, token, args.calls_per_client, args.seed, bar, results)
        seconds = time.monotonic() - started
        missing = await read_back(port, token, results["handles"])
        healthy = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(120)
    every = [value for values in results["latency"].values() for value in values]
    return {
        "clients": args.clients,
        "calls_per_client": args.calls_per_client,
        "calls": results["calls"],
        "errors": len(results["errors"]),
        "error_examples": results["errors"][:10],
        "handles_acknowledged": len(results["handles"]),
        "handles_unreadable": len(missing),
        "unreadable_examples": missing[:10],
        "healthy_after": healthy,
        "server_tracebacks": tracebacks(log),
        "seconds": round(seconds, 1),
        "calls_per_second": round(results["calls"] / seconds, 1),
        "p50_ms": round(percentile(every, 0.5) * 1000, 1),
        "p99_ms": round(percentile(every, 0.99) * 1000, 1),
        "per_op": {
            op: {
                "n": len(values),
                "p50_ms": round(statistics.median(values) * 1000, 1),
                "p99_ms": round(percentile(values, 0.99) * 1000, 1),
            }
            for op, values in sorted(results["latency"].items())
        },
    }


def markdown(report: dict[str, Any]) -> str:
    f, h = report["fuzz"], report["http"]
    o = f["outcomes"]
    lines = [
        f"Fuzzed calls over stdio ({f['calls']:,} calls to {len(f['tools'])} tools, seed {report['seed']}, "
        f"{f['seconds']} s, p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms):",
        "",
        "| ok | tool errors | crashes | raw pydantic text | non-tool errors | server tracebacks |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {o.get('ok', 0):,} | {o.get('tool error', 0):,} | {o.get('crash', 0)} | {o.get('raw pydantic', 0)} "
        f"| {o.get('non-tool error', 0)} | {f['server_tracebacks']} |",
        "",
        f"HTTP: {h['clients']} clients x {h['calls_per_client']:,} mixed calls ({h['calls']:,} calls, {h['seconds']} s, "
        f"{h['calls_per_second']} calls/s, p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms):",
        "",
        "| errors | handles acknowledged | unreadable after | healthy after | server tracebacks |",
        "| ---: | ---: | ---: | --- | ---: |",
        f"| {h['errors']} | {h['handles_acknowledged']:,} | {h['handles_unreadable']} | {h['healthy_after']} "
        f"| {h['server_tracebacks']} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fuzz-calls", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--calls-per-client", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 fuzzed calls, 4 clients x 50 calls")
    parser.add_argument("--out", default="reliability-out")
    args = parser.parse_args()
    if args.quick:
        args.fuzz_calls, args.clients, args.calls_per_client = 300, 4, 50
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcp-latent-reliability-") as tmp:
        work = Path(tmp)
        report = {"seed": args.seed, "fuzz": anyio.run(fuzz, args, work), "http": anyio.run(load, args, work)}
    (out / "reliability.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "reliability.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    f, h = report["fuzz"], report["http"]
    bad = sum(f["outcomes"].get(k, 0) for k in ("crash", "raw pydantic", "non-tool error", "server not answering"))
    bad += f["server_tracebacks"] + h["errors"] + h["handles_unreadable"] + h["server_tracebacks"]
    return 0 if bad == 0 and h["healthy_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
