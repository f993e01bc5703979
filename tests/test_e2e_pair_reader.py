"""A taught decision sticks on a far rewording, read by what differs (`judge/pair_reader.py`, `judge/memory_wide.py`),
through a real `mcp-latent serve` over stdio with the real model and the shipped risk profile: a paraphrase of a
taught text written as another person would (terse, other words, 0.85 similar: at the memory's radius, and read by
the whole-text model further than the guard allows) gets the taught label from the next call, from memory; the
same terse line with a few words changed that carry the decision (production at peak hours, the old password cut
off at once) does not, nor does one with a negation. Before this reader the paraphrase escalated (p 0.6 for the
taught label, under the 0.864 threshold). Texts written for this test, not from any data set."""

from __future__ import annotations

import pytest
from mcp import Client
from test_e2e_stdio import call, judged, params

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.usefixtures("warm_profile_cache")]

TAUGHT = (
    "Rotate the staging database password this afternoon through the secrets manager, keeping the old password "
    "valid for an hour so running jobs can finish."
)
FAR_PARAPHRASE = (
    "Staging DB password rotation today after lunch via the secrets manager. Old one keeps working for 1h to let "
    "jobs wrap up."
)
WORD_LEVEL_PAIRS = [
    "Production DB password rotation today at peak hours via the secrets manager. Old one stops working right away, "
    "so running jobs break.",
    "Staging DB password rotation today after lunch via the secrets manager. Old one does not keep working, so "
    "running jobs break.",
]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_far_paraphrase_of_a_taught_text_is_answered_as_taught_a_word_level_minimal_pair_is_not(tmp_path):
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as client:
        before = await judged(client, "risk", FAR_PARAPHRASE)
        assert before.get("unsure") and "memory" not in before, before  # escalated: nothing taught yet
        await call(client, "teach", {"profile": "risk", "label": "low", "text": TAUGHT})
        verdict = await judged(client, "risk", FAR_PARAPHRASE)
        assert verdict["nearest"] < 0.9, verdict  # not a near copy by the encoder
        assert verdict["label"] == "low" and "unsure" not in verdict, verdict
        assert verdict["memory"]["taught"] is True, verdict
        for text in WORD_LEVEL_PAIRS:
            rewrite = await judged(client, "risk", text)
            assert rewrite["label"] != "low" and "memory" not in rewrite, rewrite
