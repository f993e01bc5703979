"""The operator's HTTP routes beside `/mcp`: `/metrics` (Prometheus) and the usage page at `/`.

Both are built in a worker thread (they read SQLite, the store and draw plots), never on the event loop. They sit
behind the same bearer token as `/mcp` unless `open_ops_pages` is set (then `BearerTokenMiddleware` lets them by)."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mcp_latent.settings import Settings

OPS_PATHS = ("/", "/metrics")
PAGE_REFRESH_SECONDS = 30


def add_ops_routes(server: MCPServer, service: Any, settings: Settings) -> None:
    """Register `/metrics` and `/` on the server (before its HTTP app is built)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from mcp_latent.ops.metrics import metrics_registry, render

    registry = metrics_registry(service)  # this server's own: never the process-wide default registry

    @server.custom_route("/metrics", methods=["GET"])
    async def metrics(_: Request) -> Response:
        body = await anyio.to_thread.run_sync(lambda: render(registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @server.custom_route("/", methods=["GET"])
    async def page(_: Request) -> Response:
        return HTMLResponse(await anyio.to_thread.run_sync(lambda: usage_page(service, settings)))


def usage_page(service: Any, settings: Settings) -> str:
    from mcp_latent.ops.dashboard import gather
    from mcp_latent.ops.page import render

    status = service.status()
    names = sorted(status.get("profiles") or {})
    board = gather(service.stats, settings.llm_tokens_per_judgement, names, server=status)
    return render(board, refresh_seconds=PAGE_REFRESH_SECONDS)
