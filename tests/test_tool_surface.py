"""The tool surface: which tools are published (read-only mode, allow-list), how small their manifest is, and
argument errors that say in one sentence what to send."""

from __future__ import annotations

import json

import pytest
from conftest import FRUIT, TOOLS, write_profile
from mcp import Client

from mcp_latent.errors import InvalidInput
from mcp_latent.server.tools import build_server
from mcp_latent.service.api import LatentService

pytestmark = pytest.mark.anyio

WRITING_TOOLS = {"handoff", "embed", "teach", "drop_namespace", "define_profile", "delete_profile", "forget"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def served(service: LatentService, **changes) -> Client:
    service.settings = service.settings.model_copy(update=changes)
    return Client(build_server(service=service), mode="legacy")


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def test_read_only_mode_registers_no_writing_tool(service):
    async with served(service, read_only=True) as client:
        names = await tool_names(client)
        assert names and not names & WRITING_TOOLS
        assert all(tool.annotations.read_only_hint for tool in (await client.list_tools()).tools)
        refused = await client.call_tool("handoff", {"text": "apple banana"})
        assert refused.is_error and "no tool 'handoff'" in refused.content[0].text
        assert "evaluate" in refused.content[0].text  # names what is there instead
        assert not (await client.call_tool("evaluate", {"text": "apple", "profiles": ["kind"]})).is_error
    assert service.namespaces()["namespaces"] == []  # nothing was written


async def test_allow_list_publishes_only_the_named_tools(service):
    async with served(service, tools=["evaluate", "profiles"]) as client:
        assert await tool_names(client) == {"evaluate", "profiles"}
        assert (await client.call_tool("similar", {"text": "apple"})).is_error


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tools": ["evaluate", "evalute"]}, "unknown tool(s) evalute"),
        ({"tools": ["evaluate", "handoff"], "read_only": True}, "writing tool(s) handoff"),
    ],
)
def test_a_tool_setting_that_cannot_be_honoured_fails_at_startup(service, changes, expected):
    service.settings = service.settings.model_copy(update=changes)
    with pytest.raises(InvalidInput, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build_server(service=service)


async def test_unknown_arguments_are_refused_with_the_valid_names(service):
    async with served(service) as client:
        # `profile` for `profiles` used to be dropped silently, so every profile was applied.
        result = await client.call_tool("evaluate", {"text": "apple banana", "profile": "kind"})
        assert result.is_error
        message = result.content[0].text
        assert "`profile`" in message and "did you mean `profiles`" in message
        assert all(f"`{name}`" in message for name in ("handle", "text", "profiles", "namespace", "detail"))
        empty = await client.call_tool("profiles", {"verbose": True})
        assert empty.is_error and "takes no arguments" in empty.content[0].text


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("similar", {"text": "apple", "k": "many"}, "similar: `k` must be an integer, not a string."),
        ("embed", {"texts": "apple"}, "embed: `texts` must be a list of strings, not a string."),
        ("embed", {"texts": ["apple", 3]}, "embed: `texts` must be a list of strings, but `texts[1]` is an integer."),
        ("handoff", {}, "handoff: `text` is required (a string)."),
        ("handoff", {"text": "apple", "meta": [1]}, "handoff: `meta` must be a JSON object, not a list."),
        ("evaluate", {"text": "apple", "detail": "very"}, "evaluate: `detail` must be true or false, not a string."),
    ],
)
async def test_wrong_argument_types_are_one_sentence_without_pydantic_text(service, tool, arguments, expected):
    async with served(service) as client:
        result = await client.call_tool(tool, arguments)
        assert result.is_error
        message = result.content[0].text
        assert message == expected
        assert "pydantic" not in message and "http" not in message and "\n" not in message


async def test_evaluate_without_profiles_applies_every_loaded_profile_past_the_per_call_cap(
    settings, fake_embedder, fruit_tools_profile
):
    for i in range(3):
        write_profile(settings.user_profiles_dir, f"kind{i}", {"fruit": FRUIT, "tools": TOOLS}, "min_similarity = -1.0")
    capped = settings.model_copy(update={"max_profiles_per_call": 2})
    service = LatentService(capped, embedder=fake_embedder)
    service.start()
    try:
        verdicts = service.evaluate(text="apple banana cherry")["verdicts"]
        assert set(verdicts) == {"kind", "kind0", "kind1", "kind2"}
        with pytest.raises(InvalidInput, match="MCP_LATENT_MAX_PROFILES_PER_CALL"):
            service.evaluate(text="apple", profiles=["kind", "kind0", "kind1"])  # the cap still bounds named lists
    finally:
        service.close()


async def test_schemas_keep_what_the_model_needs(service):
    async with served(service) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    manifest = json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.values()])
    assert '"title"' not in manifest and '{"type": "null"}' not in manifest
    evaluate = tools["evaluate"].input_schema
    assert evaluate["type"] == "object" and "profiles" in evaluate["properties"]
    assert evaluate["properties"]["profiles"]["type"] == "array"
    assert tools["similar"].input_schema["properties"]["k"] == {"default": 5, "type": "integer"}
    assert tools["handoff"].input_schema["required"] == ["text"]
    assert tools["handoff"].output_schema["required"] == ["handle"]


# --- manifest size over a real stdio server (what every agent's context carries) ----------------------------------

# Bytes of minified tools/list JSON; README "Tool manifest size". Issue 22 raised the default from 5,000: five tools
# (define_profile, delete_profile, forget, recent; filters on similar) let an agent make and remove its own evaluator
# and manage its handoffs without a shell (~2,100 bytes). MCP_LATENT_TOOLS leaves any of them out (without those
# four the manifest is back under 5,000); the read-only manifest stays within 3,000 with `recent` and the filters.
BUDGETS = {"default": 7200, "read-only": 3000}


@pytest.mark.e2e
@pytest.mark.parametrize(("mode", "env"), [("default", {}), ("read-only", {"MCP_LATENT_READ_ONLY": "true"})])
async def test_tool_manifest_fits_its_budget_over_stdio(tmp_path, mode, env):
    from mcp.client.stdio import StdioServerParameters
    from test_e2e_stdio import params

    base = params(tmp_path / "d")
    server = StdioServerParameters(command=base.command, args=base.args, env={**base.env, **env})
    async with Client(server, mode="legacy", read_timeout_seconds=120) as client:
        tools = (await client.list_tools()).tools
    sizes = {tool.name: len(minified_tool(tool)) for tool in tools}
    total = len("[" + ",".join(minified_tool(tool) for tool in tools) + "]")
    report = ", ".join(f"{name} {size}" for name, size in sorted(sizes.items(), key=lambda item: -item[1]))
    assert total <= BUDGETS[mode], f"{mode} tools/list is {total} bytes (budget {BUDGETS[mode]}); per tool: {report}"
    if mode == "read-only":
        assert not set(sizes) & WRITING_TOOLS


def minified_tool(tool) -> str:
    return json.dumps(tool.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))


async def test_engine_errors_read_like_argument_errors(service):
    async with served(service) as client:
        result = await client.call_tool("evaluate", {"text": "apple", "profiles": ["nope"]})
    assert result.is_error
    assert result.content[0].text.startswith("evaluate: profile 'nope' not found; available: kind")
