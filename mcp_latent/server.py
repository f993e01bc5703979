"""The MCP layer: tools, resources and transports over a LatentService. The only module that imports `mcp`."""

from __future__ import annotations

import difflib
import errno
import hmac
import ipaddress
import json
import logging
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import __version__
from .errors import InvalidInput, LatentError, ModelError
from .settings import Settings

if TYPE_CHECKING:  # imported at run time only where a service is built: numpy and the engine come with it
    from .service import LatentService

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


class GetOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    handle: str
    text: str | None = None


class ProfilesOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    profiles: list[dict[str, Any]]


class NamespacesOut(BaseModel):
    namespaces: list[dict[str, Any]]


class DropOut(BaseModel):
    namespace: str
    dropped: int


class TaughtOut(BaseModel):
    """What a teach did to one profile: `agreed` when the profile had answered (a spot check of that answer)."""

    model_config = ConfigDict(extra="allow")
    label: str
    exemplars: int
    added: bool | None = None
    agreed: bool | None = None


class TeachOut(BaseModel):
    taught: dict[str, TaughtOut]


# --- argument types (their descriptions are what the calling model reads: short, no repeats) --------------------

# Self-explanatory names (handle, text, namespace, k) carry no description; INSTRUCTIONS explain the concepts once.
Text = Annotated[str, Field(description="The proposal or message.")]
Handle = str
Namespace = str
Detail = Annotated[bool, Field(description="Add evidence (top labels, nearest exemplars, deciding words).")]

# Only the hints clients act on (permission prompts), where they differ from the spec's defaults (readOnly false,
# destructive true, idempotent false). openWorldHint is left out: 22 bytes per tool to say "no web access".
READ_ONLY = ToolAnnotations(readOnlyHint=True)
WRITES = ToolAnnotations(destructiveHint=False)
DESTROYS = ToolAnnotations(idempotentHint=True)


def minified(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def compact_result(data: dict[str, Any], structured: bool = True) -> CallToolResult:
    """The result as minified JSON text, plus the same data as structured content unless switched off."""
    return CallToolResult(
        content=[TextContent(type="text", text=minified(data))], structured_content=data if structured else None
    )


# --- the published tool manifest: every byte is carried in every agent's context --------------------------------


def compact_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An argument schema without what the calling model doesn't need: titles, the `null` branch of optional
    arguments (leaving one out is how to send none), defaults of null or false, `additionalProperties: true`."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {
            key: value
            for key, value in prop.items()
            if key != "title" and (key, value) != ("additionalProperties", True)
        }
        branches = [branch for branch in prop.pop("anyOf", []) if branch != {"type": "null"}]
        if len(branches) == 1:
            prop = {**branches[0], **prop}
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default", True) in (None, False):
            del prop["default"]
        properties[name] = prop
    compact: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        compact["required"] = schema["required"]
    return compact


def compact_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema cut to its first level: each field's JSON type and which fields are always there.

    Still true (clients validate structured content against it), and the shape below that level is in the
    tool's description, where the calling model reads it anyway."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        types = [branch.get("type") for branch in prop.get("anyOf", [prop])]
        if not all(isinstance(kind, str) for kind in types):
            types = []  # a $ref or a nested union: any JSON value
        properties[name] = {"type": types[0] if len(types) == 1 else types} if types else {}
    compact: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        compact["required"] = schema["required"]
    return compact


# --- argument errors: one sentence that says what to send ----------------------------------------------------------

TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
}


