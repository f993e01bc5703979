"""Nothing on the event loop waits on the store (issue 21 item 3): with a store whose every call takes 2 s, calls
that do not need it answer at once, on stdio and on HTTP, while other calls wait on the store in worker threads.

Before, `evaluate` and `similar` by handle ran inline on the loop ("tens of microseconds" on a quick store), so
one slow store call stalled every other call and every HTTP session for its whole duration."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from test_shared_state import free_port, http_client

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).parent / "slow_store_server.py"
DELAY = 2.0
QUICK_CALLS = 60
P99_LIMIT = 0.05  # the issue's bound; a stall behind the store would be DELAY (2 s)
# On the shared 2-core test box an idle HTTP call alone can take 30-80 ms: the bound is then twice the same calls'
# p99 measured on the same server just before, with no store call in flight (noise, not a stall: that is 2 s).


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def quick_latencies(client: Client) -> list[float]:
    latencies = []
    for _ in range(QUICK_CALLS):
        started = time.perf_counter()
        result = await client.call_tool("profiles", {})
        latencies.append(time.perf_counter() - started)
        assert not result.is_error
    return latencies


def check(transport: str, idle: list[float], busy: list[float]) -> None:
    print(
        f"{transport}: `profiles` p99 {p99(idle) * 1000:.1f} ms idle, {p99(busy) * 1000:.1f} ms with 3 store calls of "
        f"{DELAY:.0f} s in flight (p50 {sorted(busy)[len(busy) // 2] * 1000:.1f} ms)"
    )
    assert p99(busy) < max(P99_LIMIT, 2 * p99(idle)) and p99(busy) < DELAY / 4, sorted(busy)[-5:]


async def quick_latencies_under_slow_calls(slow_client: Client, quick_client: Client) -> list[float]:
    """Keep three store calls (evaluate and similar by handle) in flight on `slow_client` while `quick_client`
    makes QUICK_CALLS calls that need no store, one after another; their latencies in seconds."""
    made = await slow_client.call_tool("handoff", {"text": "apple banana cherry"})
    handle = made.structured_content["handle"]
    done = anyio.Event()

    async def keep_store_busy(tool: str, args: dict) -> None:
        while not done.is_set():
            result = await slow_client.call_tool(tool, args)
            assert not result.is_error, result.content[0].text

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(keep_store_busy, "evaluate", {"handle": handle, "profiles": ["kind"]})
        tasks.start_soon(keep_store_busy, "evaluate", {"handle": handle, "profiles": ["kind"], "detail": True})
        tasks.start_soon(keep_store_busy, "similar", {"handle": handle})
        await anyio.sleep(0.3)  # the slow calls are in flight
        latencies = await quick_latencies(quick_client)
        done.set()
    return latencies


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def test_stdio_calls_answer_while_the_store_is_slow(tmp_path):
    params = StdioServerParameters(command=sys.executable, args=[str(SCRIPT), str(tmp_path / "d"), "stdio"])
    async with Client(params, mode="legacy") as client:
        idle = await quick_latencies(client)
        busy = await quick_latencies_under_slow_calls(client, client)
    check("stdio", idle, busy)


async def test_http_sessions_are_not_held_up_by_another_sessions_slow_store_calls(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path / "d"), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        async with http_client(port) as slow, http_client(port) as quick:
            idle = await quick_latencies(quick)
            busy = await quick_latencies_under_slow_calls(slow, quick)
        check("http", idle, busy)
    finally:
        proc.terminate()
        proc.wait(30)
