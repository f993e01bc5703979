"""The MCP layer: tools, resources and transports over a LatentService. The only module that imports `mcp`."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import __version__
from .errors import InvalidInput, LatentError
from .service import LatentService
from .settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

INSTRUCTIONS = (
    "Latent handoffs: call `handoff` once with a proposal (optionally `evaluate`=[profiles]) to get a short handle "
    "and verdicts; pass the handle, not the text, to other agents; they call `evaluate` with the handle. "
    'A verdict with "unsure": true means vector math could not decide: reason it out yourself (detail=true '
    "gives the evidence). `profiles` lists the evaluators."
)

# --- output models: they become each tool's outputSchema -------------------------------------------------------


class VerdictOut(BaseModel):
    """One profile's verdict. `label` is null when unsure; `p` is the calibrated probability the label is right."""

    model_config = ConfigDict(extra="allow")
    label: str | None
    p: float
    score: float | None = None
    unsure: bool | None = None


class HandoffOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    handle: str
    verdicts: dict[str, VerdictOut] | None = None


class EvaluateOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    verdicts: dict[str, VerdictOut]


class EmbedOut(BaseModel):
    handles: list[str]
    dim: int | None = None
    vectors: list[list[float]] | None = None


class SimilarHit(BaseModel):
    handle: str
    similarity: float
    from_agent: str | None = None
    text: str | None = None


class SimilarOut(BaseModel):
    similar: list[SimilarHit]


class ProfilesOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    profiles: list[dict[str, Any]]


class NamespacesOut(BaseModel):
    namespaces: list[dict[str, Any]]


class DropOut(BaseModel):
    namespace: str
    dropped: int


class TeachOut(BaseModel):
    profile: str
    label: str
    exemplars: int


# --- argument types (their descriptions are what the calling model reads) -------------------------------------

Text = Annotated[str, Field(description="The proposal or message, as plain text.")]
Handle = Annotated[str, Field(description="A handle from `handoff` or `embed`, e.g. 'h_k3v9x2m4qp'.")]
Namespace = Annotated[str, Field(description="Shared-state namespace; handles are visible only inside their own.")]
Detail = Annotated[bool, Field(description="Add evidence: top labels with p, nearest exemplars, similarity.")]

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
DESTROYS = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)


