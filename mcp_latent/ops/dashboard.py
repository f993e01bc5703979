"""The figures of the page at `/` and of `mcp-latent report`, read from a data dir's usage stats only (no model,
no store), so a stdio user's report and a server's page show the same numbers.

Estimated savings: every answered verdict is one evaluation the calling LLM did not have to make (an escalated one
still goes to it), so LLM calls saved = answered verdicts, and tokens saved = that times `llm_tokens_per_judgement`
(a setting: your prompts decide the real figure)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from mcp_latent.service.usage_stats import ProfileStats

# Bucket widths (minutes) the time series may use: the smallest that gives at most MAX_POINTS points.
BUCKETS = (1, 5, 15, 60, 360, 1440, 7 * 1440)
MAX_POINTS = 48


@dataclass
class ProfileFigures:
    name: str
    totals: dict[str, Any]
    # (bucket start as unix seconds, answered, escalated), oldest first
    series: list[tuple[float, int, int]] = field(default_factory=list)
    bucket_minutes: int = 1


@dataclass
class Dashboard:
    generated_at: float
    profiles: list[ProfileFigures]
    tools: dict[str, dict[str, Any]]
    tokens_per_judgement: int
    server: dict[str, Any] | None = None  # a running server's status (the page), None for a report

    @property
    def llm_calls_saved(self) -> int:
        return sum(p.totals["answered"] for p in self.profiles)

    @property
    def tokens_saved(self) -> int:
        return self.llm_calls_saved * self.tokens_per_judgement

    @property
    def escalated(self) -> int:
        return sum(p.totals["escalated"] for p in self.profiles)


def bucketed(rows: list[tuple[int, dict[str, int]]]) -> tuple[list[tuple[float, int, int]], int]:
    """Per-minute (or per-day) counts summed into at most MAX_POINTS buckets of one width."""
    if not rows:
        return [], 1
    span = rows[-1][0] - rows[0][0] + 1
    width = next((b for b in BUCKETS if span / b <= MAX_POINTS), BUCKETS[-1])
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for minute, counts in rows:
        bucket = sums[minute // width * width]
        bucket[0] += counts["answered"]
        bucket[1] += counts["escalated"]
    return [(start * 60.0, a, e) for start, (a, e) in sorted(sums.items())], width


def gather(
    stats: ProfileStats, tokens_per_judgement: int, profiles: list[str] | None = None, server: dict | None = None
) -> Dashboard:
    """Everything the page shows; `profiles` adds loaded profiles that have no counts yet."""
    totals = stats.summary()
    for name in profiles or []:
        totals.setdefault(
            name,
            {
                "answered": 0,
                "escalated": 0,
                "taught": 0,
                "agreed": 0,
                "disagreed": 0,
                "escalation_rate": None,
                "agreement": None,
            },
        )
    figures = []
    for name, counts in sorted(totals.items()):
        series, width = bucketed(stats.series(name))
        figures.append(ProfileFigures(name, counts, series, width))
    return Dashboard(time.time(), figures, stats.calls(), tokens_per_judgement, server)
