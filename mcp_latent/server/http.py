"""The HTTP transport's edges: the Starlette app at `/mcp` (with `/metrics` and the usage page at `/`), bearer-token
auth, loopback rules, the socket."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse

from mcp_latent.errors import InvalidInput
from mcp_latent.server.auth import PRINCIPAL_KEY, TokenRegistry
from mcp_latent.server.ops_routes import OPS_PATHS, add_ops_routes
from mcp_latent.settings import Settings, is_loopback

log = logging.getLogger(__name__)


# A JSON-RPC error code in the implementation-defined server range (-32000 to -32099): the caller is not authorized.
UNAUTHORIZED = -32001


class BearerTokenMiddleware:
    """Refuse MCP requests without `Authorization: Bearer <token>` of a known token (the single token, or one of
    the tokens file's: server/auth.py); `/healthz` stays open for process managers, and `open_paths` (the usage
    page and `/metrics` when `open_ops_pages` is set) too. The caller it authenticated is left in the request's
    state for the tools' scope checks (`auth.principal_of`)."""

    def __init__(
        self,
        app: Any,
        token: str | None = None,
        registry: TokenRegistry | None = None,
        open_paths: tuple[str, ...] = (),
    ):
        self.app = app
        self.registry = registry or TokenRegistry(token, None)
        self.open_paths = ("/healthz", *open_paths)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            supplied = dict(scope.get("headers") or []).get(b"authorization", b"")
            principal = self.registry.authenticate(supplied)  # a hash and a few compare_digest: microseconds
            if principal is not None:
                scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
            else:
                # RFC 6750: say which scheme is expected, and whether the token sent was wrong.
                challenge = 'Bearer error="invalid_token"' if supplied else "Bearer"
                # The body is a JSON-RPC error: MCP clients surface that one (the Python SDK reads an error body at a
                # non-2xx status), where a plain {"error": ...} body reached the caller as "Server returned an error
                # response". curl users read the same sentence under error.message.
                what = "wrong bearer token" if supplied else "missing bearer token"
                message = f"{what}: send the header 'Authorization: Bearer <token>' (the server's MCP_LATENT_TOKEN)."
                response = JSONResponse(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": UNAUTHORIZED, "message": message}},
                    status_code=401,
                    headers={"WWW-Authenticate": challenge},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(
    server: MCPServer, settings: Settings, token: str | None = None, registry: TokenRegistry | None = None
) -> Any:
    """The streamable HTTP app at /mcp, with DNS-rebinding checks and the optional bearer tokens (the single
    `token`, or `registry`: it and the tokens file's)."""
    registry = registry or (TokenRegistry(token, None) if token else None)
    if not is_loopback(settings.host) and not (registry and registry.enabled):
        raise InvalidInput(
            f"refusing to bind {settings.host} without a token: set MCP_LATENT_TOKEN, --token-file or "
            "--tokens-file, or bind 127.0.0.1."
        )
    if is_loopback(settings.host):
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    else:  # a token is required here; Host values of a public bind are not known in advance
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    service = getattr(server, "service", None)
    if service is not None:  # every server build_server made: `/metrics` and the usage page beside `/mcp`
        add_ops_routes(server, service, settings)
    app = server.streamable_http_app(transport_security=security, host=settings.host)
    open_paths = OPS_PATHS if settings.open_ops_pages else ()
    return (
        BearerTokenMiddleware(app, registry=registry, open_paths=open_paths) if registry and registry.enabled else app
    )


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
