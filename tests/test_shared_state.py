"""One latent state for many agents: HTTP with tokens, two processes on one dir, kill -9, load, namespaces."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from conftest import server_env
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from test_e2e_stdio import INITIALIZE, RISKY, call, params, server_command

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.usefixtures("warm_profile_cache")]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http(data_dir: Path, port: int, token: str | None = None) -> subprocess.Popen:
    args = server_command() + ["serve", "--transport", "http", "--port", str(port), "--data-dir", str(data_dir)]
    if token:
        args += ["--token", token]
    env = server_env()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(proc, port, 120)
    return proc


def wait_healthy(proc: subprocess.Popen, port: int, seconds: float) -> None:
    """Poll the server's /healthz until it says "ok" (the model and profiles are ready); when the server exits or
    `seconds` pass, kill it and raise with the end of its stderr."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json().get("status") == "ok":
                return
        except (httpx2.HTTPError, ValueError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server on port {port} did not start: {proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.3)


@asynccontextmanager
async def http_client(port: int, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(
            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode="legacy"
        ) as client:
            yield client


async def test_two_http_clients_share_handles_tokens_and_namespaces(tmp_path):
    port, token = free_port(), "s3cret-token"
    proc = start_http(tmp_path / "d", port, token)
    try:
        async with http_client(port, token) as writer, http_client(port, token) as reader:
            made = await call(writer, "handoff", {"text": RISKY, "namespace": "team-a"})
            read = await call(
                reader, "evaluate", {"handle": made["handle"], "namespace": "team-a", "profiles": ["risk"]}
            )
            assert read["verdicts"]["risk"]["label"] == "high"
            hidden = await reader.call_tool("evaluate", {"handle": made["handle"], "namespace": "team-b"})
            assert hidden.is_error and "not found" in hidden.content[0].text
            listed = await call(reader, "namespaces", {})
            assert {"namespace": "team-a"}.items() <= listed["namespaces"][0].items()
        for bad in (None, "wrong"):
            headers = {"Authorization": f"Bearer {bad}"} if bad else {}
            reply = httpx2.post(f"http://127.0.0.1:{port}/mcp", headers=headers, json={}, timeout=10)
            assert reply.status_code == 401
        # DNS rebinding: a page on another origin reaching 127.0.0.1 carries a foreign Host/Origin header.
        rebound = {"Authorization": f"Bearer {token}", "Host": "evil.example:80", "Origin": "http://evil.example"}
        reply = httpx2.post(f"http://127.0.0.1:{port}/mcp", headers=rebound, json=INITIALIZE, timeout=10)
        assert reply.status_code in (400, 403, 421), reply.status_code
    finally:
        proc.terminate()
        proc.wait(30)


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path):
    result = subprocess.run(
        server_command()
        + ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "without a token" in result.stderr


async def test_every_acknowledged_handoff_survives_kill_9(tmp_path):
    port = free_port()
    proc = start_http(tmp_path / "d", port)
    acknowledged: list[str] = []

    async def writer():
        async with http_client(port) as client:
            for i in range(10_000):
                result = await client.call_tool("handoff", {"text": f"proposal number {i}: migrate service {i}"})
                acknowledged.append(result.structured_content["handle"])

    with pytest.raises(BaseException):  # noqa: B017 - the writer dies with the server
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            while len(acknowledged) < 40:
                await anyio.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
            proc.wait(10)
            await anyio.sleep(1)
            raise RuntimeError("killed")
    assert len(acknowledged) >= 40
    proc = start_http(tmp_path / "d", port)
    try:
        async with http_client(port) as client:
            for handle in acknowledged:
                assert not (await client.call_tool("evaluate", {"handle": handle, "profiles": ["risk"]})).is_error
            count = (await call(client, "namespaces", {}))["namespaces"][0]["count"]
            assert len(acknowledged) <= count <= len(acknowledged) + 1  # at most the one in flight
            hits = await call(client, "similar", {"handle": acknowledged[-1], "k": 3})
            assert len(hits["similar"]) == 3  # the index was rebuilt/caught up and answers
    finally:
        proc.terminate()
        proc.wait(30)


async def test_concurrent_clients_mixed_calls_zero_errors(tmp_path):
    port = free_port()
    proc = start_http(tmp_path / "d", port)
    errors: list[str] = []
    handles: list[str] = []
    try:

        async def agent(n: int):
            async with http_client(port) as client:
                mine = []
                for i in range(250):
                    if i % 5 == 0 or not mine:
                        result = await client.call_tool(
                            "handoff", {"text": f"agent {n} idea {i}", "evaluate": ["risk"]}
                        )
                        if not result.is_error:
                            mine.append(result.structured_content["handle"])
                    elif i % 5 in (1, 2):
                        result = await client.call_tool("evaluate", {"handle": mine[-1], "profiles": ["risk", "roi"]})
                    elif i % 5 == 3:
                        result = await client.call_tool("similar", {"handle": mine[0], "k": 3})
                    else:
                        result = await client.call_tool("evaluate", {"text": f"agent {n} idea {i % 7}"})
                    if result.is_error:
                        errors.append(result.content[0].text)
                handles.extend(mine)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(agent, n)
        elapsed = time.monotonic() - started
        assert errors == []
        async with http_client(port) as client:
            for handle in handles:
                assert not (await client.call_tool("evaluate", {"handle": handle, "profiles": ["risk"]})).is_error
        print(f"load: 8 clients x 250 calls in {elapsed:.1f} s ({2000 / elapsed:.0f} calls/s)")
    finally:
        proc.terminate()
        proc.wait(30)


async def test_two_stdio_servers_on_one_data_dir(tmp_path):
    async with (
        Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=120) as a,
        Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=120) as b,
    ):
        await call(b, "similar", {"text": "warm up b's index", "k": 1})
        made = await call(a, "handoff", {"text": RISKY})
        seen = await call(b, "evaluate", {"handle": made["handle"], "profiles": ["risk"]})
        assert seen["verdicts"]["risk"]["label"] == "high"
        hits = await call(b, "similar", {"text": RISKY, "k": 1})
        assert hits["similar"][0]["handle"] == made["handle"]  # no delay: b catches up before it searches