def minified(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def compact_result(data: dict[str, Any], structured: bool = True) -> CallToolResult:
    """The result as minified JSON text, plus the same data as structured content unless switched off."""
    return CallToolResult(
        content=[TextContent(type="text", text=minified(data))], structured_content=data if structured else None
    )


def build_server(settings: Settings | None = None, service: LatentService | None = None) -> MCPServer:
    """Build the MCP server; pass a ready service (e.g. with a fake embedder) to test without the model."""
    settings = settings or (service.settings if service else Settings())
    service = service or LatentService(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[LatentService]:
        # Load the model in the background so `initialize`/`tools/list` answer at once; calls wait for it.
        # HTTP enters this once per session, so it only starts; `serve` closes the service at exit.
        service.start_in_background()
        yield service

    server: MCPServer = MCPServer(
        "mcp-latent", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan, log_level=settings.log_level
    )

    # None = derive the output schema from the return annotation; False = plain text tools, no schema.
    structured = None if settings.structured_content else False

    def tool(annotations: ToolAnnotations, title: str) -> Callable[[T], T]:
        """Register a tool; its docstring, on one line, is the description the calling model reads."""

        def register(fn: T) -> T:
            description = " ".join((fn.__doc__ or "").split())
            server.add_tool(
                fn, title=title, description=description, annotations=annotations, structured_output=structured
            )
            return fn

        return register

    async def call(fn: Callable[[], dict[str, Any]], quick: bool = False) -> CallToolResult:
        """Run engine work and turn engine errors into tool errors the model can act on.

        Work that may embed, fit or wait for the model runs in a worker thread so the event loop stays free;
        `quick` reads (a stored vector or cached text against fitted profiles: tens of microseconds) run
        inline, because the thread hop would cost more than the work."""
        try:
            data = fn() if quick else await anyio.to_thread.run_sync(fn)
            return compact_result(data, settings.structured_content)
        except LatentError as exc:
            raise ToolError(str(exc)) from exc

    @tool(WRITES, "Hand off a text (embed once, optionally judge)")
    async def handoff(
        text: Text,
        from_agent: Annotated[str | None, Field(description="Name of the agent handing off.")] = None,
        namespace: Namespace | None = None,
        parent: Annotated[str | None, Field(description="Handle this text revises (builds a chain).")] = None,
        evaluate: Annotated[
            list[str] | None, Field(description="Profiles to judge the text with in this same call.")
        ] = None,
        meta: Annotated[dict[str, Any] | None, Field(description="Small JSON object stored with the handoff.")] = None,
        detail: Detail = False,
    ) -> Annotated[CallToolResult, HandoffOut]:
        """Embed a text once and store it behind a short handle that other agents can pass around instead of
        the text. Name profiles in `evaluate` to get their verdicts in the same call."""
        return await call(lambda: service.handoff(text, from_agent, namespace, parent, evaluate, meta, detail))

    @tool(READ_ONLY, "Judge a handle or text with evaluator profiles")
    async def evaluate(
        handle: Handle | None = None,
        text: Annotated[str | None, Field(description="Text to judge when you have no handle.")] = None,
        profiles: Annotated[
            list[str] | None, Field(description="Profiles to apply (default: all); see the `profiles` tool.")
        ] = None,
        namespace: Namespace | None = None,
        detail: Detail = False,
        compare_parent: Annotated[
            bool, Field(description="Also report how each verdict moved against the handle's parent handoff.")
        ] = False,
    ) -> Annotated[CallToolResult, EvaluateOut]:
        """Score a handoff (by handle, preferred) or a text against evaluator profiles such as risk, roi and
        category. Returns {"verdicts": {profile: {"label", "p"}}}; "unsure": true means escalate to reasoning."""
        return await call(
            lambda: service.evaluate(handle, text, profiles, namespace, detail, compare_parent),
            quick=service.is_quick(text, profiles),
        )

    @tool(WRITES, "Embed texts into handles")
    async def embed(
        texts: Annotated[list[str], Field(description="Texts to embed; each becomes a stored handoff.")],
        namespace: Namespace | None = None,
        return_vectors: Annotated[bool, Field(description="Also return the float vectors (large).")] = False,
    ) -> Annotated[CallToolResult, EmbedOut]:
        """Embed a batch of texts and return one handle per text (vectors only when asked: they are large)."""
        return await call(lambda: service.embed(texts, namespace, return_vectors))

    @tool(READ_ONLY, "Find similar earlier handoffs")
    async def similar(
        handle: Handle | None = None,
        text: Annotated[str | None, Field(description="Text to search with when you have no handle.")] = None,
        k: Annotated[int, Field(description="How many neighbours to return.")] = 5,
        namespace: Namespace | None = None,
    ) -> Annotated[CallToolResult, SimilarOut]:
        """Nearest earlier handoffs in the namespace, with cosine similarity in [-1, 1] and a text preview."""
        return await call(lambda: service.similar(handle, text, k, namespace), quick=service.is_quick(text, []))

    @tool(READ_ONLY, "List evaluator profiles")
    async def profiles() -> Annotated[CallToolResult, ProfilesOut]:
        """The evaluator profiles this server can apply, with their labels."""
        return await call(
            lambda: {
                "profiles": [{k: p[k] for k in ("name", "description", "labels")} for p in service.list_profiles()]
            }
        )

    @tool(WRITES, "Teach a profile one labeled example")
    async def teach(
        profile: Annotated[str, Field(description="Profile to teach, e.g. 'risk'.")],
        label: Annotated[str, Field(description="The correct label for this example.")],
        handle: Handle | None = None,
        text: Annotated[str | None, Field(description="Example text when you have no handle.")] = None,
        namespace: Namespace | None = None,
    ) -> Annotated[CallToolResult, TeachOut]:
        """Add a labeled exemplar to a profile (persisted); the next verdict takes it into account. Use it after
        resolving an unsure verdict, so the next similar case is decided by vector math."""
        return await call(lambda: service.teach(profile, label, handle, text, namespace))

    @tool(READ_ONLY, "List namespaces")
    async def namespaces() -> Annotated[CallToolResult, NamespacesOut]:
        """Namespaces of the shared latent state with their handoff counts and age range (unix seconds)."""
        return await call(service.namespaces)

    @tool(DESTROYS, "Drop a namespace")
    async def drop_namespace(
        namespace: Annotated[str, Field(description="The namespace to delete, with all its handoffs.")],
    ) -> Annotated[CallToolResult, DropOut]:
        """Delete every handoff of a namespace (irreversible). Export it first with `mcp-latent namespaces export`."""
        return await call(lambda: service.drop_namespace(namespace))

    @server.resource("latent://profiles", name="profiles", mime_type="application/json")
    async def profiles_resource() -> str:
        """All evaluator profiles with labels, exemplar counts and fitted thresholds."""
        return minified(await anyio.to_thread.run_sync(service.list_profiles))

    @server.resource("latent://status", name="status", mime_type="application/json")
    async def status_resource() -> str:
        """Model, readiness, handoff count and profiles."""
        return minified(await anyio.to_thread.run_sync(service.status))

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> Response:
        status = service.status()
        return JSONResponse({"status": "ok" if status["ready"] else "starting", **status})

    return server


# --- transports ------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerTokenMiddleware:
    """Refuse MCP requests without `Authorization: Bearer <token>`; `/healthz` stays open for process managers."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            supplied = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(supplied, self.expected):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token; send 'Authorization: Bearer <token>'"}, status_code=401
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, settings: Settings) -> Any:
    """The streamable HTTP app at /mcp, with DNS-rebinding checks and the optional bearer token."""
    if not is_loopback(settings.host) and not settings.token:
        raise InvalidInput(
            f"refusing to bind {settings.host} without a token: set --token or MCP_LATENT_TOKEN, or bind 127.0.0.1."
        )
    if is_loopback(settings.host):
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    else:  # a token is required here; Host values of a public bind are not known in advance
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(transport_security=security, host=settings.host)
    return BearerTokenMiddleware(app, settings.token) if settings.token else app


def serve(settings: Settings, transport: Literal["stdio", "http"] | None = None) -> None:
    """Run the server until the client goes away (stdio) or the process is stopped (http)."""
    service = LatentService(settings)
    server = build_server(settings, service)
    try:
        if (transport or settings.transport) == "stdio":
            server.run("stdio")
            return
        import uvicorn

        app = http_app(server, settings)
        service.start_in_background()  # warm up before the first client connects
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    finally:
        service.close()
