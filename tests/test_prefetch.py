"""Verdict prefetch (`service/prefetch.py`): texts stored by `handoff`/`embed` are judged in the background by the
profiles callers used recently, so the `evaluate` that follows is served from the verdict memo, with the verdict a
call would have computed; it counts nothing (usage stats and the stream record served verdicts only), never outlives
a teach, stays within its bounds and waits while calls run. The fast tests use the hashing embedder; the end-to-end
test at the bottom runs the real model behind a real stdio server, prefetch on against prefetch off."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import server_env, write_profile

from mcp_latent.service import prefetch as prefetch_module
from mcp_latent.service.api import LatentService

TEXTS = ["apple banana pie", "hammer and nails", "cherry wrench mix", "fruit toolbox", "banana split"]


def _service(settings, fake_embedder, **changes) -> LatentService:
    service = LatentService(settings.model_copy(update=changes), embedder=fake_embedder)
    service.start()
    service.wait_ready(5)
    return service


def _served(service: LatentService) -> tuple[int, int]:
    """(stream verdicts recorded, answered + escalated counted) for the profile `kind`."""
    service.stats.flush()
    counts = service.stats.summary().get("kind", {})
    recorded = len(service.live["kind"].stream.verdicts()[0])
    return recorded, int(counts.get("answered", 0)) + int(counts.get("escalated", 0))


def test_a_stored_handle_is_served_its_prefetched_verdict_and_it_equals_computing_it(
    settings, fake_embedder, fruit_tools_profile
):
    on = _service(settings, fake_embedder)
    off_settings = settings.model_copy(update={"data_dir": settings.data_dir.parent / "off"})
    off = _service(off_settings, fake_embedder, prefetch_verdicts=False)
    try:
        for service in (on, off):
            service.evaluate(text="warm up", profiles=["kind"])  # `kind` is now a recently used profile
        handles = on.embed(TEXTS)["handles"]
        assert on.prefetch.idle(10)
        assert on.prefetch.computed == len(TEXTS) and on.verdicts.prefetch_hits == 0
        recorded, counted = _served(on)
        assert (recorded, counted) == (1, 1)  # prefetching recorded nothing: only the warm-up call counts
        off_handles = off.embed(TEXTS)["handles"]
        for handle, off_handle in zip(handles, off_handles, strict=True):
            got = on.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
            assert got == off.evaluate(handle=off_handle, profiles=["kind"])["verdicts"]["kind"]
        assert on.verdicts.prefetch_hits == len(TEXTS)  # every first evaluate was a memo hit
        assert off.verdicts.prefetch_hits == 0 and off.prefetch.computed == 0
        assert _served(on) == (1 + len(TEXTS), 1 + len(TEXTS))  # served from the memo: counted like any verdict
        status = on.status()["prefetch"]
        assert status["computed"] == len(TEXTS) and status["served"] == len(TEXTS) and status["profiles"] == ["kind"]
    finally:
        on.close()
        off.close()


def test_on_postgres_a_prefetched_verdict_equals_computing_it(
    settings, fake_embedder, fruit_tools_profile, postgres, pg_schema
):
    """The worker judges the records the store hands back from `add`; on the shared store a later `evaluate` reads the
    handle back with `get`: both must give the same verdict (vector and text as stored)."""
    shared = {"store_url": postgres.url, "store_schema": pg_schema}
    on = _service(settings, fake_embedder, **shared)
    off_settings = settings.model_copy(update={"data_dir": settings.data_dir.parent / "off_pg"})
    off = _service(off_settings, fake_embedder, prefetch_verdicts=False, **shared)
    try:
        on.evaluate(text="warm up", profiles=["kind"])
        handles = on.handoff(text=TEXTS[0])["handle"], *on.embed(TEXTS[1:])["handles"]
        assert on.prefetch.idle(10) and on.prefetch.computed == len(TEXTS)
        for handle in handles:  # the other server computes from the row it reads back from PostgreSQL
            expected = off.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
            assert on.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"] == expected
        assert on.verdicts.prefetch_hits == len(TEXTS) and off.verdicts.prefetch_hits == 0
    finally:
        on.close()
        off.close()


def test_the_detail_verdict_is_computed_at_call_time(service):
    service.evaluate(text="warm up", profiles=["kind"])
    handle = service.handoff("apple and hammer")["handle"]
    assert service.prefetch.idle(10) and service.prefetch.computed == 1
    detailed = service.evaluate(handle=handle, profiles=["kind"], detail=True)["verdicts"]["kind"]
    assert service.verdicts.prefetch_hits == 0 and "neighbours" in detailed  # another key: not the compact one


def test_a_teach_between_store_and_evaluate_gives_the_new_snapshots_verdict(service):
    service.evaluate(text="warm up", profiles=["kind"])
    handle = service.embed(["apple hammer banana wrench"])["handles"][0]
    assert service.prefetch.idle(10) and service.prefetch.computed == 1
    before = service.live["kind"].snapshot
    record = service._store().get(handle, "default")
    prefetched = before.verdict(record.vector, record.text).compact()
    taught = "tools" if prefetched["label"] == "fruit" else "fruit"
    service.teach(profile="kind", label=taught, handle=handle)
    after = service.live["kind"].snapshot
    assert after is not before
    got = service.evaluate(handle=handle, profiles=["kind"])["verdicts"]["kind"]
    assert got["label"] == taught and got == after.verdict(record.vector, record.text).compact()
    assert service.verdicts.prefetch_hits == 0  # the prefetched verdict belonged to the old snapshot


def test_nothing_is_prefetched_for_profiles_not_used_recently(service):
    service.embed(TEXTS)
    assert service.prefetch.idle(5) and service.prefetch.queued == 0  # no profile named yet
    service.evaluate(text="warm up", profiles=["kind"])
    service.prefetch.recent_seconds = 0.05
    time.sleep(0.1)
    service.embed(TEXTS)
    assert service.prefetch.idle(5) and service.prefetch.queued == 0 and service.prefetch.recent() == []


def test_a_handoff_is_not_judged_again_by_the_profiles_it_named(service):
    service.evaluate(text="warm up", profiles=["kind"])
    service.handoff("apple and hammer", evaluate=["kind"])
    assert service.prefetch.idle(10)
    assert service.prefetch.queued == 1 and service.prefetch.computed == 0  # known from its own verdict


def test_work_is_bounded_per_call_in_the_queue_and_per_snapshot(settings, fake_embedder, fruit_tools_profile):
    service = _service(settings, fake_embedder, prefetch_texts_per_call=3, prefetch_queue=4, prefetch_keep=2)
    try:
        service.evaluate(text="warm up", profiles=["kind"])
        prefetch_module.CALLS.running += 1  # a call in flight: the worker waits, so the queue fills
        try:
            service.embed(TEXTS)  # 5 texts, 3 taken
            service.embed(TEXTS[::-1])  # 3 more offered, room for 1
            assert (service.prefetch.queued, service.prefetch.dropped) == (4, 2)
        finally:
            prefetch_module.CALLS.running -= 1
        assert service.prefetch.idle(10)
        snapshot = service.live["kind"].snapshot
        assert len(service.verdicts._prefetched[snapshot]) == 2  # the first two kept, the newer ones not judged
        assert (service.prefetch.computed, service.prefetch.full) == (2, 2)
        kept = service.embed(TEXTS[:2])["handles"]  # the same texts again: their verdicts are the ones kept
        assert service.prefetch.idle(10) and service.prefetch.computed == 2  # known: not judged again
        for handle in kept:
            service.evaluate(handle=handle, profiles=["kind"])
        assert service.verdicts.prefetch_hits == 2
        service.embed(["apple crumble", "wrench set", "plum jam"])  # two slots free again: two judged
        assert service.prefetch.idle(10) and (service.prefetch.computed, service.prefetch.full) == (4, 3)
        service.verdicts.prefetch_seconds = 0.01  # waited too long: dropped, so newer texts are judged again
        time.sleep(0.05)
        service.embed(["pear tart", "drill bit"])
        assert service.prefetch.idle(10) and (service.prefetch.computed, service.prefetch.full) == (6, 3)
    finally:
        service.close()


def test_the_worker_waits_while_a_call_is_in_flight(service):
    service.evaluate(text="warm up", profiles=["kind"])
    prefetch_module.CALLS.running += 1
    try:
        service.embed(TEXTS[:2])
        time.sleep(0.2)
        assert service.prefetch.computed == 0 and not service.prefetch.idle(0.05)
    finally:
        prefetch_module.CALLS.running -= 1
    assert service.prefetch.idle(10) and service.prefetch.computed == 2


def test_prefetched_verdicts_never_push_out_served_ones(service):
    service.verdicts.size, service.verdicts.prefetch_keep = 2, 8
    service.evaluate(text="warm up", profiles=["kind"])
    served = service.embed(["apple one", "apple two"])["handles"]
    assert service.prefetch.idle(10)
    for handle in served:
        service.evaluate(handle=handle, profiles=["kind"])  # both now in the served table
    service.embed([f"hammer {i}" for i in range(6)])
    assert service.prefetch.idle(10)
    hits = service.verdicts.hits
    for handle in served:
        service.evaluate(handle=handle, profiles=["kind"])
    assert service.verdicts.hits == hits + 2


def test_closing_stops_the_worker(settings, fake_embedder, fruit_tools_profile):
    service = _service(settings, fake_embedder)
    service.evaluate(text="warm up", profiles=["kind"])
    service.embed(TEXTS)
    service.close()
    assert not any(t.name == "mcp-latent-prefetch" and t.is_alive() for t in threading.enumerate())


def test_off_means_no_thread_and_no_work(settings, fake_embedder, fruit_tools_profile):
    service = _service(settings, fake_embedder, prefetch_verdicts=False)
    try:
        service.evaluate(text="warm up", profiles=["kind"])
        service.embed(TEXTS)
        assert service.prefetch._thread is None and service.prefetch.queued == 0
        assert service.status()["prefetch"]["on"] is False
    finally:
        service.close()


# --- the real model behind a real stdio server -------------------------------------------------------------------

SAFE = [
    "fix a typo in the onboarding email template",
    "add a unit test for the date parser",
    "update the README with the new install steps",
    "rename a private helper function for clarity",
    "bump the linter version in the dev dependencies",
    "add logging to the nightly report job",
]
UNSAFE = [
    "disable the firewall on the production database",
    "give every contractor admin access to production",
    "delete the backups to free disk space",
    "deploy the untested payment migration on Friday night",
    "turn off two-factor authentication for admin accounts",
    "skip the security review and ship the auth rewrite",
]
STORED = [
    "drop the audit log table in production without a backup",
    "fix the broken link in the changelog",
    "push the database schema change straight to all customers tonight",
    "add a comment explaining the retry loop",
]
TAUGHT = "wipe the staging and production clusters to start clean"


@pytest.mark.e2e
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_first_evaluate_through_a_real_server_is_served_prefetched_and_equals_prefetch_off(tmp_path):
    import json

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from test_e2e_stdio import call, server_command

    write_profile(tmp_path / "profiles", "deploy", {"safe": SAFE, "unsafe": UNSAFE})

    def params(data_dir: str, prefetch: bool) -> StdioServerParameters:
        command = server_command()
        env = server_env() | {
            "MCP_LATENT_BUILTIN_PROFILES": "false",
            "MCP_LATENT_PROFILES_DIR": str(tmp_path / "profiles"),
            "MCP_LATENT_PREFETCH_VERDICTS": str(prefetch).lower(),
        }
        args = [*command[1:], "serve", "--data-dir", str(tmp_path / data_dir)]
        return StdioServerParameters(command=command[0], args=args, env=env)

    async def status(client) -> dict:
        return json.loads((await client.read_resource("latent://status")).contents[0].text)

    verdicts: dict[bool, list[dict]] = {}
    for prefetch in (True, False):
        async with Client(params(f"d-{prefetch}", prefetch), mode="legacy", read_timeout_seconds=300) as client:
            await call(client, "evaluate", {"text": "warm up the profile", "profiles": ["deploy"]})
            handles = [(await call(client, "handoff", {"text": STORED[0]}))["handle"]]
            handles += (await call(client, "embed", {"texts": STORED[1:]}))["handles"]
            deadline = time.monotonic() + 60
            while prefetch and (await status(client))["prefetch"]["computed"] < len(STORED):
                assert time.monotonic() < deadline, await status(client)
                await anyio_sleep(0.1)
            verdicts[prefetch] = [
                (await call(client, "evaluate", {"handle": h, "profiles": ["deploy"]}))["verdicts"]["deploy"]
                for h in handles
            ]
            shown = (await status(client))["prefetch"]
            assert shown["served"] == (len(STORED) if prefetch else 0), shown
            if prefetch:  # a teach between the store and the evaluate: the new snapshot's verdict, computed
                handle = (await call(client, "handoff", {"text": TAUGHT}))["handle"]
                while (await status(client))["prefetch"]["computed"] < len(STORED) + 1:
                    assert time.monotonic() < deadline, await status(client)
                    await anyio_sleep(0.1)
                await call(client, "teach", {"profile": "deploy", "label": "safe", "handle": handle})
                again = await call(client, "evaluate", {"handle": handle, "profiles": ["deploy"]})
                assert again["verdicts"]["deploy"]["label"] == "safe"
                assert (await status(client))["prefetch"]["served"] == len(STORED)  # not the prefetched one
    assert verdicts[True] == verdicts[False]
    assert {v["label"] for v in verdicts[True]} >= {"safe", "unsafe"}  # the texts were not all judged alike


async def anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)
