"""The service over the store: retention on a schedule, removed parents, teaches shared by servers on one dir."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mcp_latent.service.api import LatentService


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def started(fake_embedder, fruit_tools_profile):
    """Start services over the same data dir (fake embedder); all closed at the end."""
    running: list[LatentService] = []

    def start(settings) -> LatentService:
        svc = LatentService(settings, embedder=fake_embedder)
        svc.start()
        svc.wait_ready(5)
        running.append(svc)
        return svc

    yield start
    for svc in running:
        svc.close()


def test_retention_caps_every_namespace_on_a_schedule(started, settings):
    """Issue #12: cap 2 with writes alternating A and B (40 each) left A with 40 records."""
    service = started(settings.model_copy(update={"retention_max_records": 2, "retention_interval_seconds": 0.05}))
    for i in range(40):
        service.handoff(f"apple number {i}", namespace="A")
        service.handoff(f"hammer number {i}", namespace="B")
    counts = lambda: {n["namespace"]: n["count"] for n in service.namespaces()["namespaces"]}  # noqa: E731
    assert wait_for(lambda: counts() == {"A": 2, "B": 2}), counts()


def test_ttl_reaches_namespaces_nobody_writes_to(started, settings):
    service = started(settings.model_copy(update={"retention_ttl_seconds": 0.3, "retention_interval_seconds": 0.05}))
    service.embed(["apple", "banana", "cherry"], namespace="idle")
    assert wait_for(lambda: service.namespaces()["namespaces"] == [])


def test_compare_parent_after_retention_removed_the_parent(started, settings):
    """Issue #12: compare_parent raised NotFound naming the parent once retention had removed it."""
    service = started(settings.model_copy(update={"retention_max_records": 1, "retention_interval_seconds": 0.05}))
    parent = service.handoff("apple banana cherry fruit")["handle"]
    child = service.handoff("hammer wrench screwdriver", parent=parent)["handle"]
    assert wait_for(lambda: service.store.count("default") == 1)
    result = service.evaluate(handle=child, profiles=["kind"], compare_parent=True)
    assert result["verdicts"]["kind"]["label"] == "tools"
    assert result["parent"]["handle"] == parent and result["parent"]["stored"] is False
    assert "no longer stored" in result["parent"]["note"]


def test_a_teach_on_one_server_reaches_another_on_the_same_data_dir(started, settings):
    """Issue #12: taught exemplars were read only at startup, so two servers on one dir judged differently."""
    fast_poll = settings.model_copy(update={"store_poll_seconds": 0.05})
    first, second = started(fast_poll), started(fast_poll)
    text = "durian rambutan mangosteen"
    before = second.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]
    assert text not in [n[0] for n in before["neighbours"]]
    first.teach("kind", "fruit", text=text)

    def nearest() -> str:
        return second.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]["neighbours"][0][0]

    assert wait_for(lambda: nearest() == text)
    assert second.list_profiles()[0]["taught"] == first.list_profiles()[0]["taught"] == 1
