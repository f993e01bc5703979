"""The MCP layer in memory (fake embedder): tool surface, compact results, errors that keep the server up."""

import json
import re

import pytest
from mcp import Client

from mcp_latent.server.tools import build_server
from mcp_latent.service.api import LatentService

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["legacy", "auto"])
async def client(request, service):
    async with Client(build_server(service=service), mode=request.param) as c:
        yield c


async def test_tool_surface(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"embed", "handoff", "evaluate", "similar", "profiles", "teach"} <= set(tools)
    assert all(re.match(r"^[a-zA-Z][a-zA-Z0-9_-]*$", name) for name in tools)
    assert tools["evaluate"].annotations.read_only_hint and tools["similar"].annotations.read_only_hint
    assert not tools["handoff"].annotations.read_only_hint
    assert all(len(t.description) > 40 for t in tools.values())
    assert tools["handoff"].output_schema is not None


async def test_result_text_is_the_minified_structured_content(client):
    result = await client.call_tool("handoff", {"text": "apple banana cherry", "evaluate": ["kind"]})
    assert not result.is_error
    text = result.content[0].text
    assert json.loads(text) == result.structured_content
    assert text == json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
    assert result.structured_content["verdicts"]["kind"]["label"] == "fruit"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"name": "evaluate", "arguments": {"text": "", "profiles": ["kind"]}}, "is empty"),
        ({"name": "evaluate", "arguments": {"handle": "h_aaaaaaaaaa"}}, "not found"),
        ({"name": "evaluate", "arguments": {"text": "x", "profiles": ["nope"]}}, "available: kind"),
        ({"name": "embed", "arguments": {"texts": "not a list"}}, "must be a list"),
        ({"name": "similar", "arguments": {"text": "x", "k": "many"}}, "k"),
        ({"name": "handoff", "arguments": {}}, "text"),
    ],
)
async def test_bad_calls_are_tool_errors_and_the_server_stays_up(client, args, expected):
    result = await client.call_tool(args["name"], args["arguments"])
    assert result.is_error and expected in result.content[0].text
    ok = await client.call_tool("evaluate", {"text": "hammer", "profiles": ["kind"]})
    assert not ok.is_error


async def test_profiles_are_discoverable_as_tool_and_resource(client):
    listed = await client.call_tool("profiles", {})
    assert listed.structured_content["profiles"][0]["name"] == "kind"
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert "latent://profiles" in resources
    body = await client.read_resource("latent://profiles")
    assert json.loads(body.contents[0].text)[0]["labels"] == ["fruit", "tools"]


