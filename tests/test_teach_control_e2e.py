"""Teach control through real servers: two HTTP servers (real model) on one data dir with a tokens file; a
poisoned teach changes the verdict on both, `mcp-latent profiles untaught revert` takes it back and both verdicts
return; scopes refuse what a token may not do; stats and the CLI break teaching down by teacher."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from conftest import server_env, write_profile
from test_e2e_stdio import call, server_command
from test_shared_state import free_port, http_client, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

POISON = "Disable the firewall and give every contractor admin access to production tonight."
SAFE = [
    "Fix a typo in the onboarding email template.",
    "Add a unit test for the date parser.",
    "Update the README with the new install steps.",
    "Rename a local variable for clarity in the report module.",
    "Bump the linter version in the dev dependencies.",
    "Add a log line when the cache is warmed.",
    "Translate the settings page into Spanish.",
    "Refactor the CSV export into its own function, with tests.",
]
UNSAFE = [
    "Delete the production database backups to save disk space.",
    "Turn off authentication on the admin API for the weekend.",
    "Give every intern root access on the payment servers.",
    "Open the internal database port to the whole internet.",
    "Push the untested payment change straight to all customers.",
    "Disable audit logging on the production cluster.",
    "Share the customer data export on a public link.",
    "Remove the rate limit and the firewall rules on the login service.",
]
TOKENS = """
[[tokens]]
name = "mallory"
token = "mallory-token-0123456789"
write = ["*"]
teach = ["deploy"]

[[tokens]]
name = "alice"
token = "alice-token-0123456789"
write = ["team-a"]
teach = ["other"]

[[tokens]]
name = "auditor"
token = "auditor-token-0123456789"
read = ["*"]
read_only = true
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


STORE_ENV: dict[str, str] = {}  # set per test: the PostgreSQL store's URL and schema, or nothing (SQLite)


def env_for(tmp_path: Path) -> dict[str, str]:
    return (
        server_env()
        | STORE_ENV
        | {
            "MCP_LATENT_BUILTIN_PROFILES": "false",  # only the test's profile: nothing large to fit
            "MCP_LATENT_PROFILES_DIR": str(tmp_path / "profiles"),
            "MCP_LATENT_STORE_POLL_SECONDS": "0.5",
            "MCP_LATENT_TOKENS_POLL_SECONDS": "0.2",
        }
    )