def describe_type(schema: dict[str, Any]) -> str:
    """`{"type": "array", "items": {"type": "string"}}` -> 'a list of strings'."""
    if "anyOf" in schema:
        return " or ".join(describe_type(branch) for branch in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type") == "string":
        return "a list of strings"
    return TYPE_WORDS.get(kind, "a JSON value") if isinstance(kind, str) else "a JSON value"


def argument_names(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    names = [f"`{name}`" + ("" if name in required else "?") for name in schema.get("properties", {})]
    return ", ".join(names) or "none"


def unknown_arguments_error(tool: str, unknown: list[str], schema: dict[str, Any]) -> str:
    valid = list(schema.get("properties", {}))
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hints.append(f"`{name}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    return (
        f"{tool} takes no argument {', '.join(hints)}; send only {argument_names(schema)} (? = optional)."
        if valid
        else f"{tool} takes no arguments; send {{}}."
    )


def invalid_arguments_error(tool: str, error: ValidationError, schema: dict[str, Any]) -> str:
    """The pydantic error as one sentence per argument: which argument, what it must be (never pydantic's text)."""
    properties = schema.get("properties", {})
    problems: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        if name in problems:
            continue
        expected = describe_type(properties.get(name, {}))
        if item["type"] == "missing":
            problems[name] = f"`{name}` is required ({expected})"
        elif len(item["loc"]) > 1:  # inside a list or object: name the element that is wrong
            where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"][1:])
            problems[name] = f"`{name}` must be {expected}, but `{where}` is {type_name(item['input'])}"
        else:
            problems[name] = f"`{name}` must be {expected}, not {type_name(item['input'])}"
    return f"{tool}: {'; '.join(problems.values())}."


def type_name(value: Any) -> str:
    for kind, words in (
        (bool, "true/false"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "an object"),
    ):
        if isinstance(value, kind):
            return words
    return "null" if value is None else type(value).__name__


class LatentTool(Tool):
    """A tool that refuses unknown arguments and reports bad ones in one sentence.

    MCPServer validates arguments inside `Tool.run` (the pydantic model of the function's signature) and would
    quietly drop names it does not know and return pydantic's multi-line text with links. This is the one place
    where arguments meet the schema, so both checks live here. Every error reads `<tool>: <what to do>` (the SDK's
    own prefix, "Error executing tool <tool>: ", is kept only for crashes, which carry no other text)."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        unknown = [name for name in arguments if name not in self.parameters.get("properties", {})]
        if unknown:
            raise ToolError(unknown_arguments_error(self.name, unknown, self.parameters))
        try:
            return await super().run(arguments, context, convert_result)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):  # the arguments failed the schema; nothing ran
                raise ToolError(invalid_arguments_error(self.name, cause, self.parameters)) from cause
            if isinstance(cause, ToolError):  # an engine error: one prefix style for every error the model reads
                raise ToolError(f"{self.name}: {cause}") from cause
            raise


class LatentServer(MCPServer):
    """MCPServer whose unknown-tool error lists the tools this server offers (read-only mode and the allow-list
    hide some)."""

    def __init__(self, *args: Any, tools: list[LatentTool], **kwargs: Any):
        super().__init__(*args, tools=tools, **kwargs)  # type: ignore[arg-type]
        self.offered = tuple(tool.name for tool in tools)  # fixed at construction: tools are never added later

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if name not in self.offered:
            raise ToolError(f"no tool {name!r} on this server; tools: {', '.join(self.offered)}.")
        return await super().call_tool(name, arguments, context)


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
        from .service import LatentService

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
        except Exception as exc:  # a bug, not bad input: log it with its traceback, answer as a tool error
            log.exception("tool call failed unexpectedly")
            raise ToolError(
                f"internal error ({type(exc).__name__}: {exc}); nothing was changed by this call unless it said so, "
                "the server is still up: retry, and report it if it repeats."
            ) from exc

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
        return await call(
            lambda: service.evaluate(handle, text, profiles, namespace, detail, compare_parent),
            quick=service.is_quick(text, profiles),
        )

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
    ) -> Annotated[CallToolResult, SimilarOut]:
        """Nearest earlier handoffs, with cosine similarity and a text preview."""
        return await call(lambda: service.similar(handle, text, k, namespace), quick=service.is_quick(text, []))

    @tool(READ_ONLY)
    async def get(handle: Handle, namespace: Namespace | None = None) -> Annotated[CallToolResult, GetOut]:
        """A handoff's stored text and sender: read it to reason about an unsure verdict."""
        return await call(lambda: service.get(handle, namespace))

    @tool(READ_ONLY)
    async def profiles() -> Annotated[CallToolResult, ProfilesOut]:
        """List the evaluator profiles and their labels."""
        return await call(
            lambda: {
                "profiles": [{k: p[k] for k in ("name", "description", "labels")} for p in service.list_profiles()]
            }
        )

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
    )

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
                # RFC 6750: say which scheme is expected, and whether the token sent was wrong.
                challenge = 'Bearer error="invalid_token"' if supplied else "Bearer"
                response = JSONResponse(
                    {"error": "missing or wrong bearer token; send 'Authorization: Bearer <token>'"},
                    status_code=401,
                    headers={"WWW-Authenticate": challenge},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, settings: Settings, token: str | None = None) -> Any:
    """The streamable HTTP app at /mcp, with DNS-rebinding checks and the optional bearer token."""
    if not is_loopback(settings.host) and not token:
        raise InvalidInput(
            f"refusing to bind {settings.host} without a token: set MCP_LATENT_TOKEN or --token-file, "
            "or bind 127.0.0.1."
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
    return BearerTokenMiddleware(app, token) if token else app


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port now, so a port in use fails at once, before the model loads."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc}; check --host (MCP_LATENT_HOST).") from exc
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: rebind right after a restart
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise InvalidInput(
                f"port {port} on {host} is already in use (another mcp-latent?); stop that process or pick another "
                "port with --port (MCP_LATENT_PORT)."
            ) from exc
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
    return listener


def endpoint_url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/mcp"


def one_blas_thread() -> None:
    """Numpy's BLAS runs on one thread in a serving process, for its lifetime.

    A verdict's BLAS work is one (1 x 384) @ (384 x ~2,000) product per profile: 0.05 ms on one thread. With two
    OpenBLAS threads, each such call waits for a worker to be scheduled: 20 ms p50 measured on the busy 2-core box
    (load ~16), which made `handoff` with 3 verdicts cost twice its embedding. The server's own parallelism is its
    threads (ONNX Runtime's pool, background fits, which limit BLAS to one thread anyway)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class DeferredService:
    """A LatentService whose module is imported, and which is built and started, in the startup thread, so the MCP
    server answers `initialize` and `tools/list` before numpy and the engine are imported (about a tenth of the
    time to `tools/list` on a quiet machine, and the SDK import it would otherwise wait behind holds the GIL).

    Calls reach the built service through attribute access, which waits until it is built: the tools run in worker
    threads, so that wait never blocks the event loop; what runs on the loop (`is_quick` and the lifespan's
    `start_in_background`) is defined here and never waits. Ownership: the startup thread writes
    `_service` and `_error` once, before setting `_built`; any thread reads them after `_built` is set."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._service: LatentService | None = None
        self._error: Exception | None = None
        self._built = threading.Event()
        self._start_lock = threading.Lock()
        self._started = False

    def start_in_background(self) -> None:
        """Import, build and start the service in a background thread, once (later calls do nothing)."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._build_and_start, name="mcp-latent-startup", daemon=True).start()

    def _build_and_start(self) -> None:
        try:
            from .service import LatentService

            one_blas_thread()  # numpy's BLAS is loaded now (serve's own call came before it was)
            self._service = LatentService(self.settings)
        except Exception as exc:  # keep the server up to report it on every call, as a failed start does
            self._error = exc
            log.exception("startup failed")
        finally:
            self._built.set()
        if self._service is not None:
            self._service.start()  # loads the model, the store and the profiles; then fits what is not cached

    def is_quick(self, text: Any = None, profiles: Any = None) -> bool:
        """False until the service is built (runs on the event loop: never waits)."""
        return self._service is not None and self._service.is_quick(text, profiles)

    def close(self) -> None:
        if self._started:
            self._built.wait(600)
        if self._service is not None:
            self._service.close()

    def __getattr__(self, name: str) -> Any:
        """Everything else is the built service's (waits until it is built; called from worker threads)."""
        if name.startswith("_"):
            raise AttributeError(name)
        if not self._built.wait(600):
            raise ModelError("the server is still starting after 600 s; retry shortly.")
        if self._service is None:
            raise ModelError(f"startup failed: {self._error!r}")
        return getattr(self._service, name)


def serve(
    settings: Settings,
    transport: Literal["stdio", "http"] | None = None,
    service: LatentService | DeferredService | None = None,
) -> None:
    """Run the server until the client goes away (stdio) or the process is stopped (http). Over stdio the service is
    built once the server answers (`DeferredService`) unless one is given; HTTP builds its own after its checks."""
    if (transport or settings.transport) == "stdio":
        if service is None:
            service = DeferredService(settings)  # limits BLAS itself once numpy is imported
        else:
            one_blas_thread()
        try:
            build_server(settings, service).run("stdio")
        finally:
            service.close()
        return
    import uvicorn

    # Everything that can be refused is checked before the model starts loading: a token file, a public bind
    # without a token, a port in use.
    token = settings.bearer_token()
    from .service import LatentService

    one_blas_thread()  # numpy's BLAS came with the service module
    service = LatentService(settings)
    app = http_app(build_server(settings, service), settings, token)
    listener = bind_listener(settings.host, settings.port)
    try:
        service.start_in_background()  # warm up before the first client connects; /healthz says 503 until ready
        print(f"mcp-latent: listening on {endpoint_url(listener)}", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level=settings.log_level.lower())
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
        service.close()
