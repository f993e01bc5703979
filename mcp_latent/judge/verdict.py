"""One profile's answer for one text: what `FittedProfile.verdict` builds, the memo shares and the tools show.

A verdict is filled in by `FittedProfile.verdict` before it returns and read-only after that: the verdict memo
(`service/verdict_memo.py`) hands the same object to every caller that asks about the same handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    """One profile's answer for one vector."""

    label: str | None
    p: float
    unsure: bool
    score: float | None = None
    reason: str | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)
    neighbours: list[tuple[str, str, float]] = field(default_factory=list)
    nearest: float = 0.0
    best: str | None = None  # the most probable answer label, also when unsure (never shown: checks p on teach)
    words: list[str] = field(default_factory=list)  # the text's words that weighed most for `best` over the next
    threshold: tuple[float, str] | None = None  # the threshold it was judged at and where that came from
    memory: dict[str, Any] | None = None  # answered from memory: the exemplar's similarity, the radius, taught?
    # (p, best label) of the ensemble alone, before memory: what the stream and spot checks judge p by (never shown)
    model: tuple[float, str] | None = None
    scope: tuple[float, float] | None = None  # the scope gate's p(in scope) and threshold (None: no gate)
    # the clauses that differ decisively from the nearest taught text (`judge.taught_diff`; empty: none or no such text)
    differs: list[str] = field(default_factory=list)

    def compact(self) -> dict[str, Any]:
        """The model-visible default: label, p, and `unsure` when abstaining (three verdicts fit ~55 tokens)."""
        out: dict[str, Any] = {"label": self.label, "p": round(self.p, 2)}
        if self.unsure:
            out["unsure"] = True
        return out

    def detailed(self) -> dict[str, Any]:
        """The compact form plus the expected score (ordinal profiles) and an evidence pack for the calling LLM."""
        out = self.compact()
        if self.score is not None:
            out["score"] = round(self.score, 2)
        if self.reason:
            out["reason"] = self.reason
        out["top"] = [[label, round(p, 3)] for label, p in self.candidates]
        out["nearest"] = round(self.nearest, 3)
        out["neighbours"] = [[text, label, round(sim, 3)] for text, label, sim in self.neighbours]
        if self.words:
            out["words"] = self.words
        if self.threshold is not None:
            out["threshold"] = [round(self.threshold[0], 3), self.threshold[1]]
        if self.memory is not None:
            out["memory"] = self.memory
        if self.differs:  # why the taught label of a text this close was not carried over (at most 3 clauses)
            out["differs"] = self.differs[:3]
        if self.scope is not None:  # in_scope false: the gate stopped it (for shipped profiles: proposes nothing)
            p, threshold = self.scope
            out["scope"] = {"p": round(p, 3), "threshold": round(threshold, 3), "in_scope": p >= threshold}
        return out
