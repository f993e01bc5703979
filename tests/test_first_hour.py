"""The first hour (issue 21 item 1), through a real stdio server with the real model: after setup (the shipped
profiles fitted into the shared profile cache) a fresh data dir's first handoff with three verdicts answers within
the wait bound, fitting nothing; with a cold cache the call still returns within the bound, with its handle and
a "fitting, ready in about N s" note per profile instead of an error (or a client timeout) that loses the handle."""

from __future__ import annotations

import re
import time

import pytest
from mcp import Client
from test_e2e_stdio import RISKY, params

from mcp_latent.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

SHIPPED = ["risk", "roi", "category"]
BOUND = Settings().profile_wait_seconds  # the documented default: no call waits longer for anything


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_fresh_data_dir_with_a_warm_shared_cache_answers_the_first_handoff_at_once(tmp_path, warm_profile_cache):
    spawned = time.monotonic()
    async with Client(params(tmp_path / "fresh"), mode="legacy") as client:
        called = time.monotonic()
        made = await client.call_tool("handoff", {"text": RISKY, "evaluate": SHIPPED})
        answered = time.monotonic()
    assert not made.is_error, made.content[0].text
    verdicts = made.structured_content["verdicts"]
    assert list(verdicts) == SHIPPED and all("fitting" not in v and "p" in v for v in verdicts.values()), verdicts
    assert verdicts["risk"]["label"] == "high"
    print(f"first verdict: {answered - called:.2f} s after initialize, {answered - spawned:.2f} s after spawn")
    assert answered - called < BOUND
    assert not list((tmp_path / "fresh").rglob("*.fit.npz"))  # the shared fits were read, nothing refitted here


async def test_cold_cache_returns_the_handle_and_a_fitting_note_within_the_bound(tmp_path):
    wait = 5
    server = params(tmp_path / "fresh")
    server.env = {
        **server.env,
        "MCP_LATENT_PROFILE_CACHE_DIR": str(tmp_path / "cold-cache"),
        "MCP_LATENT_PROFILE_WAIT_SECONDS": str(wait),
    }
    async with Client(server, mode="legacy") as client:
        called = time.monotonic()
        made = await client.call_tool("handoff", {"text": RISKY, "evaluate": SHIPPED})
        took = time.monotonic() - called
        assert not made.is_error, made.content[0].text
        handle = made.structured_content["handle"]
        for name in SHIPPED:
            verdict = made.structured_content["verdicts"][name]
            assert verdict["label"] is None and verdict["unsure"] is True
            assert re.fullmatch(r"fitting, ready in about \d+ s", verdict["fitting"]), verdict
        stored = await client.call_tool("get", {"handle": handle})
        assert not stored.is_error and stored.structured_content["text"] == RISKY  # the handle is real
    print(f"cold cache: handle and fitting notes after {took:.2f} s (wait bound {wait} s)")
    # The wait is bounded by the setting; the rest is the embedding itself, on cores busy with three cold fits.
    assert took < wait + 10
