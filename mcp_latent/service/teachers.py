"""Who taught what: the teacher of the current call, teaching broken down by teacher, and operators' reverts.

Teaching is shared: an exemplar taught by one agent changes the next verdict of every agent on the store. So each
exemplar records its teacher (a token's name over HTTP, `local_teacher` over stdio), `latent://stats` counts
exemplars per teacher, and an operator can revert a teacher's exemplars (`mcp-latent profiles untaught`); every
server on the store drops them from its live snapshot on its next poll (`follow_reverts`).

The transport names the caller by setting `CURRENT_TEACHER` for the duration of one tool call (server/auth.py);
worker threads started with `anyio.to_thread.run_sync` inherit it, so `LatentService.teach` reads it there.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp_latent.errors import InvalidInput, LatentError

if TYPE_CHECKING:  # the server imports this module for CURRENT_TEACHER before numpy and the store are wanted
    from mcp_latent.service.live_profile import LiveProfile
    from mcp_latent.settings import Settings
    from mcp_latent.store.base import LatentStore, TaughtExemplar

log = logging.getLogger(__name__)

CURRENT_TEACHER: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcp_latent_teacher", default=None)

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def current_teacher(settings: Settings) -> str:
    """The teacher of the call running now: the authenticated token's name, else the local user."""
    return CURRENT_TEACHER.get() or settings.local_teacher


def follow_reverts(store: LatentStore | None, live: Mapping[str, LiveProfile], names: set[str]) -> None:
    """Profiles some of whose exemplars were reverted (by any process on the store): each drops the taught
    exemplars the store no longer holds. Reads each such profile's taught set once (reverts are rare)."""
    if store is None:
        return
    for name in sorted(names):
        if name in live:
            remaining = {(e.label, e.text) for e in store.taught(profile=name)}
            live[name].forget(remaining)


def taught_by_teacher(store: LatentStore, totals: dict[str, dict[str, Any]]) -> None:
    """Add `by_teacher` ({teacher: exemplars taught and not reverted}, from the store: every server's teaches) to
    each profile's stats."""
    try:
        counts_by_profile = store.taught_counts()
    except LatentError as exc:  # the store is down: the other counts still answer
        log.warning("taught exemplars per teacher not counted: %s", exc)
        return
    for profile, counts in counts_by_profile.items():
        entry = totals.get(profile)
        if entry is not None:
            entry["by_teacher"] = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def parse_when(value: str, now: float | None = None) -> float:
    """A point in time from the command line: unix seconds, an ISO 8601 date or time (UTC unless it says), or an
    age such as `30m`, `2h`, `1d` (that long ago)."""
    text = value.strip()
    now = time.time() if now is None else now
    ago = _AGO.match(text)
    if ago:
        return now - float(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"cannot read the time {value!r}: use unix seconds, an ISO 8601 time (e.g. 2026-12-06T03:00:00Z) or an "
            "age such as 30m, 2h, 1d."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def select_taught(
    store: LatentStore,
    teacher: str | None = None,
    since: float | None = None,
    until: float | None = None,
    profile: str | None = None,
) -> list[TaughtExemplar]:
    """The exemplars (not reverted) an operator's filters pick; at least one filter is required, so a typo never
    selects everything."""
    if teacher is None and since is None and until is None and profile is None:
        raise InvalidInput("name what to select: --teacher NAME, --since/--until TIME and/or --profile NAME.")
    if since is not None and until is not None and until <= since:
        raise InvalidInput(f"--until ({until:.0f}) must be after --since ({since:.0f}).")
    return store.find_taught(profile=profile, teacher=teacher, since=since, until=until)


def describe_taught(exemplar: TaughtExemplar, width: int = 60) -> str:
    """One line of `profiles untaught list`."""
    from mcp_latent.store.base import UNKNOWN_TEACHER

    when = datetime.fromtimestamp(exemplar.taught_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = exemplar.text.replace("\n", " ")
    text = text if len(text) <= width else text[: width - 1] + "…"
    teacher = exemplar.teacher or UNKNOWN_TEACHER
    return f"{exemplar.id:>8}  {when}  {teacher:<16} {exemplar.profile}={exemplar.label}  {text}"
