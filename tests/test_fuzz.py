"""Property-based: generated arguments of every shape to every tool never crash or hang the server."""

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from mcp_latent.server.tools import build_server

TOOLS = ["handoff", "evaluate", "embed", "similar", "profiles", "teach", "namespaces", "drop_namespace"]
NAMES = [
    "text",
    "texts",
    "handle",
    "profiles",
    "evaluate",
    "namespace",
    "detail",
    "k",
    "meta",
    "parent",
    "from_agent",
    "return_vectors",
    "profile",
    "label",
    "compare_parent",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
arguments = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=10), json_values, max_size=6)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tool=st.sampled_from(TOOLS), args=arguments)
def test_any_arguments_give_a_result_or_a_clear_error(service, tool, args):
    async def scenario():
        async with Client(build_server(service=service), mode="legacy") as client:
            with anyio.fail_after(20):
                result = await client.call_tool(tool, args)
            if result.is_error:
                assert result.content and len(result.content[0].text) > 10
            with anyio.fail_after(20):  # the server is still answering
                assert not (await client.call_tool("profiles", {})).is_error

    anyio.run(scenario)
