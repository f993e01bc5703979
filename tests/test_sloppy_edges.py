"""The sloppy edges of issue 21, each pinned by a test that failed before its fix: strict argument types, a
well-shaped unknown parent, dropping a missing namespace, `export | head`, the 401 the SDK client shows, the
reason of an escalation on the command line, and a repeated teach that must change no figure."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_latent.server.http import http_app
from mcp_latent.server.tools import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def client(service):
    async with Client(build_server(service=service), mode="legacy") as c:
        yield c


async def error_text(client, tool: str, args: dict) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("similar", {"text": "apple", "k": "5"}, "similar: `k` must be an integer, not a string."),
        ("evaluate", {"text": "apple", "detail": "yes"}, "evaluate: `detail` must be true or false, not a string."),
        ("handoff", {"text": "apple", "detail": 1}, "handoff: `detail` must be true or false, not an integer."),
        ("similar", {"text": "apple", "k": 2.0}, "similar: `k` must be an integer, not a number."),
        ("embed", {"texts": ["a", 3]}, "`texts[1]` is an integer"),
    ],
)
async def test_arguments_of_the_wrong_type_are_refused_not_coerced(client, tool, args, expected):
    assert expected in await error_text(client, tool, args)


async def test_lists_sent_as_json_strings_are_still_unpacked(client):
    """Clients that send a list as a JSON string (Claude Desktop does) keep working under strict types."""
    result = await client.call_tool("evaluate", {"text": "apple banana", "profiles": '["kind"]'})
    assert not result.is_error and result.structured_content["verdicts"]["kind"]["label"] == "fruit"


async def test_a_parent_of_the_documented_shape_that_does_not_exist_is_not_found_not_malformed(client):
    text = await error_text(client, "handoff", {"text": "apple", "parent": "h_doesnotexi"})
    assert "not found" in text and "malformed" not in text
    assert "malformed" in await error_text(client, "handoff", {"text": "apple", "parent": "h_short"})
    assert "not found" in await error_text(client, "get", {"handle": "h_ABCDEFGHIJ"})


async def test_dropping_a_missing_namespace_is_an_error_naming_the_namespaces(client):
    assert not (await client.call_tool("handoff", {"text": "apple", "namespace": "team-a"})).is_error
    text = await error_text(client, "drop_namespace", {"namespace": "team-b"})
    assert "'team-b'" in text and "team-a" in text
    dropped = await client.call_tool("drop_namespace", {"namespace": "team-a"})
    assert not dropped.is_error and dropped.structured_content == {"namespace": "team-a", "dropped": 1}


async def test_the_sdk_client_sees_why_http_refused_it(service):
    """The 401 body is a JSON-RPC error, which the Python SDK surfaces (it showed "Server returned an error
    response" for the plain JSON body before)."""
    app = http_app(build_server(service=service), service.settings, token="s3cret")
    for headers, what in (({}, "missing bearer token"), ({"Authorization": "Bearer nope"}, "wrong bearer token")):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765", headers=headers) as http:
            with pytest.raises(BaseException) as raised:
                url = "http://127.0.0.1:8765/mcp"
                async with Client(streamable_http_client(url, http_client=http), mode="legacy") as c:
                    await c.list_tools()
            errors = leaves(raised.value)
            assert errors and all(isinstance(e, MCPError) for e in errors), errors
            assert what in str(errors[0]) and "Authorization: Bearer <token>" in str(errors[0])


def leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups, as the task group that ran the client raised them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def test_repeated_teach_changes_no_figure(service):
    first = service.teach("kind", "fruit", text="apple banana fruit salad bowl")
    assert first["taught"]["kind"].get("added", True)
    service.stats.flush()
    before = service.profile_stats()["stats"]["kind"]
    checks = service.live["kind"].stream.checks
    again = service.teach("kind", "fruit", text="apple banana fruit salad bowl")
    assert again["taught"]["kind"]["added"] is False and "agreed" not in again["taught"]["kind"]
    service.stats.flush()
    assert service.profile_stats()["stats"]["kind"] == before  # no second spot check, no second taught count
    assert service.live["kind"].stream.checks == checks


def run_cli(*args: str, env_data: str, pipe_to_head: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mcp_latent", *args, "--data-dir", env_data]
    if pipe_to_head:
        producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = subprocess.run(["head", "-n", "1"], stdin=producer.stdout, capture_output=True, timeout=120)
        producer.stdout.close()
        _, err = producer.communicate(timeout=120)
        return subprocess.CompletedProcess(command, producer.returncode, head.stdout, err)
    return subprocess.run(command, capture_output=True, timeout=300)


def test_export_into_head_ends_quietly(tmp_path, settings, fake_embedder):
    from mcp_latent.store.factory import open_store

    store = open_store(settings, fake_embedder.dim, fake_embedder.model_id)
    texts = [f"record number {i} " + "padding " * 200 for i in range(400)]  # well past a pipe's buffer
    store.add("big", fake_embedder.embed(texts), texts)
    store.close()
    done = run_cli("namespaces", "export", "big", env_data=str(settings.data_dir), pipe_to_head=True)
    assert json.loads(done.stdout.decode().splitlines()[0])["text"].startswith("record number 0")
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr.decode()
    assert done.returncode == 0


def test_cli_evaluate_detail_says_why_it_escalates(capsys, service):
    from mcp_latent.cli.serve import verdict_line

    result = service.evaluate(text="zebra giraffe savanna", profiles=["kind"], detail=True)
    verdict = result["verdicts"]["kind"]
    line = verdict_line("kind", {**verdict, "label": None, "reason": verdict.get("reason") or "low_confidence"})
    assert "UNSURE (escalate: " in line and "probable" in line or "none of the labels" in line
    assert "UNSURE (escalate)" == verdict_line("kind", {"label": None, "p": 0.4}).split(": ", 1)[1].split("  ")[0]
