"""End to end: a real `mcp-latent serve` subprocess with the real model, driven by the official SDK client."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import server_env, write_profile
from mcp import Client
from mcp.client.stdio import StdioServerParameters

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.usefixtures("warm_profile_cache")]

# A legacy (2025 protocol) initialize request, for tests that speak raw JSON-RPC.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
# Tests of plumbing assert verdicts of clear-cut texts, far from any operating point: "skip the security review
# and deploy the untested payment migration to production on Friday night" gets high at p 0.82, and the risk
# profile's threshold moved between 0.816 and 0.868 across fits of nearly identical vectors (torch vs ONNX).
RISKY = "disable the firewall and give every contractor admin access to production"
SAFE = "fix a typo in the onboarding email template and add a unit test for it"
# Minimal pairs (issue 10): the same proposal without and with its mitigations. The risk score must follow the
# mitigation; written for this test, none is a profile exemplar or a held-out proposal. Scores with the shipped
# profiles: 1.94 vs 1.77 (the closest pair), 1.97 vs 1.19, 1.96 vs 0.92, 1.75 vs 1.00.
MINIMAL_PAIRS = [
    (
        "Run the customer table migration on production tonight with no backup and no rollback plan.",
        "Run the customer table migration on production tonight after a verified backup, with a tested rollback plan.",
    ),
    (
        "Push the new payment service straight to all users on Friday evening, skipping code review.",
        "Roll out the new payment service behind a feature flag to 5% of users first, after code review.",
    ),
    (
        "Give every contractor admin access to the production database.",
        "Give the two on-call contractors read-only access to the production replica, expiring in a week.",
    ),
    (
        "Sign the three-year vendor contract today without legal review.",
        "Sign the three-year vendor contract after legal review, with a 90-day exit clause.",
    ),
]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def server_command() -> list[str]:
    exe = shutil.which("mcp-latent", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "mcp_latent"]


def params(data_dir: Path, *extra: str) -> StdioServerParameters:
    command = server_command()
    env = server_env()
    return StdioServerParameters(
        command=command[0], args=[*command[1:], "serve", "--data-dir", str(data_dir), *extra], env=env
    )


async def call(client: Client, tool: str, args: dict) -> dict:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def judged(client: Client, profile: str, text: str) -> dict:
    """One profile's detailed verdict on a text, through the server (the e2e memory tests read these)."""
    return (await call(client, "evaluate", {"text": text, "profiles": [profile], "detail": True}))["verdicts"][profile]


async def test_client_leaving_mid_fit_ends_the_server_cleanly(tmp_path):
    """A client that left while profiles were fitting ended the server with SIGABRT (rc 134, 'terminate called
    without an active exception'): Python's finalisation unwound the fitting threads through native frames."""
    env = server_env() | {
        "MCP_LATENT_PROFILE_CACHE_DIR": str(tmp_path / "cold-cache"),  # nothing fitted: the fits run at startup
        "SERVER_STDERR": str(tmp_path / "stderr"),
        "SERVER_RC": str(tmp_path / "rc"),
    }
    wrapper = '"$@" 2> "$SERVER_STDERR"; echo $? > "$SERVER_RC"'  # bash reports the server's exit status
    command = [*server_command(), "serve", "--data-dir", str(tmp_path / "data")]
    fitting_seen = False
    async with Client(
        StdioServerParameters(command="bash", args=["-c", wrapper, "server", *command], env=env),
        mode="legacy",
        read_timeout_seconds=300,
    ) as client:
        for _ in range(600):
            status = json.loads((await client.read_resource("latent://status")).contents[0].text)
            fitting_seen = status["ready"] and not status["profiles_ready"]
            if fitting_seen or status.get("profiles_ready"):
                break
            time.sleep(0.1)
    rc_file = tmp_path / "rc"
    for _ in range(600):
        if rc_file.exists() and rc_file.read_text().strip():
            break
        time.sleep(0.1)
    stderr = (tmp_path / "stderr").read_text()
    assert rc_file.read_text().strip() == "0" and "terminate called" not in stderr, stderr[-2000:]
    print("left while fitting:", fitting_seen)


