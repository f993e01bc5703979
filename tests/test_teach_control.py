"""Teach control, fast parts: token files and scopes, reloading, teachers recorded, reverts dropped from verdicts.

The same behaviour through a real HTTP server, the real model and the CLI is in test_teach_control_e2e.py."""

from __future__ import annotations

import hashlib
import os
import time
from types import SimpleNamespace

import anyio
import numpy as np
import pytest
from conftest import FRUIT, TOOLS
from mcp.server.mcpserver.exceptions import ToolError

from mcp_latent.errors import InvalidInput, NotAllowed
from mcp_latent.server.auth import FULL_ACCESS, PRINCIPAL_KEY, Principal, TokenRegistry, parse_tokens
from mcp_latent.server.tools import build_server
from mcp_latent.service.teachers import CURRENT_TEACHER, parse_when, select_taught

TOKENS = """
[[tokens]]
name = "planner"
token = "planner-token-0123456789"
write = ["team-a", "team-a:*"]
read = ["shared"]
teach = ["kind"]

[[tokens]]
name = "auditor"
sha256 = "{auditor}"
read = ["*"]
read_only = true
"""


def tokens_text() -> str:
    return TOKENS.replace("{auditor}", hashlib.sha256(b"auditor-token-0123456789").hexdigest())


def bearer(token: str) -> bytes:
    return f"Bearer {token}".encode()


