"""`serve`: check the settings, pick the transport (stdio or HTTP), build the server and run it."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Literal

from mcp_latent.server.auth import TokenRegistry
from mcp_latent.server.deferred import DeferredService, one_blas_thread
from mcp_latent.server.http import bind_listener, endpoint_url, http_app
from mcp_latent.server.tools import build_server
from mcp_latent.settings import Settings
from mcp_latent.store.data_dir import check_data_dir

if TYPE_CHECKING:  # imported at run time only where a service is built: numpy and the engine come with it
    from mcp_latent.service.api import LatentService

log = logging.getLogger(__name__)


def serve(
    settings: Settings,
    transport: Literal["stdio", "http"] | None = None,
    service: LatentService | DeferredService | None = None,
) -> None:
    """Run the server until the client goes away (stdio) or the process is stopped (http). Over stdio the service is
    built once the server answers (`DeferredService`) unless one is given; HTTP builds its own after its checks.

    An unusable data dir (unwritable, or a file in its place) refuses the start with the path and the fix: a server
    that started anyway answered every call with an error no retry could cure (and HTTP 503 forever)."""
    check_data_dir(settings.data_dir)
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
    tokens = TokenRegistry(token, settings.tokens_file, settings.tokens_poll_seconds)  # a bad tokens file refuses
    from mcp_latent.service.api import LatentService

    one_blas_thread()  # numpy's BLAS came with the service module
    service = LatentService(settings)
    app = http_app(build_server(settings, service), settings, token, tokens)
    listener = bind_listener(settings.host, settings.port)
    tokens.start()
    try:
        service.start_in_background()  # warm up before the first client connects; /healthz says 503 until ready
        print(f"mcp-latent: listening on {endpoint_url(listener)}", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level=settings.log_level.lower())
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        tokens.stop()
        listener.close()
        service.close()
