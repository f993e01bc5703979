"""The operator's HTTP routes beside `/mcp`: `/metrics` (Prometheus) and the usage page at `/`.

Both are built in a worker thread (they read SQLite, the store and draw plots), never on the event loop. They sit
behind the same bearer token as `/mcp` unless `open_ops_pages` is set (then `BearerTokenMiddleware` lets them by)."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from mcp_latent.settings import Settings, is_loopback

OPS_PATHS = ("/", "/metrics")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PAGE_REFRESH_SECONDS = 30


def add_ops_routes(server: MCPServer, service: Any, settings: Settings) -> None:
    """Register `/metrics` and `/` on the server (before its HTTP app is built)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from mcp_latent.ops.metrics import metrics_registry, render

    registry = metrics_registry(service)  # this server's own: never the process-wide default registry
    loopback = is_loopback(settings.host)

    @server.custom_route("/metrics", methods=["GET"])
    async def metrics(request: Request) -> Response:
        if refused := foreign_host(request, loopback):
            return refused
        body = await anyio.to_thread.run_sync(lambda: render(registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @server.custom_route("/", methods=["GET"])
    async def page(request: Request) -> Response:
        if refused := foreign_host(request, loopback):
            return refused
        return HTMLResponse(await anyio.to_thread.run_sync(lambda: usage_page(service, settings)))


def foreign_host(request: Request, loopback: bool) -> Response | None:
    """On a loopback bind, refuse a Host header that is not loopback: a web page the user visits could otherwise
    read these pages through DNS rebinding (the SDK guards `/mcp` the same way)."""
    host = request.url.hostname or ""  # from the Host header, port and IPv6 brackets removed
    if not loopback or host in LOOPBACK_NAMES:
        return None
    return PlainTextResponse(f"Host {host!r} is not this loopback server; open it as http://127.0.0.1:<port>/", 421)


def usage_page(service: Any, settings: Settings) -> str:
    from mcp_latent.ops.dashboard import gather
    from mcp_latent.ops.page import render

    status = service.status()
    names = sorted(status.get("profiles") or {})
    board = gather(service.stats, settings.llm_tokens_per_judgement, names, server=status)
    return render(board, refresh_seconds=PAGE_REFRESH_SECONDS)
