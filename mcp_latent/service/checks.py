"""Input checks at the library boundary: one place says what a text, a batch, `meta` or a name must be.

Every message says what was wrong and what to send (the MCP layer shows it as is); every limit is a setting."""

from __future__ import annotations

import json
from typing import Any

from mcp_latent.errors import InvalidInput
from mcp_latent.settings import Settings


def check_text(text: Any, settings: Settings, what: str = "text") -> str:
    """A non-empty string within `max_text_chars`."""
    if not isinstance(text, str):
        raise InvalidInput(f"`{what}` must be a string, got {type(text).__name__}.")
    if not text.strip():
        raise InvalidInput(f"`{what}` is empty; pass the proposal or message to embed.")
    limit = settings.max_text_chars
    if len(text) > limit:
        raise InvalidInput(
            f"`{what}` has {len(text):,} characters; the limit is {limit:,} (setting MCP_LATENT_MAX_TEXT_CHARS). "
            "Summarise or split it."
        )
    return text


def check_texts(texts: Any, settings: Settings) -> list[str]:
    """A non-empty list of texts (or one text) within `max_batch`."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts:
        raise InvalidInput("`texts` must be a non-empty list of strings.")
    if len(texts) > settings.max_batch:
        raise InvalidInput(
            f"{len(texts)} texts in one call; the limit is {settings.max_batch} "
            "(setting MCP_LATENT_MAX_BATCH). Split the batch."
        )
    return [check_text(t, settings, f"texts[{i}]") for i, t in enumerate(texts)]


def check_meta(meta: Any, settings: Settings) -> dict[str, Any] | None:
    """None, or a JSON object within `max_meta_bytes`."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise InvalidInput("`meta` must be a JSON object (a dict of small values).")
    size = len(json.dumps(meta, separators=(",", ":"), default=str).encode())
    if size > settings.max_meta_bytes:
        raise InvalidInput(
            f"`meta` is {size:,} bytes of JSON; the limit is {settings.max_meta_bytes:,} "
            "(setting MCP_LATENT_MAX_META_BYTES)."
        )
    return meta


def check_name(value: Any, what: str) -> str:
    """A non-empty string (a profile or label name; the registry says whether it exists)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"`{what}` must be a non-empty string.")
    return value
