"""Issue 22 through the MCP tools (in-process server, fake embedder): an agent defines, inspects, teaches,
redefines and deletes its own profile; forgets and filters its handoffs. The real-model, real-server proof is
tests/test_e2e_agent_profiles.py."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, write_profile
from mcp import Client

from mcp_latent.server.tools import build_server
from mcp_latent.service.api import LatentService

pytestmark = pytest.mark.anyio

NOW = [f"outage now production down customers blocked {i}" for i in range(2)]
WEEK = [f"plan review sprint this week schedule {i}" for i in range(2)]
LATER = [f"someday idea backlog maybe later wishlist {i}" for i in range(2)]
LABELS = [
    {"name": "now", "description": "drop everything", "examples": NOW},
    {"name": "this_week", "examples": WEEK},
    {"name": "later", "examples": LATER},
]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def call(client: Client, tool: str, arguments: dict) -> dict:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


async def error(client: Client, tool: str, arguments: dict) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.content[0].text
    return result.content[0].text


def served(service: LatentService, **changes) -> Client:
    service.settings = service.settings.model_copy(update=changes)
    return Client(build_server(service=service), mode="legacy")


async def test_define_use_teach_redefine_and_delete_a_profile(service, settings):
    async with served(service) as client:
        made = await call(client, "define_profile", {"name": "urgency", "description": "How soon.", "labels": LABELS})
        assert made["profile"] == "urgency" and made["labels"] == ["now", "this_week", "later", "off_topic"]
        assert made["exemplars"] == 6 + len(service.registry.get("urgency").spec.labels[-1].examples)
        path = settings.user_profiles_dir / "urgency.toml"
        assert path.exists() and "abstain = true" in path.read_text()
        verdict = (await call(client, "evaluate", {"text": "production down now", "profiles": ["urgency"]}))["verdicts"]
        assert verdict["urgency"]["unsure"] is True  # two examples per label: nothing cross-validated, it abstains
        listed = {p["name"]: p for p in (await call(client, "profiles", {}))["profiles"]}
        assert listed["urgency"]["ready"] is True and listed["urgency"]["builtin"] is False
        # Cross-validated on two exemplars a label: the figures say how little there is to trust yet.
        assert 0.0 <= listed["urgency"]["coverage"] <= 1.0 and "answered_accuracy" in listed["urgency"]
        assert listed["urgency"]["supported"] is False and "supported" not in listed["kind"]
        assert "abstain_until_supported = true" in path.read_text()
        assert (
            listed["kind"]["ready"] is True and "coverage" in listed["kind"] and "answered_accuracy" in listed["kind"]
        )
        for i in range(4):
            await call(client, "teach", {"profile": "urgency", "label": "later", "text": f"later backlog idea {i}"})
            await call(client, "teach", {"profile": "urgency", "label": "now", "text": f"outage now down {i}"})
        # Redefine without `later`: `now`'s taught exemplars stay, `later`'s are reported as dropped.
        again = await call(
            client,
            "define_profile",
            {
                "name": "urgency",
                "description": "How soon.",
                "labels": LABELS[:2] + [{"name": "soon", "examples": ["next month maybe", "after the release"]}],
            },
        )
        assert again["replaced"] is True and again["kept_taught"] == 4 and again["dropped_taught"] == {"later": 4}
        assert service.live["urgency"].taught == 4 and "later" not in service.live["urgency"].labels
        gone = await call(client, "delete_profile", {"name": "urgency"})
        assert gone == {"profile": "urgency", "deleted": True, "taught_removed": 8}
        assert not path.exists() and "urgency" not in service.live
        assert "profile 'urgency' not found" in await error(client, "evaluate", {"text": "x", "profiles": ["urgency"]})
        assert "not found" in await error(client, "delete_profile", {"name": "urgency"})
    # A fresh server on the same data dir: the deleted profile stays gone, a defined one loads from its file.
    service.define_profile("urgency2", "How soon.", LABELS, off_topic=False)
    fresh = LatentService(settings, embedder=service._embedder)
    fresh.start()
    try:
        assert set(fresh.live) == {"kind", "urgency2"} and fresh.live["urgency2"].labels == [
            "now",
            "this_week",
            "later",
        ]
    finally:
        fresh.close()


async def test_definition_errors_name_the_field(service):
    async with served(service) as client:
        cases = [
            ({"name": "bad name!", "labels": LABELS}, "name: Value error, use 1-64 letters"),
            ({"name": "u", "labels": [LABELS[0]]}, "labels: List should have at least 2 items"),
            ({"name": "u", "labels": [LABELS[0], {"name": "b", "examples": ["ok", "  "]}]}, "labels[1].examples"),
            ({"name": "u", "labels": [LABELS[0], {"examples": ["x"]}]}, "labels[1].name: Field required"),
            (
                {"name": "u", "labels": [LABELS[0], {"name": "b", "colour": "red"}]},
                "labels[1] has unknown key(s) colour",
            ),
            ({"name": "u", "labels": [LABELS[0], {"name": "b", "value": 1}]}, "every label has a `value`"),
            ({"name": "u", "labels": [LABELS[0], {"name": "off_topic"}]}, "off_topic=false"),
            ({"name": "u", "labels": [{"name": f"l{i}"} for i in range(51)]}, "MCP_LATENT_MAX_PROFILE_LABELS"),
            ({"name": "u", "labels": "now, later"}, "`labels` must be a list, not a string"),
            ({"name": "u", "labels": ["now", "later"]}, "`labels[0]` is a string"),
        ]
        for arguments, expected in cases:
            message = await error(client, "define_profile", {"description": "d", **arguments})
            assert expected in message, (arguments, message)
        assert not (await client.call_tool("profiles", {})).is_error  # the server is still up
    assert set(service.live) == {"kind"}  # nothing was written


async def test_zero_examples_and_ordinal_values_are_accepted(service):
    labels = [{"name": "low", "value": 1}, {"name": "mid", "value": 2}, {"name": "high", "value": 3}]
    made = service.define_profile("level", "Ordinal, cold start.", labels, off_topic=False)
    assert made["exemplars"] == 0
    verdict = service.evaluate(text="anything at all", profiles=["level"])["verdicts"]["level"]
    assert verdict["unsure"] is True and verdict["label"] is None
    assert service.registry.get("level").spec.ordinal


async def test_shipped_profiles_cannot_be_redefined_or_deleted(settings, fake_embedder):
    shipped = settings.model_copy(update={"builtin_profiles": True})
    service = LatentService(shipped, embedder=fake_embedder)
    service.start(fit_profiles=False)
    try:
        async with served(service) as client:
            assert "cannot be redefined" in await error(
                client, "define_profile", {"name": "risk", "description": "mine", "labels": LABELS}
            )
            assert "cannot be deleted" in await error(client, "delete_profile", {"name": "risk"})
        assert service.registry.get("risk").builtin
    finally:
        service.close()


async def test_read_only_servers_publish_no_profile_or_forget_tool(service):
    async with served(service, read_only=True) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"recent", "similar", "profiles"} <= names
        assert not names & {"define_profile", "delete_profile", "forget"}
    async with served(service, read_only=False, tools=["evaluate", "recent"]) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == {"evaluate", "recent"}


async def test_forget_recent_and_filtered_similar_through_the_tools(service):
    async with served(service) as client:
        made = []
        for i in range(6):
            agent = "alice" if i % 2 else "bob"
            meta = {"ticket": f"T-{i % 3}", "urgent": i == 5}
            made.append(await call(client, "handoff", {"text": f"apple banana {i}", "from_agent": agent, "meta": meta}))
        newest = (await call(client, "recent", {"limit": 3}))["recent"]
        assert [r["handle"] for r in newest] == [m["handle"] for m in made[::-1][:3]]
        assert newest[0]["from_agent"] == "alice" and newest[0]["text"] == "apple banana 5" and newest[0]["created_at"]
        only = await call(client, "similar", {"text": "apple banana", "k": 10, "from_agent": "alice"})
        assert {h["handle"] for h in only["similar"]} == {made[i]["handle"] for i in (1, 3, 5)}
        ticket = await call(client, "similar", {"text": "apple", "k": 10, "meta": {"ticket": "T-1"}})
        assert {h["handle"] for h in ticket["similar"]} == {made[i]["handle"] for i in (1, 4)}
        urgent = await call(client, "recent", {"meta": {"urgent": True}})
        assert [r["handle"] for r in urgent["recent"]] == [made[5]["handle"]]
        assert (await call(client, "recent", {"since": -3600}))["recent"]  # the last hour: all of them
        assert (await call(client, "recent", {"until": -3600}))["recent"] == []
        forgotten = await call(client, "forget", {"handle": made[0]["handle"]})
        assert forgotten == {"namespace": "default", "forgotten": 1}
        assert "not found" in await error(client, "get", {"handle": made[0]["handle"]})
        assert (await call(client, "forget", {"from_agent": "alice"}))["forgotten"] == 3
        left = await call(client, "similar", {"text": "apple banana", "k": 10})
        assert {h["handle"] for h in left["similar"]} == {made[i]["handle"] for i in (2, 4)}
        again = await call(client, "forget", {"handle": made[0]["handle"]})
        assert again["forgotten"] == 0 and "nothing was removed" in again["note"]
        assert "exactly one of `handle`" in await error(client, "forget", {})
        assert "`since` must be before `until`" in await error(client, "recent", {"since": -10, "until": -20})
        assert "MCP_LATENT_MAX_RECENT" in await error(client, "recent", {"limit": 1000})
        assert "must be a string, number or true/false" in await error(
            client, "similar", {"text": "apple", "meta": {"ticket": ["T-1"]}}
        )


def test_forget_reaches_another_server_on_the_data_dir(settings, fake_embedder, fruit_tools_profile):
    first, second = LatentService(settings, embedder=fake_embedder), LatentService(settings, embedder=fake_embedder)
    first.start()
    second.start()
    try:
        handles = [first.handoff(f"apple banana {i}", from_agent="a")["handle"] for i in range(5)]
        assert len(second.similar(text="apple banana", k=10)["similar"]) == 5  # second's index holds all five
        assert first.forget(handle=handles[0])["forgotten"] == 1
        assert handles[0] not in {h["handle"] for h in second.similar(text="apple banana", k=10)["similar"]}
        assert handles[0] not in {r["handle"] for r in second.recent(limit=10)["recent"]}
    finally:
        first.close()
        second.close()


def test_profiles_build_off_topic_option(tmp_path, settings):
    from mcp_latent.cli.main import main
    from mcp_latent.profiles.spec import off_topic_label, read_profile_file

    rows = tmp_path / "d.jsonl"
    rows.write_text(
        "\n".join(json.dumps({"text": t, "label": lab}) for lab, ts in (("a", NOW), ("b", WEEK)) for t in ts) + "\n"
    )
    out = tmp_path / "out"
    assert (
        main(
            ["profiles", "build", "--from", str(rows), "--name", "small", "--out", str(out), "--off-topic", "--no-fit"]
        )
        == 0
    )
    spec = read_profile_file(out / "small.toml")
    assert [(lab.name, lab.abstain) for lab in spec.labels] == [("a", False), ("b", False), ("off_topic", True)]
    assert spec.labels[-1].examples == off_topic_label().examples
    assert main(["profiles", "build", "--from", str(rows), "--name", "plain", "--out", str(out), "--no-fit"]) == 0
    assert [lab.name for lab in read_profile_file(out / "plain.toml").labels] == ["a", "b"]


def test_packaged_off_topic_texts_are_the_reviewable_source():
    """The package's copy (what an installed wheel has) equals tools/data/exemplars/off_topic.txt, the generic part
    of the shipped profiles' off_topic label (tests/test_profile_data.py). Work chatter that proposes nothing
    (off_topic_work.txt) stays out: a user's own profile (triage, urgency) may well judge status updates and bug
    reports ("Reminder: expense reports are due Friday" kept "finish the budget spreadsheet before Friday" unsure)."""
    from mcp_latent.profiles.spec import off_topic_label

    source = (ROOT / "tools" / "data" / "exemplars" / "off_topic.txt").read_text(encoding="utf-8").splitlines()
    assert off_topic_label().examples == [line.strip() for line in source if line.strip()]
    assert len(off_topic_label().examples) > 100


def test_an_unused_helper_profile_file_is_untouched(settings):
    write_profile(settings.user_profiles_dir, "other", {"x": ["a b"], "y": ["c d"]})
    assert (settings.user_profiles_dir / "other.toml").exists()


def test_a_tiny_profile_with_the_off_topic_label_fits(fake_embedder):
    """Two exemplars per label beside 200 off-topic texts: no held-out p reached the plain rule's lowest
    threshold, and choosing the operating point raised IndexError (every define_profile of that size failed)."""
    from mcp_latent.judge.fitted import FittedProfile
    from mcp_latent.profiles.fitter import flatten
    from mcp_latent.profiles.spec import ProfileSpec, off_topic_label

    spec = ProfileSpec.model_validate({"name": "u", "labels": LABELS}).model_copy()
    spec = spec.model_copy(update={"labels": [*spec.labels, off_topic_label()]})
    texts, y = flatten(spec)
    fitted = FittedProfile.fit(spec, fake_embedder.embed(texts), texts, y)
    assert fitted.verdict(fake_embedder.embed(["outage now production down"])[0]).label in (None, "now")


def test_support_gate_abstains_until_the_evidence_supports_the_target(fake_embedder):
    """Six held-out texts (two a label) answered 4 of 4 right: not enough to answer at a 0.9 target (the Wilson
    bound at one standard error is 0.8); 24 exemplars of two clear labels are; without the flag nothing changes."""
    from conftest import FRUIT, TOOLS

    from mcp_latent.judge.fitted import FittedProfile
    from mcp_latent.judge.support import UNSUPPORTED_THRESHOLD, wilson_lower
    from mcp_latent.profiles.fitter import flatten
    from mcp_latent.profiles.spec import ProfileSpec

    assert wilson_lower(4, 4) == pytest.approx(0.8) and wilson_lower(9, 9) == pytest.approx(0.9)
    assert wilson_lower(0, 0) == 0.0

    def fit(labels, **extra):
        spec = ProfileSpec.model_validate({"name": "u", "labels": labels, "min_similarity": -1.0, **extra})
        texts, y = flatten(spec)
        return FittedProfile.fit(spec, fake_embedder.embed(texts), texts, y)

    tiny = fit(LABELS, abstain_until_supported=True)
    assert tiny.calibration.threshold == UNSUPPORTED_THRESHOLD
    unseen = ["outage production down, customers blocked again", "review the plan for this sprint's schedule"]
    assert all(tiny.verdict(fake_embedder.embed([t])[0]).unsure for t in unseen)
    # A copy of one of its own examples is answered from memory even so (issue 24: a given or taught text is
    # answered as given), and says so.
    copy = tiny.verdict(fake_embedder.embed([NOW[0]])[0])
    assert copy.label == "now" and copy.memory is not None
    plenty = [{"name": "fruit", "examples": FRUIT}, {"name": "tools", "examples": TOOLS}]
    taught = fit(plenty, abstain_until_supported=True)
    assert taught.calibration.threshold <= 1.0
    assert taught.verdict(fake_embedder.embed(["apple banana cherry fruit salad"])[0]).label == "fruit"
    assert fit(plenty).calibration.threshold == taught.calibration.threshold  # the flag only gates
    fixed = fit(LABELS, abstain_until_supported=True, threshold=0.2)
    assert fixed.calibration.threshold == 0.2  # a fixed threshold is the user's choice


def test_defining_and_deleting_while_other_threads_read_the_profiles(service):
    """`live` and the registry's dict are replaced whole (copy-on-write): readers iterating them on other threads
    (evaluate with every profile, status, profiles) never see one change size, and nothing fails."""
    import threading

    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                service.evaluate(text="apple banana")
                service.status()
                service.list_profiles()
            except BaseException as exc:  # any failure at all is what this test looks for
                failures.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for i in range(15):
            service.define_profile(f"p{i % 3}", "churn", LABELS, off_topic=False)
            if i % 2:
                service.delete_profile(f"p{i % 3}")
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert not failures, failures[0]
    assert "kind" in service.live
