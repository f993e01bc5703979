"""Serving over HTTP: /healthz tells starting from ready, a 401 says how to authenticate, a busy port fails at
once, the server says where it listens, and the token can come from a file instead of the command line."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time

import anyio
import httpx2
import pytest
from conftest import server_env
from test_e2e_stdio import RISKY, call, server_command
from test_shared_state import free_port, http_client

from mcp_latent.server.http import http_app
from mcp_latent.server.tools import build_server
from mcp_latent.service.api import LatentService

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def asgi_client(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765")


async def test_healthz_is_503_with_the_startup_phase_until_ready_then_200(settings, fake_embedder, fruit_tools_profile):
    service = LatentService(settings, embedder=fake_embedder)
    app = http_app(build_server(service=service), settings)
    async with asgi_client(app) as http:
        starting = await http.get("/healthz")  # used to answer 200 while the model was still loading
        assert starting.status_code == 503
        assert starting.json()["status"] == "starting" and starting.json()["phase"] == "not started"
        await anyio.to_thread.run_sync(service.start)
        ready = await http.get("/healthz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok" and ready.json()["phase"] == "ready"
    service.close()


async def test_401_challenges_for_a_bearer_token(service):
    app = http_app(build_server(service=service), service.settings, token="s3cret")
    async with asgi_client(app) as http:
        missing = await http.post("/mcp", json={})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = await http.post("/mcp", json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert (await http.get("/healthz")).status_code == 200  # open to process managers


def serve_http(tmp_path, port: int, *extra: str, importtime: bool = False) -> tuple[list[str], dict[str, str]]:
    command = server_command() + ["serve", "--transport", "http", "--port", str(port)]
    if importtime:
        command = [sys.executable, "-X", "importtime", "-m", "mcp_latent"] + command[1:]
    return [*command, "--data-dir", str(tmp_path / "d"), *extra], server_env()


@pytest.mark.e2e
def test_a_port_in_use_fails_at_once_before_the_model_loads(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command, env = serve_http(tmp_path, port, importtime=True)
        # cwd outside the checkout, so `-m mcp_latent` imports the code under test, not a stray copy
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "Traceback" not in done.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "sentence_transformers"}  # refused before loading anything heavy


@pytest.mark.e2e
@pytest.mark.usefixtures("warm_profile_cache")
async def test_served_over_http_with_a_token_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("t0ken-from-a-file\n", encoding="utf-8")
    port = free_port()
    command, env = serve_http(tmp_path, port, "--token-file", str(token_file))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        listening = wait_for_line(proc, "listening on", timeout=120)
        assert f"listening on http://127.0.0.1:{port}/mcp" in listening
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
        seen = []
        deadline = time.monotonic() + 900  # the shipped profiles fit in the background (minutes on 2 busy cores)
        while time.monotonic() < deadline:
            reply = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            seen.append((reply.status_code, reply.json()["status"], reply.json()["phase"]))
            if reply.json()["status"] == "ok":
                break
            time.sleep(0.2)
        assert seen[-1][:2] == (200, "ok"), seen
        # 503 while starting (saying what it does), then 200 `fitting` while profiles fit in the background
        assert all(
            (code, status) in ((503, "starting"), (200, "fitting")) and phase for code, status, phase in seen[:-1]
        )
        assert [code for code, _, _ in seen] == sorted(code for code, _, _ in seen)[::-1]  # never back to 503
        async with http_client(port, "t0ken-from-a-file") as client:
            made = await call(client, "handoff", {"text": RISKY, "evaluate": ["risk"]})
            assert made["verdicts"]["risk"]["label"] == "high"
        refused = httpx2.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=10)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    finally:
        proc.terminate()
        proc.wait(60)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            lines.append(line)
            if needle in line:
                return line
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no {needle!r} line on stderr: {''.join(lines)[-2000:]}")
