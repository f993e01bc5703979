"""Issue 22 end to end, real model: an agent (scripted, the official SDK client) defines its own evaluator over MCP,
gets "unsure" on its first texts, teaches 30 decisions and then gets decided, right verdicts on new texts; over
stdio, and over HTTP with two clients sharing the profile. Then forgetting and filtering handoffs through real
servers on SQLite (two stdio servers on one data dir) and PostgreSQL (two HTTP servers on one schema).

The texts were written for this test (urgency: now / this week / later); none is a shipped exemplar. Shipped
profiles are switched off (MCP_LATENT_BUILTIN_PROFILES=false) to keep the runtime modest."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import anyio
import pytest
from conftest import server_env
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from test_e2e_stdio import call, server_command
from test_shared_state import free_port, http_client, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DESCRIPTION = "How soon a request needs action."
LABELS = [
    {
        "name": "now",
        "description": "Needs action within the hour: something is broken or blocked right now.",
        "examples": [
            "Production is down and customers cannot log in.",
            "The payment API returns errors for every order right now.",
        ],
    },
    {
        "name": "this_week",
        "description": "Should be done in the next few days.",
        "examples": [
            "Please review the pull request for the new report before Friday.",
            "Schedule the quarterly access review for this week.",
        ],
    },
    {
        "name": "later",
        "description": "Nice to have, no deadline.",
        "examples": [
            "Someday we could rewrite the admin panel in a newer framework.",
            "An idea for next year: a dark mode for the dashboard.",
        ],
    },
]
FIRST = [
    "The checkout page is throwing 500 errors for all users at the moment.",
    "Can you update the onboarding guide before the team meeting on Thursday?",
    "It might be nice to explore a plugin system at some point.",
]
TEACH = {
    "now": [
        "The database is out of disk space and writes are failing.",
        "Our main website is unreachable for everyone.",
        "Customers are being charged twice, stop the billing job immediately.",
        "The on-call pager is firing: the API latency is over ten seconds.",
        "Login is broken for all users since the last deploy.",
        "A leaked API key is being used to download customer data right now.",
        "The mobile app crashes on launch for every user.",
        "Orders are not being shipped because the warehouse sync is down.",
        "The build server is down and nobody can deploy the hotfix.",
        "Email delivery has stopped completely, password resets are failing.",
    ],
    "this_week": [
        "Prepare the slides for Thursday's customer demo.",
        "Renew the TLS certificate that expires next week.",
        "Finish the code review of the search feature by Wednesday.",
        "Book the meeting room for the planning session on Friday.",
        "Send the invoice reminders to the three late customers this week.",
        "Update the release notes before Friday's release.",
        "Interview the two shortlisted candidates in the coming days.",
        "Fix the flaky test in the CI pipeline before the sprint ends.",
        "Reply to the vendor's contract questions by the end of the week.",
        "Onboard the new engineer who starts on Monday.",
    ],
    "later": [
        "Maybe one day we could add support for more languages.",
        "A long-term idea: move the whole stack to a different cloud provider.",
        "It would be nice to have a nicer logo eventually.",
        "Consider a customer loyalty program sometime next year.",
        "Explore machine learning for recommendations when there is time.",
        "Eventually we might open-source the internal tooling.",
        "Some day, rewrite the documentation site with a new theme.",
        "A wishlist item: keyboard shortcuts in the editor.",
        "In the distant future, think about a public API marketplace.",
        "No rush: clean up the old wiki pages whenever someone is bored.",
    ],
}
NEW = {
    "now": [
        "Every request to the API is timing out and customers are complaining right now.",
        "The production server just crashed and the site is down.",
    ],
    "this_week": [
        "Please finish the budget spreadsheet before Friday's review.",
        "Let's schedule the security training for later this week.",
    ],
    "later": [
        "Someday it would be cool to build a mobile widget.",
        "A nice idea for the future: gamify the onboarding, no deadline.",
    ],
}
DECIDE_WITHIN_S = 180  # background refits are paced (MCP_LATENT_REFIT_CPU_SHARE); seconds on a quiet machine


@pytest.fixture
def anyio_backend():
    return "asyncio"


def env(**extra: str) -> dict[str, str]:
    return server_env() | {"MCP_LATENT_BUILTIN_PROFILES": "false"} | extra


def stdio(data_dir: Path) -> StdioServerParameters:
    command = server_command()
    return StdioServerParameters(
        command=command[0], args=[*command[1:], "serve", "--data-dir", str(data_dir)], env=env()
    )


async def verdict(client: Client, text: str) -> dict:
    return (await call(client, "evaluate", {"text": text, "profiles": ["urgency"]}))["verdicts"]["urgency"]


async def first_texts_are_unsure(client: Client) -> None:
    for text in FIRST:
        judged = await call(client, "handoff", {"text": text, "from_agent": "triage", "evaluate": ["urgency"]})
        assert judged["verdicts"]["urgency"]["unsure"] is True, (text, judged)
    listed = {p["name"]: p for p in (await call(client, "profiles", {}))["profiles"]}
    assert listed["urgency"]["ready"] is True and listed["urgency"]["supported"] is False


async def decided_and_right(client: Client) -> dict:
    deadline = time.monotonic() + DECIDE_WITHIN_S
    while True:
        verdicts = {text: await verdict(client, text) for texts in NEW.values() for text in texts}
        if all(v["label"] is not None for v in verdicts.values()) or time.monotonic() > deadline:
            break
        await anyio.sleep(1.0)
    for label, texts in NEW.items():
        for text in texts:
            assert verdicts[text]["label"] == label, (text, verdicts[text])
    listed = {p["name"]: p for p in (await call(client, "profiles", {}))["profiles"]}
    assert listed["urgency"]["supported"] is True and listed["urgency"]["answered_accuracy"] >= 0.9
    assert (await verdict(client, "thanks a lot, see you tomorrow!"))["unsure"] is True  # off-topic: abstains
    return listed["urgency"]


async def test_an_agent_defines_teaches_and_then_gets_decided_verdicts_over_stdio(tmp_path):
    async with Client(stdio(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as client:
        made = await call(client, "define_profile", {"name": "urgency", "description": DESCRIPTION, "labels": LABELS})
        assert made["labels"] == ["now", "this_week", "later", "off_topic"]
        await first_texts_are_unsure(client)
        for label, texts in TEACH.items():
            for text in texts:
                taught = await call(client, "teach", {"profile": "urgency", "label": label, "text": text})
                assert taught["taught"]["urgency"]["label"] == label
        trust = await decided_and_right(client)
        print("stdio, after 30 teaches:", trust)
        gone = await call(client, "delete_profile", {"name": "urgency"})
        assert gone["deleted"] and gone["taught_removed"] == 30
        refused = await client.call_tool("evaluate", {"text": FIRST[0], "profiles": ["urgency"]})
        assert refused.is_error and "profile 'urgency' not found" in refused.content[0].text


def start_http(data_dir: Path, **extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = server_command() + ["serve", "--transport", "http", "--port", str(port), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(args, env=env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(proc, port, 180)
    return proc, port


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_two_http_clients_share_a_profile_one_defined(tmp_path):
    proc, port = start_http(tmp_path / "d")
    try:
        async with http_client(port) as definer, http_client(port) as other:
            await call(definer, "define_profile", {"name": "urgency", "description": DESCRIPTION, "labels": LABELS})
            await first_texts_are_unsure(other)
            for label, texts in TEACH.items():  # each client teaches half of the decisions
                for i, text in enumerate(texts):
                    await call(
                        definer if i % 2 else other, "teach", {"profile": "urgency", "label": label, "text": text}
                    )
            trust = await decided_and_right(other)
            await decided_and_right(definer)
            print("http, after 30 teaches from two clients:", trust)
    finally:
        stop(proc)


async def forget_and_filter(writer: Client, reader: Client) -> None:
    """Handoffs written through one server; filtered, listed and forgotten through the other; gone for both."""
    made = {}
    for agent, texts in (("alice", TEACH["now"][:4]), ("bob", TEACH["later"][:4])):
        for i, text in enumerate(texts):
            meta = {"ticket": f"T-{i % 2}", "urgent": agent == "alice"}
            made[text] = (await call(writer, "handoff", {"text": text, "from_agent": agent, "meta": meta}))["handle"]
    alice = [made[t] for t in TEACH["now"][:4]]
    hits = await call(reader, "similar", {"text": "the site is down", "k": 10, "from_agent": "bob"})
    assert {h["handle"] for h in hits["similar"]} == {made[t] for t in TEACH["later"][:4]}
    hits = await call(reader, "similar", {"text": "the site is down", "k": 10, "meta": {"ticket": "T-1"}})
    assert {h["handle"] for h in hits["similar"]} == {made[TEACH[k][i]] for k in ("now", "later") for i in (1, 3)}
    newest = (await call(reader, "recent", {"limit": 3, "since": -600}))["recent"]
    assert [r["handle"] for r in newest] == [made[t] for t in TEACH["later"][:4][::-1][:3]]
    assert (await call(reader, "forget", {"from_agent": "alice"}))["forgotten"] == 4
    for client in (writer, reader):
        left = await call(client, "similar", {"text": TEACH["now"][0], "k": 10})
        assert not {h["handle"] for h in left["similar"]} & set(alice) and len(left["similar"]) == 4
        assert not {r["handle"] for r in (await call(client, "recent", {"limit": 10}))["recent"]} & set(alice)
        missing = await client.call_tool("get", {"handle": alice[0]})
        assert missing.is_error and "not found" in missing.content[0].text
    assert (await call(writer, "forget", {"handle": made[TEACH["later"][0]]}))["forgotten"] == 1
    assert len((await call(reader, "recent", {"limit": 10}))["recent"]) == 3


async def test_forget_and_filters_across_two_stdio_servers_on_one_sqlite_data_dir(tmp_path):
    async with (
        Client(stdio(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as writer,
        Client(stdio(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as reader,
    ):
        await forget_and_filter(writer, reader)


async def test_forget_and_filters_across_two_http_servers_on_postgres(tmp_path, postgres, pg_schema):
    store = {"MCP_LATENT_STORE_URL": postgres.url, "MCP_LATENT_STORE_SCHEMA": pg_schema}
    first, port1 = start_http(tmp_path / "a", **store)
    second, port2 = start_http(tmp_path / "b", **store)
    try:
        async with http_client(port1) as writer, http_client(port2) as reader:
            await forget_and_filter(writer, reader)
    finally:
        stop(first, second)
