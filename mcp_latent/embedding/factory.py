"""Choosing and loading an embedding backend from the settings: ONNX Runtime when its export is there (made once
on demand), sentence-transformers otherwise; always behind the per-text cache."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_latent.embedding.base import Embedder
from mcp_latent.embedding.model_source import resolve_model_source, tries_onnx
from mcp_latent.embedding.torch_backend import SentenceTransformerEmbedder
from mcp_latent.errors import ModelError

if TYPE_CHECKING:
    from mcp_latent.settings import Settings

log = logging.getLogger(__name__)


def load_embedder(
    model: str,
    device: str,
    threads: int,
    batch_size: int,
    *,
    backend: str = "auto",
    int8: bool = False,
    cache_dir: Path | None = None,
    onnx_batch_size: int = 16,
    resident_weights: bool = False,
) -> Embedder:
    """Load the configured model: ONNX Runtime for the shipped model (unless backend="torch"), else torch.

    The ONNX graph is exported once into `cache_dir` (in a child process: torch never enters this one). When
    that is impossible the torch path serves instead, with a log line saying why."""
    source, model_id = resolve_model_source(model)
    if backend == "onnx" and not tries_onnx(model, "onnx", "cpu"):
        raise ModelError(
            f"the ONNX backend serves only the shipped default model, not {model!r}; "
            "set MCP_LATENT_EMBED_BACKEND=torch (or auto) for other models."
        )
    if tries_onnx(model, backend, device):
        from mcp_latent.embedding.onnx_export import ExportError, ensure_export
        from mcp_latent.settings import default_model_cache_dir

        try:
            directory = ensure_export(Path(source), model_id, cache_dir or default_model_cache_dir(), int8)
            from mcp_latent.embedding.onnx_backend import OnnxEmbedder

            embedder = OnnxEmbedder(
                directory, threads=threads, batch_size=onnx_batch_size, resident_weights=resident_weights
            )
            embedder.warm_up()  # while the server starts, not inside the first call
            log.info("embedding with ONNX Runtime: %s from %s", embedder.model_id, directory)
            return embedder
        except (ExportError, ImportError, OSError, ValueError) as exc:
            if backend == "onnx" or int8:
                # int8 vectors have their own id: torch's would be refused by a data dir holding them anyway.
                raise ModelError(f"the ONNX embedding path is unavailable: {exc}") from exc
            log.warning("ONNX path unavailable (%s); embedding with torch instead", exc)
    log.info("loading embedding model %s from %s (sentence-transformers)", model_id, source)
    return SentenceTransformerEmbedder(source, model_id, device=device, threads=threads, batch_size=batch_size)


def load_configured_embedder(settings: Settings) -> Embedder:
    """The embedder the settings describe (one place, so the server, the CLI and the harness agree)."""
    return load_embedder(
        settings.model,
        settings.device,
        settings.effective_embed_threads,
        settings.embed_batch_size,
        backend=settings.embed_backend,
        int8=settings.onnx_int8,
        cache_dir=settings.model_cache_dir,
        onnx_batch_size=settings.onnx_batch_size,
        resident_weights=settings.onnx_resident_weights,
    )
