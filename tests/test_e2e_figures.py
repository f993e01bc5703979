"""A paraphrase that restates a taught text's figures in other spellings keeps its memory answer, through a real
`mcp-latent serve` over stdio with the real model and the shipped roi profile (issue 24, the sixth pass): "12" said
"twelve", "$3,000" said "$3k", "2 days" said "two days" are the same amounts, and the figure cue
(`judge/clause_diff.py`) reads magnitudes, not spelling. Before it compared figures as written, so the paraphrase
differed from the taught text by three "figures", roi's words read them as pushing away from the taught label, and
memory did not answer it. The same text with the cost a hundred times smaller is still no copy."""

from __future__ import annotations

import json

import pytest
from mcp import Client
from test_e2e_stdio import call, judged, params

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.usefixtures("warm_profile_cache")]

TAUGHT = (
    "Cache the exchange-rate lookups in the checkout service: each page load calls the rates API 12 times, costing "
    "$3,000 a month, and the cache is 2 days of work."
)
IN_WORDS = (
    "Cache the exchange-rate lookups in the checkout service: each page load calls the rates API twelve times, "
    "costing $3k a month, and the cache is two days of work."
)
CHEAPER = TAUGHT.replace("$3,000 a month", "$30 a month")


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_paraphrase_restating_figures_in_words_keeps_its_memory_answer(tmp_path):
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as client:
        await call(client, "teach", {"profile": "roi", "label": "high", "text": TAUGHT})
        verdict = await judged(client, "roi", IN_WORDS)
        # before (main cd467c2): escalated, reason "differs_from_taught", `differs` naming "costing $3k a month",
        # "... calls the rates API 12 times" and "costing $3,000 a month": figures as written
        assert verdict["label"] == "high" and verdict.get("memory", {}).get("taught") is True, json.dumps(verdict)
        assert "differs" not in verdict, verdict
        cheaper = await judged(client, "roi", CHEAPER)
        assert "memory" not in cheaper, cheaper  # a hundred times cheaper: not a copy, whatever the ensemble says
