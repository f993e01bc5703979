"""A real mcp-latent server (stdio or HTTP) whose store answers every call `delay` seconds late, for
tests/test_event_loop.py: calls that need the store wait, and nothing else may wait with them.

    python tests/slow_store_server.py DATA_DIR stdio|http [PORT] [DELAY]"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FRUIT, TOOLS, HashingEmbedder, write_profile  # noqa: E402

from mcp_latent.service.api import LatentService  # noqa: E402
from mcp_latent.settings import Settings  # noqa: E402


class SlowStore:
    """The real store, each method call `delay` seconds late (a PostgreSQL pool wait, an index rebuild)."""

    def __init__(self, inner: Any, delay: float):
        self._inner, self._delay = inner, delay

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._delay)
            return attr(*args, **kwargs)

        return slow


def main() -> None:
    data_dir, transport = Path(sys.argv[1]), sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    settings = Settings(data_dir=data_dir, builtin_profiles=False, port=port or 8765)
    write_profile(settings.user_profiles_dir, "kind", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0")
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    service.store = SlowStore(service.store, delay)
    from mcp_latent.server.tools import build_server

    if transport == "stdio":
        build_server(settings, service).run("stdio")
        return
    import uvicorn

    from mcp_latent.server.http import http_app

    print("listening", file=sys.stderr, flush=True)
    uvicorn.run(http_app(build_server(settings, service), settings), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
