"""The tools' structured outputs (pydantic models) and their MCP annotations."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # imported at run time only where a service is built: numpy and the engine come with it
    pass

log = logging.getLogger(__name__)


class VerdictOut(BaseModel):
    """One profile's verdict. `label` is null when unsure; `p` is the calibrated probability the label is right.
    A profile whose first fit did not end within the wait has no `p` but `fitting` ("fitting, ready in about N s")
    or `error` instead (unsure, so a caller that skips the note escalates)."""

    model_config = ConfigDict(extra="allow")
    label: str | None
    p: float | None = None
    score: float | None = None
    unsure: bool | None = None


class HandoffOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    handle: str
    verdicts: dict[str, VerdictOut] | None = None


class EvaluateOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    verdicts: dict[str, VerdictOut]


class EmbedOut(BaseModel):
    handles: list[str]
    dim: int | None = None
    vectors: list[list[float]] | None = None


class SimilarHit(BaseModel):
    handle: str
    similarity: float
    from_agent: str | None = None
    text: str | None = None


class SimilarOut(BaseModel):
    similar: list[SimilarHit]


class GetOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    handle: str
    text: str | None = None


class ProfilesOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    profiles: list[dict[str, Any]]


class NamespacesOut(BaseModel):
    namespaces: list[dict[str, Any]]


class RecentHit(BaseModel):
    handle: str
    created_at: float
    from_agent: str | None = None
    text: str | None = None


class RecentOut(BaseModel):
    recent: list[RecentHit]


class ForgetOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    namespace: str
    forgotten: int


class DefineOut(BaseModel):
    """A profile written by `define_profile`: its labels, exemplars, and the taught exemplars kept or dropped."""

    model_config = ConfigDict(extra="allow")
    profile: str
    labels: list[str]
    exemplars: int


class DeleteProfileOut(BaseModel):
    profile: str
    deleted: bool
    taught_removed: int


class DropOut(BaseModel):
    namespace: str
    dropped: int


class TaughtOut(BaseModel):
    """What a teach did to one profile: `agreed` when the profile had answered (a spot check of that answer)."""

    model_config = ConfigDict(extra="allow")
    label: str
    exemplars: int
    added: bool | None = None
    agreed: bool | None = None


class TeachOut(BaseModel):
    taught: dict[str, TaughtOut]


# Only the hints clients act on (permission prompts), where they differ from the spec's defaults (readOnly false,
# destructive true, idempotent false). openWorldHint is left out: 22 bytes per tool to say "no web access".
READ_ONLY = ToolAnnotations(readOnlyHint=True)


WRITES = ToolAnnotations(destructiveHint=False)


DESTROYS = ToolAnnotations(idempotentHint=True)
