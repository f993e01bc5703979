"""A minimal-pair rewrite of a taught text is not a copy of it (issue 24 item 1): the clause reader
(`judge/clause_diff.py`) names the clauses where a text differs from its taught neighbour by a negation cue or a
figure, and `judge/taught_diff.py` keeps memory and the ensemble from carrying the taught label over to it, while
a copy and a near copy are still answered as taught and a verdict with no taught text that close pays nothing.
Fake embedder here (fast); the real model and a real stdio server: test_e2e_sticks.py."""

from __future__ import annotations

import pytest
from conftest import HashingEmbedder

from mcp_latent.judge import clause_diff, taught_diff
from mcp_latent.judge.clause_diff import clauses, differences, figures, negations
from mcp_latent.service.api import LatentService

TAUGHT = (
    "Migrate the billing database to the new cluster this weekend, with a tested rollback plan and a verified backup."
)


def test_clauses_split_at_commas_and_connectives_and_keep_the_connective():
    assert clauses(TAUGHT) == [
        "Migrate the billing database to the new cluster this weekend",
        "with a tested rollback plan and a verified backup",
    ]
    assert clauses("Ship it. Then tell support; they need a day") == ["Ship it Then tell support", "they need a day"]


def test_a_dropped_safeguard_a_skipped_review_and_a_changed_cost_differ_a_paraphrase_does_not():
    dropped = "Migrate the billing database to the new cluster this weekend, with no rollback plan and no backup."
    assert differences(dropped, TAUGHT) == ["with no rollback plan and no backup"]
    skipped = "Merge the auth refactor today; nobody has reviewed it."
    assert differences(skipped, "Merge the auth refactor today; two people reviewed it.") == ["nobody has reviewed it"]
    assert differences("Renew the data warehouse at $90k a year", "Renew the data warehouse at $900 a year") == [
        "Renew the data warehouse at $90k a year",
        "Renew the data warehouse at $900 a year",
    ]
    paraphrase = (
        "Move the billing DB onto the new cluster this weekend; the rollback plan is tested and the backup verified."
    )
    assert differences(paraphrase, TAUGHT) == []
    assert differences(TAUGHT, TAUGHT) == []
    assert negations("it isn't backed up and we can't roll back, skipping staging") == 3
    assert figures("2x peak, $90,000 a year, 5% of traffic") == {"2x", "90000", "5%"}


# The same changes with and without their safeguards, labelled apart (test_sticks.py's rollout profile), and three
# minimal pairs close enough (0.9 by hashed words) that the profile's own evidence shows a small difference
# changing its label.
CHANGES = ["billing service", "search cluster", "auth gateway", "payments queue", "user database", "mail relay"]
SAFE = [f"deploy the {c} update with a rollback plan and a canary step" for c in CHANGES]
SAFE += [f"ship the {c} patch after staging tests and review" for c in CHANGES]
SAFE += [f"rotate the {c} signing keys on monday morning after telling every team" for c in CHANGES[:3]]
RISKY = [f"deploy the {c} update without any rollback plan or canary step" for c in CHANGES]
RISKY += [f"ship the {c} patch straight to production skipping staging tests" for c in CHANGES]
RISKY += [f"rotate the {c} signing keys on monday morning without telling every team" for c in CHANGES[:3]]


# Written minimal pairs (`pair_examples`): the author showing that a small difference changes the label, which turns
# the rule on (`taught_diff.reads_facts`).
PAIR_SAFE = [f"restart the {c} workers at noon with a canary step" for c in CHANGES]
PAIR_RISKY = [f"restart the {c} workers at noon without a canary step" for c in CHANGES]


def write_rollout(directory, pairs: bool) -> None:
    def quoted(texts):
        return "[" + ", ".join(f'"{t}"' for t in texts) + "]"

    lines = ['name = "rollout"', 'description = "test profile"', "min_similarity = -1.0"]
    for label, examples, written in (("safe", SAFE, PAIR_SAFE), ("risky", RISKY, PAIR_RISKY)):
        lines += ["[[labels]]", f'name = "{label}"', f"examples = {quoted(examples)}"]
        lines += [f"pair_examples = {quoted(written)}"] if pairs else []
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rollout.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def serve(settings, pairs: bool):
    write_rollout(settings.user_profiles_dir, pairs)
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    return service


@pytest.fixture
def rollout(settings):
    service = serve(settings, pairs=True)
    yield service
    service.close()