async def test_text_only_mode_sends_no_structured_content(settings, fake_embedder, fruit_tools_profile):
    from mcp_latent.service.api import LatentService

    text_only = settings.model_copy(update={"structured_content": False})
    service = LatentService(text_only, embedder=fake_embedder)
    service.start()
    async with Client(build_server(service=service), mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["evaluate"].output_schema is None
        result = await client.call_tool("evaluate", {"text": "apple banana", "profiles": ["kind"]})
        assert result.structured_content is None
        assert json.loads(result.content[0].text)["verdicts"]["kind"]["label"] == "fruit"
    service.close()


async def test_an_unexpected_engine_failure_is_logged_and_answered_as_a_tool_error(service, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("index exploded")

    monkeypatch.setattr(service, "similar", broken)
    async with Client(build_server(service=service), mode="legacy") as client:
        result = await client.call_tool("similar", {"text": "apple"})
        assert result.is_error and "internal error (RuntimeError: index exploded)" in result.content[0].text
        assert not (await client.call_tool("profiles", {})).is_error  # the server is still up
    assert any("tool call failed unexpectedly" in r.message and r.exc_info for r in caplog.records)


async def test_deferred_service_answers_once_built(monkeypatch, settings, fake_embedder, fruit_tools_profile):
    """The stdio server's service is built in its startup thread; calls wait for it (in worker threads)."""
    import mcp_latent.service.lifecycle as service_module
    from mcp_latent.server.startup import DeferredService

    monkeypatch.setattr(service_module, "load_configured_embedder", lambda settings: fake_embedder)
    deferred = DeferredService(settings)
    async with Client(build_server(settings, deferred), mode="legacy") as client:
        result = await client.call_tool("evaluate", {"text": "apple banana", "profiles": ["kind"]})
        assert not result.is_error and result.structured_content["verdicts"]["kind"]["label"] == "fruit"
        status = json.loads((await client.read_resource("latent://status")).contents[0].text)
        assert status["ready"] is True
    deferred.close()


async def test_deferred_service_that_fails_to_build_reports_it_on_every_call(monkeypatch, settings):
    import mcp_latent.service.api as service_module
    from mcp_latent.server.startup import DeferredService

    def broken(self, settings=None, embedder=None):
        raise OSError("data dir is read-only")

    monkeypatch.setattr(service_module.LatentService, "__init__", broken)
    deferred = DeferredService(settings)
    async with Client(build_server(settings, deferred), mode="legacy") as client:
        for _ in range(2):
            result = await client.call_tool("evaluate", {"text": "apple", "profiles": ["kind"]})
            assert result.is_error and "startup failed" in result.content[0].text
            assert "data dir is read-only" in result.content[0].text
    deferred.close()


def test_stdio_server_runs_before_the_engine_is_imported(tmp_path):
    """`serve` over stdio builds and runs the MCP server before numpy and the engine import (they load in the
    startup thread the server's lifespan starts); once built, the service runs numpy's BLAS on one thread. So does
    an HTTP server, which imports the engine before it serves (a BLAS limit set before numpy's import is lost)."""
    import subprocess
    import sys

    script = """
import json, sys
import mcp_latent.server.startup as server
from mcp_latent.settings import Settings

seen = {}

class Recorder:
    def __init__(self, service):
        self.service = service

    def run(self, transport):
        seen["imported_before_run"] = sorted(m for m in ("numpy", "mcp_latent.service.api") if m in sys.modules)
        import numpy as np
        import mcp_latent.service.lifecycle as service_module

        class Ones:  # no model in this test
            model_id, dim = "test/ones", 4

            def embed(self, texts):
                return np.ones((len(texts), 4), dtype=np.float32) / 2

        service_module.load_configured_embedder = lambda settings: Ones()
        self.service.start_in_background()  # what the lifespan does
        self.service.wait_ready(120)  # waits until built, then until started
        from threadpoolctl import threadpool_info

        seen["blas_threads"] = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

if sys.argv[2] == "http":
    import uvicorn
    from threadpoolctl import threadpool_info

    def run(self, sockets):
        seen["imported_before_run"] = []
        seen["blas_threads"] = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

    uvicorn.Server.run = run
else:
    server.build_server = lambda settings, service: Recorder(service)
# HTTP starts its own service: a model that fails at once keeps this test free of any model
no_model = {"model": "/nonexistent", "embed_backend": "onnx"} if sys.argv[2] == "http" else {}
server.serve(Settings(data_dir=sys.argv[1], builtin_profiles=False, transport=sys.argv[2], port=0, **no_model))
print(json.dumps(seen))
"""
    for transport in ("stdio", "http"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / transport), transport],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["imported_before_run"] == []
        assert seen["blas_threads"] == [1], transport


def test_serving_process_runs_blas_on_one_thread(monkeypatch, settings, fake_embedder):
    """Each verdict's small matrix product waited ~20 ms for a second OpenBLAS thread on a busy machine."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import mcp_latent.server.startup as server

    seen: list[set[int]] = []

    class Recorder:
        def run(self, transport: str) -> None:
            seen.append({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

    monkeypatch.setattr(server, "build_server", lambda settings, service: Recorder())
    with threadpool_limits(limits=2, user_api="blas"):  # restores this process's own setting afterwards
        server.serve(settings, "stdio", LatentService(settings, embedder=fake_embedder))
    assert seen == [{1}]
