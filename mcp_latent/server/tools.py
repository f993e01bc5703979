"""The MCP tools and resources over a `LatentService`: one thin function per tool, run off the event loop."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_latent import __version__
from mcp_latent.errors import InvalidInput, LatentError, NotAllowed
from mcp_latent.server.auth import principal_of
from mcp_latent.server.models import (
    DESTROYS,
    READ_ONLY,
    WRITES,
    DefineOut,
    DeleteProfileOut,
    DropOut,
    EmbedOut,
    EvaluateOut,
    ForgetOut,
    GetOut,
    HandoffOut,
    NamespacesOut,
    ProfilesOut,
    RecentOut,
    SimilarOut,
    TeachOut,
)
from mcp_latent.server.schema import LatentTool, compact_input_schema, compact_output_schema, compact_result, minified
from mcp_latent.service.prefetch import CALLS
from mcp_latent.service.teachers import CURRENT_TEACHER
from mcp_latent.settings import Settings

if TYPE_CHECKING:  # imported at run time only where a service is built: numpy and the engine come with it
    from mcp_latent.server.deferred import DeferredService
    from mcp_latent.service.api import LatentService

log = logging.getLogger(__name__)


T = TypeVar("T")


INSTRUCTIONS = (
    "Latent handoffs: call `handoff` once with a proposal (optionally `evaluate`=[profiles]) to get a short handle "
    "and verdicts; pass the handle, not the text, to other agents; they call `evaluate` with the handle. "
    'A verdict with "unsure": true means vector math could not decide: reason it out yourself (detail=true '
    "gives the evidence). `profiles` lists the evaluators. A handle is visible only in its `namespace` (optional)."
)


READ_ONLY_INSTRUCTIONS = (
    "Latent handoffs (read-only): call `evaluate` with a handle you were given (or a text) to get verdicts; "
    '"unsure": true means decide it yourself (detail=true gives the evidence). `profiles` lists the evaluators. '
    "A handle is visible only in its `namespace` (optional)."
)


# Self-explanatory names (handle, text, namespace, k) carry no description; INSTRUCTIONS explain the concepts once.
Text = Annotated[str, Field(description="The proposal or message.")]


Handle = str


Namespace = str


Detail = Annotated[bool, Field(description="Add evidence (top labels, nearest exemplars, deciding words).")]


# Filters of `similar` and `recent` (one description each, shared).
Agent = str


MetaMatch = Annotated[dict[str, Any] | None, Field(description="Meta values to match.")]


Since = Annotated[float | None, Field(description="Unix s, or negative: s ago (also until).")]


Until = float


# What `profiles` shows per profile: enough to know what it judges and how far to trust it.
PROFILE_FIELDS = ("name", "description", "labels", "builtin", "ready", "eta_s", "error", "exemplars", "taught")
TRUST_FIELDS = ("supported", "coverage", "answered_accuracy")


class LatentServer(MCPServer):
    """MCPServer whose unknown-tool error lists the tools this server offers (read-only mode and the allow-list
    hide some)."""

    def __init__(
        self,
        *args: Any,
        tools: list[LatentTool],
        on_call: Callable[[str, str, float], None],
        default_namespace: str = "default",
        **kwargs: Any,
    ):
        super().__init__(*args, tools=tools, **kwargs)  # type: ignore[arg-type]
        self.offered = tuple(tool.name for tool in tools)  # fixed at construction: tools are never added later
        self.on_call = on_call  # counts every call and its duration; runs on the event loop, so it never waits
        self.default_namespace = default_namespace

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if name not in self.offered:
            self.on_call("unknown", "error", 0.0)  # one label for every unknown name: metrics stay bounded
            raise ToolError(f"no tool {name!r} on this server; tools: {', '.join(self.offered)}.")
        started = time.perf_counter()
        outcome = "error"
        # The caller's token scope (HTTP with tokens; none over stdio), checked before any work; its name is the
        # teacher recorded for what this call teaches (worker threads inherit the context variable).
        principal = principal_of(context)
        teacher = CURRENT_TEACHER.set(principal.name if principal is not None else None)
        try:
            if principal is not None:
                try:
                    principal.check(name, arguments, self.default_namespace)
                except NotAllowed as exc:
                    raise ToolError(str(exc)) from exc
            result = await super().call_tool(name, arguments, context)
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            return result
        finally:
            CURRENT_TEACHER.reset(teacher)
            self.on_call(name, outcome, time.perf_counter() - started)


def selected_tools(settings: Settings, tools: list[LatentTool]) -> list[LatentTool]:
    """The tools this server publishes: all, or those of the allow-list; only read-only ones in read-only mode."""
    known = {tool.name: tool for tool in tools}
    wanted = settings.tools or list(known)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise InvalidInput(f"MCP_LATENT_TOOLS names unknown tool(s) {', '.join(unknown)}; tools: {', '.join(known)}.")
    chosen = [known[name] for name in dict.fromkeys(wanted)]
    if settings.read_only:
        writing = [tool.name for tool in chosen if not (tool.annotations and tool.annotations.read_only_hint)]
        if settings.tools and writing:
            raise InvalidInput(
                f"MCP_LATENT_TOOLS names writing tool(s) {', '.join(writing)} but MCP_LATENT_READ_ONLY is on; "
                "drop them from the list or switch read-only mode off."
            )
        chosen = [tool for tool in chosen if tool.name not in writing]
    return chosen


def build_server(settings: Settings | None = None, service: LatentService | DeferredService | None = None) -> MCPServer:
    """Build the MCP server; pass a ready service (e.g. with a fake embedder) to test without the model."""
    settings = settings or (service.settings if service else Settings())
    if service is None:
        from mcp_latent.service.api import LatentService

        service = LatentService(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[LatentService | DeferredService]:
        # Load the model in the background so `initialize`/`tools/list` answer at once; calls wait for it.
        # HTTP enters this once per session, so it only starts; `serve` closes the service at exit.
        service.start_in_background()
        yield service

    # None = derive the output schema from the return annotation; False = plain text tools, no schema.
    structured = None if settings.structured_content else False
    tools: list[LatentTool] = []

    def tool(annotations: ToolAnnotations) -> Callable[[T], T]:
        """Register a tool; its docstring, on one line, is the description the calling model reads.

        Every published byte rides in every agent's context (budgets in tests/test_tool_surface.py): one short
        docstring, descriptions only for arguments whose name does not say it all, plain types."""

        def register(fn: T) -> T:
            built = LatentTool.from_function(
                fn,  # type: ignore[arg-type]
                description=" ".join((fn.__doc__ or "").split()),
                annotations=annotations,
                structured_output=structured,
            )
            built.parameters = compact_input_schema(built.parameters)
            if built.fn_metadata.output_schema is not None:  # read live by the SDK (also for list_tools)
                built.fn_metadata.output_schema = compact_output_schema(built.fn_metadata.output_schema)
                built.__dict__.pop("output_schema", None)  # a cached_property over it
            tools.append(built)
            return fn

        return register

    async def call(fn: Callable[[], dict[str, Any]]) -> CallToolResult:
        """Run engine work in a worker thread and turn engine errors into tool errors the model can act on.

        Every call runs off the event loop, reads by handle included: they reach the store (a PostgreSQL round
        trip, or SQLite's index under its lock), which may take seconds, and one such wait on the loop would stall
        every session of an HTTP server. Only the SDK's own parsing and `compact_result` run on the loop."""
        CALLS.running += 1  # the verdict prefetch worker waits while calls run (on the loop only: no lock)
        try:
            data = await anyio.to_thread.run_sync(fn)
            return compact_result(data, settings.structured_content)
        except LatentError as exc:
            raise ToolError(str(exc)) from exc
        except Exception as exc:  # a bug, not bad input: log it with its traceback, answer as a tool error
            log.exception("tool call failed unexpectedly")
            raise ToolError(
                f"internal error ({type(exc).__name__}: {exc}); nothing was changed by this call unless it said so, "
                "the server is still up: retry, and report it if it repeats."
            ) from exc
        finally:
            CALLS.running -= 1

    @tool(WRITES)
    async def handoff(
        text: Text,
        from_agent: Annotated[str | None, Field(description="Your agent name.")] = None,
        namespace: Namespace | None = None,
        parent: Annotated[str | None, Field(description="Handle this text revises.")] = None,
        evaluate: Annotated[list[str] | None, Field(description="Profiles to judge it with now.")] = None,
        meta: Annotated[dict[str, Any] | None, Field(description="Small JSON object kept with it.")] = None,
        detail: Detail = False,
    ) -> Annotated[CallToolResult, HandoffOut]:
        """Embed a text once and store it behind a short handle; pass the handle, not the text, to other agents."""
        return await call(lambda: service.handoff(text, from_agent, namespace, parent, evaluate, meta, detail))

    @tool(READ_ONLY)
    async def evaluate(
        handle: Handle | None = None,
        text: str | None = None,
        profiles: Annotated[list[str] | None, Field(description="Default: all (see `profiles`).")] = None,
        namespace: Namespace | None = None,
        detail: Detail = False,
        compare_parent: Annotated[bool, Field(description="Also show how verdicts moved from the parent.")] = False,
    ) -> Annotated[CallToolResult, EvaluateOut]:
        """Judge a handle (preferred) or a text with evaluator profiles. Verdicts are {label, p}; "unsure": true
        means decide it yourself."""
        return await call(lambda: service.evaluate(handle, text, profiles, namespace, detail, compare_parent))

    @tool(WRITES)
    async def embed(
        texts: Annotated[list[str], Field(description="Each becomes a stored handoff.")],
        namespace: Namespace | None = None,
        return_vectors: Annotated[bool, Field(description="Also return the vectors (large).")] = False,
    ) -> Annotated[CallToolResult, EmbedOut]:
        """Embed a batch of texts; one handle per text."""
        return await call(lambda: service.embed(texts, namespace, return_vectors))

    @tool(READ_ONLY)
    async def similar(
        handle: Handle | None = None,
        text: str | None = None,
        k: int = 5,
        namespace: Namespace | None = None,
        from_agent: Agent | None = None,
        meta: MetaMatch = None,
        since: Since = None,
        until: Until | None = None,
    ) -> Annotated[CallToolResult, SimilarOut]:
        """Nearest earlier handoffs, with cosine similarity and a text preview."""
        return await call(lambda: service.similar(handle, text, k, namespace, from_agent, meta, since, until))

    @tool(READ_ONLY)
    async def recent(
        limit: int = 10,
        namespace: Namespace | None = None,
        from_agent: Agent | None = None,
        meta: MetaMatch = None,
        since: Since = None,
        until: Until | None = None,
    ) -> Annotated[CallToolResult, RecentOut]:
        """Newest handoffs first: handle, sender, time, text preview."""
        return await call(lambda: service.recent(limit, namespace, from_agent, meta, since, until))

    @tool(DESTROYS)
    async def forget(
        handle: Handle | None = None, from_agent: Agent | None = None, namespace: Namespace | None = None
    ) -> Annotated[CallToolResult, ForgetOut]:
        """Delete one handoff, or every handoff of `from_agent` in the namespace, for every server (irreversible)."""
        return await call(lambda: service.forget(handle, from_agent, namespace))

    @tool(READ_ONLY)
    async def get(handle: Handle, namespace: Namespace | None = None) -> Annotated[CallToolResult, GetOut]:
        """A handoff's stored text and sender: read it to reason about an unsure verdict."""
        return await call(lambda: service.get(handle, namespace))

    @tool(READ_ONLY)
    async def profiles() -> Annotated[CallToolResult, ProfilesOut]:
        """List the evaluator profiles: labels, readiness, and cross-validated coverage and answered accuracy."""

        def listed() -> dict[str, Any]:
            out: dict[str, Any] = {
                "profiles": [
                    {k: p[k] for k in PROFILE_FIELDS + TRUST_FIELDS if k in p} for p in service.list_profiles()
                ]
            }
            skipped = service.skipped_profiles()
            if skipped:  # invalid files: named with why, so a user sees why their profile is missing
                out["skipped"] = skipped
            return out

        return await call(listed)

    @tool(WRITES)
    async def define_profile(
        name: str,
        description: str,
        labels: Annotated[
            list[dict[str, Any]], Field(description='[{"name","description"?,"value"? (ordinal),"examples"?:[]}]')
        ],
        off_topic: Annotated[bool, Field(description="Abstain on small talk and questions.")] = True,
    ) -> Annotated[CallToolResult, DefineOut]:
        """Create or replace your own evaluator profile. It answers unsure until taught enough: `teach` your
        decisions."""
        return await call(lambda: service.define_profile(name, description, labels, off_topic))

    @tool(DESTROYS)
    async def delete_profile(name: str) -> Annotated[CallToolResult, DeleteProfileOut]:
        """Delete a profile you defined, with its taught exemplars."""
        return await call(lambda: service.delete_profile(name))

    @tool(WRITES)
    async def teach(
        profile: str | None = None,
        label: str | None = None,
        handle: Handle | None = None,
        text: str | None = None,
        namespace: Namespace | None = None,
        labels: Annotated[dict[str, str] | None, Field(description="{profile: label}, for several at once.")] = None,
    ) -> Annotated[CallToolResult, TeachOut]:
        """Record your decision on an unsure verdict (or a spot check of an answered one): the next similar case
        is answered by vector math."""
        return await call(lambda: service.teach(profile, label, handle, text, namespace, labels))

    @tool(READ_ONLY)
    async def namespaces() -> Annotated[CallToolResult, NamespacesOut]:
        """Namespaces with handoff counts and age range (unix seconds)."""
        return await call(lambda: service.namespaces())

    @tool(DESTROYS)
    async def drop_namespace(namespace: str) -> Annotated[CallToolResult, DropOut]:
        """Delete a namespace and all its handoffs (irreversible)."""
        return await call(lambda: service.drop_namespace(namespace))

    server = LatentServer(
        "mcp-latent",
        version=__version__,
        instructions=READ_ONLY_INSTRUCTIONS if settings.read_only else INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=selected_tools(settings, tools),
        on_call=service.stats.record_call,  # a deque append (DeferredService has its stats before it is built)
        default_namespace=settings.default_namespace,
    )

    server.service = service  # for the HTTP app's `/metrics` and usage page (server/ops_routes.py)

    @server.resource("latent://profiles", name="profiles", mime_type="application/json")
    async def profiles_resource() -> str:
        """All evaluator profiles with labels, exemplar counts and fitted thresholds."""
        return minified(await anyio.to_thread.run_sync(lambda: service.list_profiles()))

    @server.resource("latent://stats", name="stats", mime_type="application/json")
    async def stats_resource() -> str:
        """Per profile: verdicts answered and escalated, exemplars taught, agreement measured by spot checks."""
        return minified(await anyio.to_thread.run_sync(lambda: service.profile_stats()))

    @server.resource("latent://status", name="status", mime_type="application/json")
    async def status_resource() -> str:
        """Model, readiness, handoff count and profiles."""
        return minified(await anyio.to_thread.run_sync(lambda: service.status()))

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> Response:
        """503 until calls are served (`starting`, with the startup phase) or after a failed startup (`error`), so
        process managers and load balancers wait for a server that can answer; then 200: `fitting` while some
        profiles still fit in the background (each with its estimate; a call naming one says when to retry), `ok`
        once every profile is ready or has failed (its error is listed)."""
        status = await anyio.to_thread.run_sync(lambda: service.status())  # counts handoffs: not on the event loop
        if not status["ready"]:
            state = "error" if status["startup_error"] else "starting"
        else:
            profiles = status.get("profiles") or {}
            fitting = any(not p.get("ready") and not p.get("error") for p in profiles.values())
            state = "fitting" if fitting else "ok"
        return JSONResponse({"status": state, **status}, status_code=503 if state in ("starting", "error") else 200)

    return server