def judged(service, text, profile="rollout"):
    return service.evaluate(text=text, profiles=[profile], detail=True)["verdicts"][profile]


def test_a_rewrite_that_drops_the_safeguard_is_not_answered_with_the_taught_label(rollout):
    taught = "migrate the ledger archive tonight with a rollback plan and a canary step and a verified backup"
    near_copy = "please migrate the ledger archive tonight with a rollback plan and a canary step and a verified backup"
    rewrite = "migrate the ledger archive tonight with a rollback plan and a canary step without a verified backup"
    vectors = HashingEmbedder().embed([taught, rewrite])
    assert float(vectors[0] @ vectors[1]) >= taught_diff.BAND  # the encoder reads it as the same proposal
    rollout.teach("rollout", "safe", text=taught)
    for text in (taught, near_copy):  # copies still answer as taught, from memory
        verdict = judged(rollout, text)
        assert verdict["label"] == "safe" and verdict["memory"]["taught"] is True, verdict
        assert "differs" not in verdict
    verdict = judged(rollout, rewrite)
    # before: answered "safe" from memory, as a copy of the taught text
    assert verdict["label"] != "safe" and "memory" not in verdict, verdict
    assert verdict["differs"] == ["without a verified backup"]
    if verdict["label"] is None:  # the ensemble leaned to the taught label: escalated, saying why
        assert verdict["reason"] == "differs_from_taught"
    assert rollout.wait_refitted(60)
    assert judged(rollout, rewrite)["label"] != "safe"  # and after the background refit too
    rollout.teach("rollout", "risky", text=rewrite)  # its own teach answers it from then on
    verdict = judged(rollout, rewrite)
    assert verdict["label"] == "risky" and verdict["memory"]["taught"] is True


def test_the_rule_never_reads_the_profile_files_own_exemplars(rollout):
    # a text that differs from one of the file's exemplars by a negation is judged as before
    verdict = judged(rollout, "deploy the billing service update with a rollback plan and no canary step")
    assert "differs" not in verdict and verdict.get("reason") != "differs_from_taught"


def test_a_profile_whose_labels_no_small_difference_changes_keeps_answering_as_taught(service):
    # the fruit / tools profile has no minimal pair among its close exemplars: a negation is no other label there
    taught = "a bowl of apple banana cherry fruit salad for the picnic table"
    service.teach("kind", "tools", text=taught)
    verdict = judged(service, "a bowl of apple banana cherry fruit salad for the picnic table, no cherry", "kind")
    assert verdict["label"] == "tools" and "differs" not in verdict, verdict


def test_a_profile_without_written_pairs_keeps_answering_as_taught(settings):
    """Close exemplars of different labels alone do not turn the rule on: intent profiles have them (two intents
    worded alike) and there a figure or a negation rarely changes the label (BANKING77's stream: 69 of the 72
    verdicts the rule escalated were right). Before, this profile's close different-label exemplar pairs were
    enough, and the rewrite below came back with `differs`."""
    service = serve(settings, pairs=False)
    try:
        taught = "migrate the ledger archive tonight with a rollback plan and a canary step and a verified backup"
        rewrite = "migrate the ledger archive tonight with a rollback plan and a canary step without a verified backup"
        service.teach("rollout", "safe", text=taught)
        memory = service.live["rollout"].snapshot.memory
        assert memory is not None and not memory.budgeted  # no written pairs...
        assert memory.close is not None and (memory.close[:, 1] == 0).any()  # ...but close exemplars of both labels
        verdict = judged(service, rewrite)
        assert "differs" not in verdict and verdict.get("reason") != "differs_from_taught", verdict
    finally:
        service.close()


def test_a_verdict_with_no_taught_text_in_the_band_never_reads_clauses(rollout, monkeypatch):
    def fail(*_):
        raise AssertionError("the clause reader ran for a verdict with no taught text in the band")

    monkeypatch.setattr(taught_diff, "differences", fail)
    monkeypatch.setattr(clause_diff, "differences", fail)
    judged(rollout, "ship the mail relay patch straight to production skipping staging tests")  # nothing taught yet
    rollout.teach("rollout", "safe", text="rotate the signing keys for the mail relay on friday night with notice")
    verdict = judged(rollout, "deploy the search cluster update with a rollback plan")
    assert "differs" not in verdict  # the taught text is far: never read
    with pytest.raises(AssertionError, match="clause reader ran"):  # and the reader does run for one that close
        judged(rollout, "rotate the signing keys for the mail relay on friday night without notice")
