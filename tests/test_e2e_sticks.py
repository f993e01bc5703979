"""A taught decision sticks through a real `mcp-latent serve` over stdio, with the real model and the shipped risk
profile: the taught proposal and a copy of it in other case and punctuation get the taught label from the next
call (`detail` says it came from memory), and so does a paraphrase in other words (0.936 similar) that keeps its
safeguards; the same proposal without its rollback plan and backup does not (its embedding is 0.958 similar,
closer than the paraphrase: the profile's own model reads it as another label, and the memory's guard, fitted on
the profile's minimal pairs, tells them apart), and `detail` names the threshold's source."""

from __future__ import annotations

import pytest
from mcp import Client
from test_e2e_stdio import call, judged, params

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.usefixtures("warm_profile_cache")]

TAUGHT = (
    "Migrate the billing database to the new cluster this weekend with a tested rollback plan and a verified backup."
)
NEAR_COPY = (
    "migrate the billing database to the new cluster this weekend, with a tested rollback plan and a verified backup"
)
PARAPHRASE = "Move the billing DB to the new cluster this weekend; the rollback plan is tested and the backup verified."
OPPOSITE = "Migrate the billing database to the new cluster this weekend without any rollback plan or backup."


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_taught_proposal_and_a_near_copy_are_answered_as_taught_a_minimal_pair_opposite_is_not(tmp_path):
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as client:
        before = await judged(client, "risk", TAUGHT)
        assert before["threshold"][1] == "fit" and "memory" not in before
        label = "low"  # a migration with its safeguards: the profile leans to medium
        assert before["top"][0][0] != label
        paraphrase = await judged(client, "risk", PARAPHRASE)
        assert paraphrase.get("unsure") or paraphrase["label"] != label  # the teach is what answers it
        await call(client, "teach", {"profile": "risk", "label": label, "text": TAUGHT})
        for text in (TAUGHT, NEAR_COPY, PARAPHRASE):  # the next call, no refit waited for
            verdict = await judged(client, "risk", text)
            assert verdict["label"] == label and "unsure" not in verdict, verdict
            assert verdict["memory"]["taught"] is True
        opposite = await judged(client, "risk", OPPOSITE)
        assert "memory" not in opposite and opposite["label"] != label, opposite


ROI_TAUGHT = (
    "Cache the exchange-rate lookups in the checkout service: each page load calls the rates API 12 times, costing "
    "$3k a month, and the cache is two days of work."
)
ROI_PARAPHRASE = (
    "Add a cache for exchange-rate lookups in checkout. Every page load hits the rates API 12 times ($3k a month); "
    "building the cache takes two days."
)
# The same proposal a hundred times cheaper to leave alone and thirty times dearer to do: 0.99 similar, and roi's
# model reads it alike (log-odds shift 1.2, inside roi's guard limit of about 2.0); only its amounts differ.
ROI_AMOUNTS_CHANGED = ROI_TAUGHT.replace("$3k a month", "$30 a month").replace("two days", "two months")


async def test_roi_answers_a_paraphrase_as_taught_from_memory_but_not_a_rewrite_with_other_amounts(tmp_path):
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as client:
        await call(client, "teach", {"profile": "roi", "label": "high", "text": ROI_TAUGHT})
        verdict = await call(client, "evaluate", {"text": ROI_PARAPHRASE, "profiles": ["roi"], "detail": True})
        verdict = verdict["verdicts"]["roi"]
        assert verdict["label"] == "high" and verdict["memory"]["taught"] is True, verdict
        rewrite = await call(client, "evaluate", {"text": ROI_AMOUNTS_CHANGED, "profiles": ["roi"], "detail": True})
        assert "memory" not in rewrite["verdicts"]["roi"], rewrite  # whatever the ensemble says, not a copy


# A written minimal pair of the shipped risk profile (tools/data/exemplars/minimal_pairs.jsonl, mp-risk-23).
REVIEWED = "Merge the dependency bump once CI is green and one reviewer has approved it."
UNREVIEWED = "Merge the dependency bump to production now with CI red and no reviewer approving it."


async def test_a_rewrite_that_drops_the_review_is_not_answered_with_the_taught_label(tmp_path):
    """Before `judge/taught_diff.py` the ensemble answered the rewrite `low` (the taught label) once the reviewed
    proposal was taught: the taught text is its nearest exemplar and the nudged head leans on it. Now the clause
    reader finds the negation it adds ("no reviewer"), which risk's words read as pushing away from `low`: the
    verdict escalates and `detail` names the clause."""
    async with Client(params(tmp_path / "d"), mode="legacy", read_timeout_seconds=300) as client:
        await call(client, "teach", {"profile": "risk", "label": "low", "text": REVIEWED})
        assert (await judged(client, "risk", REVIEWED))["label"] == "low"  # the taught text itself: from memory
        rewrite = await judged(client, "risk", UNREVIEWED)
        assert rewrite["label"] != "low" and "memory" not in rewrite, rewrite
        assert rewrite["neighbours"][0][0] == REVIEWED  # the taught text is its nearest exemplar
        assert rewrite["differs"] == ["with CI red and no reviewer approving it"], rewrite
        if rewrite["label"] is None:
            assert rewrite["reason"] == "differs_from_taught"