def test_tokens_file_names_and_scopes(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(tokens_text())
    registry = TokenRegistry("single-token-0123456789", path)
    planner = registry.authenticate(bearer("planner-token-0123456789"))
    auditor = registry.authenticate(bearer("auditor-token-0123456789"))  # stored as its SHA-256 only
    assert planner is not None and planner.name == "planner"
    assert auditor is not None and auditor.name == "auditor" and auditor.read_only
    assert registry.authenticate(bearer("single-token-0123456789")) is FULL_ACCESS
    for wrong in (b"", b"Bearer ", bearer("planner-token-012345678"), b"Basic planner-token-0123456789"):
        assert registry.authenticate(wrong) is None


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        ("[[tokens]]\nname = 'a'\n", "give exactly one of `token`"),
        ("[[tokens]]\nname = 'a'\ntoken = 'short'\n", "tokens.0.token"),
        ("[[tokens]]\nname = 'a'\ntoken = '0123456789abcdef'\nwrites = ['x']\n", "tokens.0.writes"),
        ("[[tokens]]\nname = 'a'\nsha256 = 'xyz'\n", "tokens.0.sha256"),
        ("[[tokens]\n", "not valid TOML"),
        ("[[tokens]]\nname='a'\ntoken='0123456789abcdef'\n[[tokens]]\nname='a'\ntoken='0123456789abcdeg'\n", "a more"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_file_and_field(tmp_path, body, wrong):
    path = tmp_path / "tokens.toml"
    path.write_text(body)
    with pytest.raises(InvalidInput) as err:
        parse_tokens(path)
    assert str(path) in str(err.value) and wrong in str(err.value)


def test_scopes_decide_each_tool_call():
    planner = Principal("planner", read=("shared",), write=("team-a", "team-a:*"), teach=("kind",))
    planner.check("handoff", {"text": "x", "namespace": "team-a:ops"}, "default")
    planner.check("evaluate", {"handle": "h_x", "namespace": "shared"}, "default")
    planner.check("teach", {"profile": "kind", "label": "fruit", "text": "x"}, "default")
    planner.check("teach", {"labels": {"kind": "fruit"}, "handle": "h_x", "namespace": "team-a"}, "default")
    planner.check("profiles", {}, "default")
    planner.check("evaluate", {"text": "x"}, "default")  # a text alone reads no namespace
    refused = [
        ("handoff", {"text": "x", "namespace": "shared"}, "may not write namespace 'shared'"),
        ("handoff", {"text": "x"}, "may not write namespace 'default'"),  # the default namespace is checked too
        ("get", {"handle": "h_x", "namespace": "team-b"}, "may not read namespace 'team-b'"),
        ("similar", {"text": "x"}, "may not read namespace 'default'"),
        ("teach", {"profile": "risk", "label": "low", "text": "x"}, "may not teach profile 'risk'"),
        ("teach", {"labels": {"kind": "fruit", "risk": "low"}, "text": "x"}, "may not teach profile 'risk'"),
        ("teach", {"profile": "kind", "label": "fruit", "handle": "h_x", "namespace": "team-b"}, "read namespace"),
        ("drop_namespace", {"namespace": "shared"}, "may not write namespace 'shared'"),
        ("namespaces", {}, "may not list every namespace"),
    ]
    for tool, arguments, message in refused:
        with pytest.raises(NotAllowed) as err:
            planner.check(tool, arguments, "default")
        assert message in str(err.value) and "tokens file" in str(err.value), (tool, arguments)
    auditor = Principal("auditor", read=("*",), write=("*",), teach=("*",), read_only=True)
    auditor.check("evaluate", {"text": "x", "namespace": "anything"}, "default")
    auditor.check("namespaces", {}, "default")
    for tool in ("handoff", "embed", "teach", "drop_namespace"):
        with pytest.raises(NotAllowed, match="read-only"):
            auditor.check(tool, {"namespace": "x", "profile": "kind"}, "default")


def test_the_tokens_file_reloads_and_a_bad_edit_keeps_the_last_good_one(tmp_path, caplog):
    path = tmp_path / "tokens.toml"
    path.write_text(tokens_text())
    registry = TokenRegistry(None, path, poll_seconds=0.05)
    assert registry.names() == ["planner", "auditor"]
    path.write_text("[[tokens]]\nname = 'newcomer'\ntoken = 'newcomer-token-0123456789'\n")
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime even on a coarse clock
    registry.start()
    try:
        deadline = time.monotonic() + 10
        while registry.names() != ["newcomer"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert registry.names() == ["newcomer"]
        assert registry.authenticate(bearer("planner-token-0123456789")) is None  # revoked by the edit
        path.write_text("[[tokens]]\nname = 'broken'\n")  # no token: invalid
        os.utime(path, (time.time() + 10, time.time() + 10))
        deadline = time.monotonic() + 10
        while "tokens file not reloaded" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "tokens file not reloaded" in caplog.text and "tokens.0" in caplog.text
        assert registry.authenticate(bearer("newcomer-token-0123456789")).name == "newcomer"
    finally:
        registry.stop()


def test_a_tokens_file_caught_mid_write_is_never_taken(tmp_path):
    """An editor truncates, then writes: read in between, the file is empty (valid TOML, no tokens), and taking it
    revoked every token until the next change. A change is read once the file has held still for one poll."""
    path = tmp_path / "tokens.toml"
    path.write_text(tokens_text())
    registry = TokenRegistry(None, path, poll_seconds=60)
    path.write_text("")  # caught mid-write
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert not registry.reload_if_changed()
    assert registry.names() == ["planner", "auditor"]
    path.write_text("[[tokens]]\nname = 'newcomer'\ntoken = 'newcomer-token-0123456789'\n")  # the write lands
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert not registry.reload_if_changed() and registry.names() == ["planner", "auditor"]
    assert registry.reload_if_changed() and registry.names() == ["newcomer"]  # held still for one poll


def test_times_on_the_command_line():
    now = 1_800_000_000.0
    assert parse_when("90m", now) == now - 5400
    assert parse_when("2d", now) == now - 2 * 86400
    assert parse_when("1765000000", now) == 1765000000.0
    assert parse_when("2026-12-06T03:00:00Z") == parse_when("2026-12-06T03:00:00") == 1796526000.0
    with pytest.raises(InvalidInput, match="cannot read the time 'yesterday'"):
        parse_when("yesterday")


def test_teaches_record_the_teacher_stdio_is_local(service):
    service.teach("kind", "fruit", text="mango papaya fruit bowl")
    token = CURRENT_TEACHER.set("planner")
    try:
        service.teach("kind", "tools", text="pliers and a spanner")
    finally:
        CURRENT_TEACHER.reset(token)
    taught = {e.text: e.teacher for e in service.store.taught(profile="kind")}
    assert taught == {"mango papaya fruit bowl": "local", "pliers and a spanner": "planner"}
    stats = service.profile_stats()["stats"]["kind"]
    assert stats["by_teacher"] == {"local": 1, "planner": 1}
    with pytest.raises(InvalidInput, match="name what to select"):
        select_taught(service.store)


def test_a_revert_restores_the_verdict_and_survives_a_refit(service):
    poison = "apple banana cherry fruit salad special"
    before = service.evaluate(text=poison, profiles=["kind"])["verdicts"]["kind"]
    assert before["label"] == "fruit"
    token = CURRENT_TEACHER.set("mallory")
    try:
        for i in range(3):
            service.teach("kind", "tools", text=f"{poison} {i}")
        service.teach("kind", "tools", text=poison)
    finally:
        CURRENT_TEACHER.reset(token)
    poisoned = service.evaluate(text=poison, profiles=["kind"])["verdicts"]["kind"]
    assert poisoned.get("label") != "fruit"
    live = service.live["kind"]
    assert live.taught == 4 and live.exemplars == len(FRUIT) + len(TOOLS) + 4
    assert live.stream.verdicts()[1].tolist() == [0.0]  # the poisoned teach said the verdict "fruit" was wrong
    reverted = service.store.revert_taught([e.id for e in select_taught(service.store, teacher="mallory")])
    assert len(reverted) == 4
    service.maintenance.run_once()  # what the maintenance thread does on its next poll
    assert live.taught == 0 and live.exemplars == len(FRUIT) + len(TOOLS)
    assert np.isnan(live.stream.verdicts()[1]).all()  # ... and the stream threshold no longer learns from it
    restored = service.evaluate(text=poison, profiles=["kind"])["verdicts"]["kind"]
    assert restored["label"] == "fruit" and restored["p"] == pytest.approx(before["p"], abs=0.05)
    assert service.wait_refitted(60)  # a refit queued by the poisoned teaches must not bring them back
    assert service.evaluate(text=poison, profiles=["kind"])["verdicts"]["kind"]["label"] == "fruit"
    assert service.live["kind"].snapshot.n == len(FRUIT) + len(TOOLS)
    # Taught again after the revert (by someone trusted), the same text is an exemplar again.
    assert service.teach("kind", "tools", text=poison)["taught"]["kind"].get("added", True)


@pytest.fixture
def anyio_backend():
    return "asyncio"


def request_context(principal: Principal) -> SimpleNamespace:
    """What the SDK hands `call_tool` for an HTTP request the middleware authenticated."""
    request = SimpleNamespace(scope={"state": {PRINCIPAL_KEY: principal}})
    return SimpleNamespace(request_context=SimpleNamespace(request=request))


@pytest.mark.anyio
async def test_tool_calls_check_the_callers_scope_and_record_its_name(service):
    server = build_server(service=service)
    planner = Principal("planner", read=("shared",), write=("team-a",), teach=("kind",))
    auditor = Principal("auditor", read=("*",), read_only=True)
    await server.call_tool(
        "teach", {"profile": "kind", "label": "tools", "text": "a claw hammer"}, request_context(planner)
    )
    with pytest.raises(ToolError, match="read-only"):
        await server.call_tool("teach", {"profile": "kind", "label": "fruit", "text": "kiwi"}, request_context(auditor))
    with pytest.raises(ToolError, match="may not write namespace 'team-b'"):
        await server.call_tool("handoff", {"text": "x", "namespace": "team-b"}, request_context(planner))
    await server.call_tool("teach", {"profile": "kind", "label": "fruit", "text": "a ripe kiwi"})  # stdio: no scope
    teachers = {e.text: e.teacher for e in await anyio.to_thread.run_sync(lambda: service.store.taught())}
    assert teachers == {"a claw hammer": "planner", "a ripe kiwi": "local"}
