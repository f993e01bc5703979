"""Property-based: generated arguments of every shape, under every argument name, to every tool, give a result or a
clear error, never a crash. A crash is what the server reports as "internal error (...)" (any exception that is
not one of mcp-latent's own, with a traceback in the log): the test fails on it, and on an empty error text.

500 examples here; `tools/fuzz.sh` runs 5,000 (FUZZ_EXAMPLES) and prints the figure for the docs."""

from __future__ import annotations

import os

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from mcp_latent.server.tools import build_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))

# Every tool with every argument it takes (tests/test_tool_surface.py pins the published surface).
TOOLS = {
    "handoff": ["text", "from_agent", "namespace", "parent", "evaluate", "meta", "detail"],
    "evaluate": ["handle", "text", "profiles", "namespace", "detail", "compare_parent"],
    "embed": ["texts", "namespace", "return_vectors"],
    "similar": ["handle", "text", "k", "namespace"],
    "get": ["handle", "namespace"],
    "profiles": [],
    "teach": ["profile", "label", "handle", "text", "namespace", "labels"],
    "namespaces": [],
    "drop_namespace": ["namespace"],
}
ALL_NAMES = sorted({name for names in TOOLS.values() for name in names})

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Values that get past the type checks into the engine: real names, handles of the right shape, edge sizes.
plausible = st.sampled_from(
    [
        "kind",
        "fruit",
        "tools",
        "default",
        "team-a",
        "h_doesnotexi",
        "h_aaaaaaaaaa",
        "apple banana",
        "",
        " ",
        "x" * 5000,
        ["kind"],
        ["kind", "kind"],
        ["nope"],
        [],
        {"kind": "fruit"},
        {"kind": "nope"},
        {"nope": "fruit"},
        {},
        0,
        -1,
        1,
        5,
        10**9,
        True,
        {"a": {"b": [1, 2, {"c": None}]}},
    ]
)
# Weighted towards plausible values and the real handle ("HANDLE", swapped in per call), so most calls pass the
# type checks and reach the engine; arbitrary JSON for the rest.
values = st.one_of(plausible, plausible, st.just("HANDLE"), json_values)


def arguments(tool: str):
    """Each of the tool's own arguments present or not (so calls reach the engine with many combinations), plus
    now and then a name of another tool or a junk name (refused as unknown)."""
    own = st.fixed_dictionaries({}, optional={name: values for name in TOOLS[tool]})
    foreign = st.dictionaries(st.sampled_from(ALL_NAMES) | st.text(max_size=10), values, max_size=2)
    return st.one_of(own, own, own, st.tuples(own, foreign).map(lambda pair: {**pair[1], **pair[0]}))


calls = st.sampled_from(sorted(TOOLS)).flatmap(lambda tool: st.tuples(st.just(tool), arguments(tool)))


@pytest.fixture
def fuzz_client(service):
    # One client session for every example (a session per example cost most of the run): its async context is
    # kept open in a portal's event loop thread while hypothesis drives the calls from this one.
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(build_server(service=service), mode="legacy")) as client,
    ):
        made = portal.call(client.call_tool, "handoff", {"text": "apple banana cherry"})
        yield portal, client, made.structured_content["handle"]


def test_no_arguments_crash_any_tool(fuzz_client):
    portal, client, handle = fuzz_client
    made: list[str] = []  # the tool of every generated call (hypothesis may stop early: the run says how many)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(call=calls)
    def check(call):
        tool, args = call
        made.append(tool)
        args = {name: handle if value == "HANDLE" else value for name, value in args.items()}
        result = portal.call(client.call_tool, tool, args)
        text = result.content[0].text if result.content else ""
        if result.is_error:
            assert text.strip(), f"{tool}({args!r}): an error without a message"
            assert "internal error" not in text, f"{tool}({args!r}) crashed: {text}"

    check()
    print(f"\nfuzz: {len(made)} generated calls, {len(set(made))} tools, 0 internal errors")
    assert set(made) == set(TOOLS)  # every tool was called
    assert not portal.call(client.call_tool, "profiles", {}).is_error  # still serving
