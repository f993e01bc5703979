"""`/metrics` (Prometheus text format) and the usage series behind it: calls by tool and outcome, latency
histograms, verdicts/teaches/spot checks per profile, fit state, store size; the token rule; one registry per server;
recording never waits on the stats lock; the per-minute series is bounded and totals stay exact."""

from __future__ import annotations

import threading
import time

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_latent.server.http import http_app
from mcp_latent.server.tools import build_server
from mcp_latent.service import usage_db
from mcp_latent.service.usage_stats import ProfileStats

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def asgi_client(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def exercise(server) -> bool:
    """A few calls, one bad and one unknown; True when the taught text had been answered (a spot check)."""
    await server.call_tool("handoff", {"text": "apple banana cherry", "namespace": "team-a"})
    await server.call_tool("evaluate", {"text": "hammer wrench toolbox", "profiles": ["kind"]})
    judged = await server.call_tool("evaluate", {"text": "apple banana fruit", "profiles": ["kind"]})
    with pytest.raises(Exception, match="kind"):  # a bad call: counted with outcome "error"
        await server.call_tool("evaluate", {"text": "x", "profiles": ["nope"]})
    with pytest.raises(Exception, match="no tool"):
        await server.call_tool("no_such_tool", {})
    await server.call_tool("teach", {"text": "apple banana fruit", "profile": "kind", "label": "fruit"})
    return not judged.structured_content["verdicts"]["kind"].get("unsure", False)


async def test_metrics_count_calls_verdicts_teaches_fit_state_and_store_size(service):
    server = build_server(service=service)
    app = http_app(server, service.settings)
    spot_checked = await exercise(server)
    async with asgi_client(app) as http:
        reply = await http.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    got = samples(reply.text)
    assert got[("mcp_latent_tool_calls_total", (("outcome", "ok"), ("tool", "evaluate")))] == 2
    assert got[("mcp_latent_tool_calls_total", (("outcome", "error"), ("tool", "evaluate")))] == 1
    assert got[("mcp_latent_tool_calls_total", (("outcome", "error"), ("tool", "unknown")))] == 1
    assert got[("mcp_latent_tool_calls_total", (("outcome", "ok"), ("tool", "teach")))] == 1
    # the histogram counts every evaluate call, and its +Inf bucket equals its count
    assert got[("mcp_latent_tool_latency_seconds_count", (("tool", "evaluate"),))] == 3
    assert got[("mcp_latent_tool_latency_seconds_bucket", (("le", "+Inf"), ("tool", "evaluate")))] == 3
    assert got[("mcp_latent_tool_latency_seconds_sum", (("tool", "evaluate"),))] > 0
    answered = got[("mcp_latent_verdicts_total", (("outcome", "answered"), ("profile", "kind")))]
    escalated = got[("mcp_latent_verdicts_total", (("outcome", "escalated"), ("profile", "kind")))]
    assert answered + escalated == 2
    assert got[("mcp_latent_taught_total", (("profile", "kind"),))] == 1
    checks = sum(
        got[("mcp_latent_spot_checks_total", (("profile", "kind"), ("result", r)))] for r in ("agreed", "disagreed")
    )
    assert checks == (1 if spot_checked else 0)  # a teach of a text the profile had answered is a spot check
    assert got[("mcp_latent_profile_state", (("profile", "kind"), ("state", "ready")))] == 1
    assert got[("mcp_latent_profile_state", (("profile", "kind"), ("state", "fitting")))] == 0
    assert got[("mcp_latent_store_handoffs", (("namespace", "team-a"),))] == 1
    assert got[("mcp_latent_ready", ())] == 1
    assert got[("process_cpu_seconds_total", ())] > 0  # the process's own figures, in this registry


async def test_two_servers_in_one_process_keep_their_own_counts(service, settings, fake_embedder, tmp_path):
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    other_settings = Settings(data_dir=tmp_path / "other", builtin_profiles=False, profiles_dir=settings.profiles_dir)
    other = LatentService(other_settings, embedder=fake_embedder)
    await anyio.to_thread.run_sync(other.start)
    try:
        first, second = build_server(service=service), build_server(service=other)
        apps = http_app(first, settings), http_app(second, other_settings)
        await first.call_tool("evaluate", {"text": "apple", "profiles": ["kind"]})
        for _ in range(3):
            await second.call_tool("evaluate", {"text": "hammer", "profiles": ["kind"]})
        counts = []
        for app in apps:
            async with asgi_client(app) as http:
                got = samples((await http.get("/metrics")).text)
            counts.append(got[("mcp_latent_tool_calls_total", (("outcome", "ok"), ("tool", "evaluate")))])
        assert counts == [1, 3]
    finally:
        other.close()


async def test_metrics_and_page_need_the_token_unless_open_ops_pages(service):
    app = http_app(build_server(service=service), service.settings, token="s3cret")
    async with asgi_client(app) as http:
        for path in ("/metrics", "/"):
            assert (await http.get(path)).status_code == 401
            ok = await http.get(path, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
    service.settings.open_ops_pages = True
    app = http_app(build_server(service=service), service.settings, token="s3cret")
    async with asgi_client(app) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/")).status_code == 200
        assert (await http.post("/mcp", json={})).status_code == 401  # the MCP endpoint keeps its token


async def test_a_call_is_counted_while_the_stats_lock_is_held(service):
    """The event loop only appends to a deque: a flush holding the stats lock (e.g. a slow disk) delays no call."""
    server = build_server(service=service)
    await server.call_tool("evaluate", {"text": "apple banana", "profiles": ["kind"]})  # cache the text: quick path
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with service.stats._flush_lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        with anyio.fail_after(5):
            await server.call_tool("evaluate", {"text": "apple banana", "profiles": ["kind"]})
        assert len(service.stats._events) >= 2  # the verdict and the call, queued for the flush
    finally:
        release.set()
        thread.join()
    service.stats.flush()
    assert service.stats.process_calls[("evaluate", "ok")][-1] > 0


def test_series_is_bounded_and_totals_stay_exact(tmp_path):
    """Minutes older than the detail window become days; days older than the kept window one total."""
    stats = ProfileStats(tmp_path / "stats.sqlite", detail_hours=24, keep_days=10)
    now = int(time.time() // 60)
    minutes = [now - d * 1440 - m for d in range(30) for m in range(0, 120, 7)]  # 30 days, 18 minutes each
    for minute in minutes:
        stats._events.append(("t", "risk", minute, "answered", 2))
        stats._events.append(("t", "risk", minute, "escalated", 1))
        stats._events.append(("c", "evaluate", minute, "ok", 0.003))
    stats.flush()
    before = stats.summary()["risk"], stats.calls()["evaluate"]
    rows_before = len(usage_db.query(stats.path, "SELECT * FROM tallies"))
    stats.compact(now=now * 60.0)
    stats.compact(now=now * 60.0)  # idempotent
    after = stats.summary()["risk"], stats.calls()["evaluate"]
    assert after == before and before[0]["answered"] == 2 * len(minutes)
    series = stats.series("risk")
    days = [m for m, _ in series if m < now - 24 * 60 - 1440]
    assert all(m % 1440 == 0 for m in days) and len(days) <= 10
    rows_after = len(usage_db.query(stats.path, "SELECT * FROM tallies"))
    assert rows_after < rows_before / 10
    assert min(m for m, _ in series) >= (now // 1440 - 10) * 1440  # older days are in the total only
    assert sum(c["answered"] for _, c in series) < 2 * len(minutes)


async def test_a_loopback_server_refuses_a_foreign_host_header(service):
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 must not read the figures."""
    app = http_app(build_server(service=service), service.settings)
    async with asgi_client(app) as http:
        for path in ("/", "/metrics"):
            refused = await http.get(path, headers={"Host": "evil.example:8765"})
            assert refused.status_code == 421 and "127.0.0.1" in refused.text
            assert (await http.get(path, headers={"Host": "localhost:8765"})).status_code == 200
            assert (await http.get(path, headers={"Host": "[::1]:8765"})).status_code == 200
