"""Managing handoffs: `forget` (one handle, or one agent's), `recent`, and the filters of `similar` and `recent`.

Functions over a `LatentService`'s store and settings; they hold no state (the store owns it: a removal bumps the
namespace's generation, so every server on the store stops finding the record at its next read)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from mcp_latent.errors import InvalidInput
from mcp_latent.settings import Settings
from mcp_latent.store.base import Handoff, HandoffFilter, check_handle

if TYPE_CHECKING:
    from mcp_latent.service.api import LatentService

PREVIEW_CHARS = 120  # text shown per hit: enough to recognise it, cheap in tokens
MAX_META_FILTER_KEYS = 16  # a filter is a few keys; more is a mistake worth telling


def check_agent(from_agent: Any) -> str | None:
    if from_agent is not None and (not isinstance(from_agent, str) or not from_agent or len(from_agent) > 200):
        raise InvalidInput("`from_agent` must be a non-empty string of at most 200 characters (an agent's name).")
    return from_agent


def _time(value: Any, what: str, now: float) -> float | None:
    """Unix seconds; a negative number means that many seconds before now (e.g. -3600: the last hour)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"`{what}` must be a number: unix seconds, or negative for seconds ago (-3600 = 1 h ago).")
    return now + value if value < 0 else float(value)


def handoff_filter(
    from_agent: Any = None, meta: Any = None, since: Any = None, until: Any = None
) -> HandoffFilter | None:
    """The checked filter of a `similar`/`recent` call (None when nothing narrows it)."""
    now = time.time()
    check_agent(from_agent)
    if meta is not None:
        if not isinstance(meta, dict) or not meta or len(meta) > MAX_META_FILTER_KEYS:
            raise InvalidInput(
                f"`meta` must be an object of 1 to {MAX_META_FILTER_KEYS} key: value pairs to match "
                '(e.g. {"ticket": "T-1"}).'
            )
        for key, value in meta.items():
            if (
                value is None
                or isinstance(value, (dict, list))
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                raise InvalidInput(
                    f"`meta[{key!r}]` must be a string, number or true/false to match exactly "
                    "(a top-level value of a handoff's meta)."
                )
    start, end = _time(since, "since", now), _time(until, "until", now)
    if start is not None and end is not None and start >= end:
        raise InvalidInput("`since` must be before `until` (both unix seconds, or negative for seconds ago).")
    where = HandoffFilter(from_agent, dict(meta) if meta else None, start, end)
    return None if where.empty else where


def hit(record: Handoff, similarity: float | None = None) -> dict[str, Any]:
    """A compact view of a record: handle, (similarity), sender, time, a text preview."""
    out: dict[str, Any] = {"handle": record.handle}
    if similarity is not None:
        out["similarity"] = round(similarity, 3)
    if record.from_agent:
        out["from_agent"] = record.from_agent
    if similarity is None:
        out["created_at"] = round(record.created_at, 1)
    if record.text:
        out["text"] = record.text[:PREVIEW_CHARS] + ("…" if len(record.text) > PREVIEW_CHARS else "")
    return out


def check_limit(limit: Any, settings: Settings) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= settings.max_recent:
        raise InvalidInput(
            f"`limit` must be an integer from 1 to {settings.max_recent} (setting MCP_LATENT_MAX_RECENT)."
        )
    return limit


def forget(service: LatentService, handle: Any, from_agent: Any, namespace: str) -> dict[str, Any]:
    """Remove one handle, or every handoff of one agent, from a namespace (store and index; every server)."""
    if (handle is None) == (from_agent is None):
        raise InvalidInput(
            "pass exactly one of `handle` (forget that handoff) or `from_agent` (forget every handoff of that agent "
            "in the namespace)."
        )
    if handle is not None:
        check_handle(handle)
    check_agent(from_agent)
    removed = service._store().forget(namespace, handle=handle, from_agent=from_agent)
    out: dict[str, Any] = {"namespace": namespace, "forgotten": removed}
    if removed == 0:
        what = f"handle {handle!r}" if handle is not None else f"no handoff of agent {from_agent!r}"
        out["note"] = f"{what} not found in namespace {namespace!r}: nothing was removed."
    return out


def recent(service: LatentService, limit: Any, namespace: str, where: HandoffFilter | None) -> dict[str, Any]:
    """The newest handoffs of a namespace, newest first, compact."""
    limit = check_limit(limit, service.settings)
    return {"recent": [hit(record) for record in service._store().recent(namespace, limit, where)]}