async def test_core_scenario(tmp_path):
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=120) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"embed", "handoff", "evaluate", "similar"} <= names

        result = await client.call_tool(
            "handoff", {"text": RISKY, "from_agent": "A", "evaluate": ["risk", "roi", "category"]}
        )
        assert len(result.content[0].text) <= 240, result.content[0].text
        risky = result.structured_content
        assert risky["verdicts"]["risk"]["label"] == "high"
        assert set(risky["verdicts"]) == {"risk", "roi", "category"}
        safe = await call(client, "handoff", {"text": SAFE, "evaluate": ["risk"]})
        assert safe["verdicts"]["risk"]["label"] == "low"
        # Questions and small talk are no proposal: every shipped evaluator abstains (their off_topic label).
        for off_topic in ("How do I reset my password?", "thanks a lot, see you all at lunch tomorrow"):
            judged = await call(client, "evaluate", {"text": off_topic, "detail": True})
            for name in ("risk", "roi", "category"):
                verdict = judged["verdicts"][name]
                assert verdict["unsure"] and verdict["label"] is None and verdict["reason"] == "out_of_scope", verdict

        for reckless, mitigated in MINIMAL_PAIRS:
            scores = []
            for text in (reckless, mitigated):
                judged = await call(client, "evaluate", {"text": text, "profiles": ["risk"], "detail": True})
                scores.append(judged["verdicts"]["risk"]["score"])
            assert scores[0] > scores[1], (reckless, scores)

        by_handle = await call(client, "evaluate", {"handle": risky["handle"], "profiles": ["risk"]})
        by_text = await call(client, "evaluate", {"text": RISKY, "profiles": ["risk"]})
        assert by_handle["verdicts"]["risk"] == by_text["verdicts"]["risk"] == risky["verdicts"]["risk"]
        detail = await call(client, "evaluate", {"handle": risky["handle"], "profiles": ["risk"], "detail": True})
        assert detail["verdicts"]["risk"]["neighbours"][0][1] == "high"

        # An agent that got only the handle reads the text back to reason about an unsure verdict.
        record = await call(client, "get", {"handle": risky["handle"]})
        assert record["text"] == RISKY and record["from_agent"] == "A"
        missing = await client.call_tool("get", {"handle": "h_aaaaaaaaaa"})
        assert missing.is_error and "not found" in missing.content[0].text

        embedded = await call(
            client, "embed", {"texts": ["alpha launch plan", "beta launch plan"], "return_vectors": True}
        )
        assert len(embedded["handles"]) == 2 and len(embedded["vectors"][0]) == 384
        hits = await call(client, "similar", {"handle": embedded["handles"][0], "k": 2})
        assert hits["similar"][0]["handle"] == embedded["handles"][1]

        profiles = await call(client, "profiles", {})
        assert {"risk", "roi", "category"} <= {p["name"] for p in profiles["profiles"]}
        resource = await client.read_resource("latent://profiles")
        assert "risk" in resource.contents[0].text

        bad_calls = [
            ("handoff", {"text": ""}),
            ("handoff", {"text": "x" * 1_000_000}),
            ("embed", {"texts": ["x"] * 1000}),
            ("evaluate", {"text": "x", "profiles": ["no-such-profile"]}),
            ("evaluate", {"handle": "h_aaaaaaaaaa"}),
            ("evaluate", {"handle": "not a handle"}),
            ("similar", {"text": "x", "k": "ten"}),
            ("embed", {"texts": 42}),
        ]
        for tool, args in bad_calls:
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, args)
            assert len(result.content[0].text) > 20
            ok = await client.call_tool("evaluate", {"handle": risky["handle"], "profiles": ["risk"]})
            assert not ok.is_error


async def test_handle_survives_restart(tmp_path):
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=120) as client:
        first = await call(client, "handoff", {"text": RISKY, "evaluate": ["risk"]})
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=120) as client:
        again = await call(client, "evaluate", {"handle": first["handle"], "profiles": ["risk"]})
        hits = await call(client, "similar", {"text": RISKY, "k": 1})
    assert again["verdicts"] == first["verdicts"]
    assert hits["similar"][0]["handle"] == first["handle"]


async def test_modern_protocol_and_teach_through_the_server(tmp_path):
    profiles_dir = tmp_path / "profiles"
    write_profile(
        profiles_dir,
        "mood",
        {
            "happy": ["I love this, great work", "what a wonderful day", "this makes me so glad", "fantastic news"],
            "sad": ["this is terrible news", "I feel so down today", "what a disappointing result", "I am heartbroken"],
        },
    )
    async with Client(
        params(tmp_path / "d", "--profiles-dir", str(profiles_dir)), mode="auto", read_timeout_seconds=120
    ) as client:
        taught_text = "the quarterly numbers are a catastrophe"
        await call(client, "teach", {"profile": "mood", "label": "sad", "text": taught_text})
        verdict = await call(client, "evaluate", {"text": taught_text, "profiles": ["mood"], "detail": True})
        assert verdict["verdicts"]["mood"]["neighbours"][0][0] == taught_text
        refused = await client.call_tool("teach", {"profile": "mood", "label": "angry", "text": "x"})
        assert refused.is_error and "labels: happy, sad" in refused.content[0].text
    with closing(sqlite3.connect(tmp_path / "d" / "latent.db")) as db:  # taught exemplars live in the store
        assert db.execute("SELECT label, text FROM taught WHERE profile = 'mood'").fetchall() == [("sad", taught_text)]


def test_stdout_carries_only_protocol_and_tools_list_answers_fast(tmp_path):
    command = server_command() + ["serve", "--data-dir", str(tmp_path / "d")]
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "evaluate", "arguments": {"text": RISKY, "profiles": ["risk"]}},
        },
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server_env()
    )
    try:
        answered = {}
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if "id" not in message:
                continue
            line = proc.stdout.readline()
            reply = json.loads(line)  # anything but JSON-RPC on stdout fails here
            answered[reply["id"]] = (time.monotonic() - started, reply)
        assert answered[2][1]["result"]["tools"]
        assert answered[2][0] < answered[3][0]
        assert answered[2][0] < 15, "tools/list must not wait for the model"  # generous: CI machines are noisy
        assert "high" in json.dumps(answered[3][1]["result"]["structuredContent"])
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_cli_evaluate_and_profiles_commands(tmp_path):
    base = server_command()
    out = subprocess.run(
        base + ["evaluate", RISKY, "--profile", "risk", "--json", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=server_env(),
    )
    assert json.loads(out.stdout)["verdicts"]["risk"]["label"] == "high"
    check = subprocess.run(base + ["profiles", "check", "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0 and "risk.toml" in check.stdout
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.toml").write_text('name = "bad"\n')
    check = subprocess.run(base + ["profiles", "check", "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 1 and "bad.toml" in check.stdout and "labels" in check.stdout