def start(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen:
    args = server_command() + ["serve", "--transport", "http", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    args += ["--tokens-file", str(tmp_path / "tokens.toml"), *extra]
    proc = subprocess.Popen(args, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(proc, port, 180)
    return proc


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = server_command() + [*args, "--data-dir", str(tmp_path / "d")]
    return subprocess.run(command, env=env_for(tmp_path), capture_output=True, text=True, timeout=120)


async def verdict(client, text: str) -> dict:
    return (await call(client, "evaluate", {"text": text, "profiles": ["deploy"]}))["verdicts"]["deploy"]


async def until(client, text: str, wanted: str, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        got = await verdict(client, text)
        if got.get("label") == wanted or time.monotonic() > deadline:
            return got
        await anyio.sleep(0.3)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, monkeypatch):
    if request.param == "postgres":
        url, schema = request.getfixturevalue("postgres").url, request.getfixturevalue("pg_schema")
        monkeypatch.setattr(
            "test_teach_control_e2e.STORE_ENV", {"MCP_LATENT_STORE_URL": url, "MCP_LATENT_STORE_SCHEMA": schema}
        )
    return request.param


async def test_a_poisoned_teach_is_reverted_on_every_server(tmp_path, backend):
    write_profile(tmp_path / "profiles", "deploy", {"safe": SAFE, "unsafe": UNSAFE})
    (tmp_path / "tokens.toml").write_text(TOKENS)
    port_a, port_b = free_port(), free_port()
    a = start(tmp_path, port_a, "--token", "operator-token-0123456789")
    b = start(tmp_path, port_b)
    try:
        async with (
            http_client(port_a, "mallory-token-0123456789") as mallory,
            http_client(port_b, "auditor-token-0123456789") as auditor,
            http_client(port_a, "alice-token-0123456789") as alice,
            http_client(port_a, "operator-token-0123456789") as operator,  # the single token: full access
        ):
            before = await verdict(auditor, POISON)
            assert before["label"] == "unsafe", before
            # Scopes: what each token may not do is refused, with the reason.
            refused = await alice.call_tool("teach", {"profile": "deploy", "label": "safe", "text": POISON})
            assert refused.is_error and "may not teach profile 'deploy'" in refused.content[0].text
            refused = await auditor.call_tool("handoff", {"text": "x"})
            assert refused.is_error and "read-only" in refused.content[0].text
            refused = await alice.call_tool("handoff", {"text": "x", "namespace": "team-b"})
            assert refused.is_error and "may not write namespace 'team-b'" in refused.content[0].text
            assert (await call(alice, "handoff", {"text": "x", "namespace": "team-a"}))["handle"].startswith("h_")
            await call(operator, "teach", {"profile": "deploy", "label": "unsafe", "text": UNSAFE[0] + " Now."})

            await call(mallory, "teach", {"profile": "deploy", "label": "safe", "text": POISON})
            poisoned_a = await verdict(mallory, POISON)
            poisoned_b = await until(auditor, POISON, "safe")  # B follows A's teach through the store
            assert poisoned_a.get("label") != "unsafe" and poisoned_b.get("label") != "unsafe", (poisoned_a, poisoned_b)

            stats = json.loads((await auditor.read_resource("latent://stats")).contents[0].text)
            assert stats["stats"]["deploy"]["by_teacher"] == {"mallory": 1, "token": 1}

            listed = cli(tmp_path, "profiles", "untaught", "list", "--teacher", "mallory", "--since", "1h")
            assert listed.returncode == 0 and "mallory" in listed.stdout and "1 taught exemplar(s)" in listed.stdout
            dry = cli(tmp_path, "profiles", "untaught", "revert", "--teacher", "mallory")
            assert dry.returncode == 2 and "add --yes" in dry.stderr
            assert (await verdict(auditor, POISON)).get("label") != "unsafe"  # without --yes nothing changed
            done = cli(tmp_path, "profiles", "untaught", "revert", "--teacher", "mallory", "--yes", "--operator", "ops")
            assert done.returncode == 0 and "reverted 1 taught exemplar(s) of deploy" in done.stdout, done.stderr

            after_a = await until(operator, POISON, "unsafe")
            after_b = await until(auditor, POISON, "unsafe")
            assert after_a["label"] == after_b["label"] == "unsafe", (after_a, after_b)
            assert after_b["p"] == pytest.approx(before["p"], abs=0.1)
            stats = json.loads((await auditor.read_resource("latent://stats")).contents[0].text)
            assert stats["stats"]["deploy"]["by_teacher"] == {"token": 1}
        shown = cli(tmp_path, "profiles", "stats")
        assert shown.returncode == 0 and "taught exemplars by teacher: token 1" in shown.stdout, shown.stdout
        # A token revoked by editing the file is refused at once (the file is polled every 0.2 s here).
        (tmp_path / "tokens.toml").write_text(TOKENS.split('[[tokens]]\nname = "alice"')[0])
        deadline = time.monotonic() + 10
        status = 200
        while time.monotonic() < deadline and status != 401:
            status = httpx2.post(
                f"http://127.0.0.1:{port_a}/mcp", json={}, headers={"Authorization": "Bearer alice-token-0123456789"}
            ).status_code
            await anyio.sleep(0.2)
        assert status == 401
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(30)


async def test_over_stdio_the_local_user_is_the_teacher(tmp_path):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    write_profile(tmp_path / "profiles", "deploy", {"safe": SAFE, "unsafe": UNSAFE})
    command = server_command() + ["serve", "--data-dir", str(tmp_path / "d")]
    env = env_for(tmp_path) | {"MCP_LATENT_LOCAL_TEACHER": "alice-laptop"}
    server = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with Client(server, mode="legacy") as client:
        await call(client, "teach", {"profile": "deploy", "label": "unsafe", "text": POISON})
    listed = cli(tmp_path, "profiles", "untaught", "list", "--profile", "deploy", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["teacher"], r["label"], r["text"]) for r in rows] == [("alice-laptop", "unsafe", POISON)]
    assert abs(rows[0]["taught_at"] - time.time()) < 600
