"""Several real HTTP servers (real model) over one real PostgreSQL: clients on every server share one latent state,
and neither a database restart nor kill -9 of a server loses an acknowledged handoff."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from conftest import server_env
from test_e2e_stdio import RISKY, SAFE, call, server_command
from test_shared_state import free_port, http_client, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.usefixtures("warm_profile_cache")]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def start_servers(count: int, data_dir: Path, url: str, schema: str) -> list[tuple[subprocess.Popen, int]]:
    """`count` HTTP servers over one PostgreSQL schema. With PostgreSQL the data dir holds only caches (fitted
    profiles), so they share one: on 2 busy cores, fitting every profile once per server would dominate the test."""
    env = server_env()  # with the session's warm profile cache
    env |= {
        "MCP_LATENT_STORE_URL": url,
        "MCP_LATENT_STORE_SCHEMA": schema,
        "MCP_LATENT_STORE_POLL_SECONDS": "0.2",
        "MCP_LATENT_STORE_TIMEOUT_SECONDS": "2",
        "MCP_LATENT_ALLOW_TEACH_BUILTIN": "true",
    }
    servers = []
    for _ in range(count):
        port = free_port()
        args = server_command() + [
            "serve",
            "--transport",
            "http",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ]
        servers.append((subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), port))
    deadline = time.monotonic() + 300
    for proc, port in servers:  # started together: the model loads in parallel
        try:
            wait_healthy(proc, port, deadline - time.monotonic())
        except RuntimeError:
            stop(servers)
            raise
    return servers


def stop(servers: list[tuple[subprocess.Popen, int]]) -> None:
    for proc, _ in servers:
        if proc.poll() is None:
            proc.terminate()
    for proc, _ in servers:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_two_servers_share_handles_drops_and_teaches(tmp_path, postgres, pg_schema):
    servers = start_servers(2, tmp_path, postgres.url, pg_schema)
    ports = [port for _, port in servers]
    assert httpx2.get(f"http://127.0.0.1:{ports[0]}/healthz", timeout=5).json()["handoffs"] == 0
    errors: list[str] = []
    handles: list[tuple[str, str]] = []  # (namespace, handle)
    try:

        async def agent(n: int, port: int) -> None:
            """Mixed calls through one server, reading handles other agents wrote through either server."""
            async with http_client(port) as client:
                for i in range(40):
                    ns = f"team{i % 2}"
                    if i % 4 == 0 or not handles:
                        args = {"text": f"agent {n} plan {i}: {RISKY if i % 8 else SAFE}", "namespace": ns,
                                "evaluate": ["risk"]}  # fmt: skip
                        result = await client.call_tool("handoff", args)
                        if not result.is_error:
                            handles.append((ns, result.structured_content["handle"]))
                    elif i % 4 == 1:
                        ns, handle = handles[(n * 7 + i) % len(handles)]  # often one written through the other server
                        args = {"handle": handle, "namespace": ns, "profiles": ["risk", "roi"]}
                        result = await client.call_tool("evaluate", args)
                    elif i % 4 == 2:
                        ns, handle = handles[-1]
                        result = await client.call_tool("similar", {"handle": handle, "namespace": ns, "k": 3})
                    else:
                        result = await client.call_tool("embed", {"texts": [f"note {n} {i}"], "namespace": ns})
                    if result.is_error:
                        errors.append(result.content[0].text)

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(agent, n, ports[n % 2])
        assert errors == []

        async with http_client(ports[0]) as a, http_client(ports[1]) as b:
            for ns, handle in handles:  # every handle readable through both servers
                for client in (a, b):
                    assert await call(client, "evaluate", {"handle": handle, "namespace": ns, "profiles": ["risk"]})
            # A teach through one server changes the next verdict on the other within the poll delay (0.2 s).
            text = "rotate the staging TLS certificate during the Tuesday maintenance window"
            args = {"text": text, "profiles": ["risk"], "detail": True}
            before = (await call(b, "evaluate", args))["verdicts"]["risk"]
            assert text not in str(before)
            await call(a, "teach", {"profile": "risk", "label": "high", "text": text})
            taught_at = time.monotonic()
            while text not in str((await call(b, "evaluate", args))["verdicts"]["risk"]):
                assert time.monotonic() - taught_at < 10, "the teach never reached the other server"
                await anyio.sleep(0.05)
            # A drop through one server is seen by the other's next search.
            dropped = await call(b, "drop_namespace", {"namespace": "team0"})
            assert dropped["dropped"] > 0
            assert (await call(a, "similar", {"text": RISKY, "namespace": "team0", "k": 3}))["similar"] == []
            assert (await a.call_tool("evaluate", {"handle": [h for ns, h in handles if ns == "team0"][0],
                                                   "namespace": "team0"})).is_error  # fmt: skip

        # Faults: the database crashes and restarts under load, then one server is killed mid-write.
        await database_restart_and_server_kill_9_lose_nothing_acknowledged(servers, postgres)
        assert not (tmp_path / "latent.db").exists()  # the latent state lives in PostgreSQL only
    finally:
        stop(servers)


async def database_restart_and_server_kill_9_lose_nothing_acknowledged(servers, postgres) -> None:
    (victim, victim_port), (_, survivor_port) = servers
    acknowledged: list[str] = []
    tool_errors: list[str] = []
    killed = anyio.Event()

    async def writer(port: int, n: int) -> None:
        try:
            async with http_client(port) as client:
                for i in range(10_000):
                    args = {"text": f"writer {n} step {i}", "evaluate": ["risk"]}
                    result = await client.call_tool("handoff", args)
                    if result.is_error:
                        tool_errors.append(result.content[0].text)
                        await anyio.sleep(0.05)
                    else:
                        acknowledged.append(result.structured_content["handle"])
        except Exception:
            if port != victim_port or not killed.is_set():
                raise  # only the killed server's client may lose its connection

    async def until(count: int) -> None:
        with anyio.fail_after(120):
            while len(acknowledged) < count:
                await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer, victim_port, 0)
        tg.start_soon(writer, survivor_port, 1)
        await until(30)
        await anyio.to_thread.run_sync(postgres.kill)  # the database crashes mid-write ...
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(postgres.start)  # ... and comes back; the servers reconnect by themselves
        await until(len(acknowledged) + 20)
        killed.set()
        os.kill(victim.pid, signal.SIGKILL)  # then one server dies mid-write
        await anyio.to_thread.run_sync(victim.wait, 10)
        await until(len(acknowledged) + 10)  # the other one carries on
        tg.cancel_scope.cancel()
    # Errors while the database was down are clear tool errors, never a hang or a crash.
    assert all("PostgreSQL" in e and "unreachable" in e for e in tool_errors), tool_errors[:3]
    async with http_client(survivor_port) as client:
        for handle in acknowledged:
            assert await call(client, "evaluate", {"handle": handle, "profiles": ["risk"]})
    print(f"{len(acknowledged)} acknowledged, 0 lost; {len(tool_errors)} clear tool errors while it was down")
