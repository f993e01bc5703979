"""A service that is built once the server answers: `tools/list` must not wait for numpy, the model or a fit."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from mcp_latent.errors import ModelError
from mcp_latent.service.usage_stats import ProfileStats
from mcp_latent.settings import Settings

if TYPE_CHECKING:  # imported at run time only where a service is built: numpy and the engine come with it
    from mcp_latent.service.api import LatentService

log = logging.getLogger(__name__)


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
    threads, so that wait never blocks the event loop; what runs on the loop (the lifespan's `start_in_background`) is
    defined here and never waits. Ownership: the startup thread writes
    `_service` and `_error` once, before setting `_built`; any thread reads them after `_built` is set."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # Usage counts are recorded from the event loop from the first call on, so they exist before the service.
        self.stats = ProfileStats.for_settings(settings)
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
            from mcp_latent.service.api import LatentService

            one_blas_thread()  # numpy's BLAS is loaded now (serve's own call came before it was)
            service = LatentService(self.settings)
            service.stats = self.stats  # the counts recorded while it was built (not started yet: no thread to stop)
            self._service = service
        except Exception as exc:  # keep the server up to report it on every call, as a failed start does
            self._error = exc
            log.exception("startup failed")
        finally:
            self._built.set()
        if self._service is not None:
            self._service.start()  # loads the model, the store and the profiles; then fits what is not cached

    def close(self) -> None:
        if self._started:
            self._built.wait(600)
        if self._service is not None:
            self._service.close()

    def __getattr__(self, name: str) -> Any:
        """Everything else is the built service's (waits until it is built; called from worker threads)."""
        if name.startswith("_"):
            raise AttributeError(name)
        wait = self.settings.profile_wait_seconds  # the bound on every call's wait, as in `wait_ready`
        if not self._built.wait(wait):
            raise ModelError(f"the server is still starting after {wait:.0f} s; nothing was done, retry shortly.")
        if self._service is None:
            raise ModelError(f"startup failed: {self._error!r}")
        return getattr(self._service, name)
