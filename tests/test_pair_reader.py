"""The reader of what differs (`judge/pair_reader.py`) and the wider memory it decides (`judge/memory_wide.py`): a
taught text restated in many other words that carry no decision is answered with the taught label when the
ensemble's best label is that one; a text that changes a few words which push the profile away from the taught
label, or a negation or an amount, is not. Arrays and a small words expert here (fast); the real model through a
real stdio server: test_e2e_sticks.py."""

from __future__ import annotations

import math

import numpy as np

from mcp_latent.judge import memory_wide
from mcp_latent.judge.decision import LOW_CONFIDENCE, OUT_OF_SCOPE, Decisions
from mcp_latent.judge.pair_reader import content_words, decision_change, stem, unmatched
from mcp_latent.judge.words import WordsModel

SAFE = [
    "rotate the staging password with the old one valid for an hour",
    "deploy the staging build behind a flag for staff first",
    "copy the staging logs to the archive bucket weekly",
    "rename the staging dashboards for the support team",
]
RISKY = [
    "rotate the production password at peak traffic for every customer",
    "deploy the production build for every customer at once",
    "drop the production tables for every customer tonight",
    "open the production admin panel to the public internet",
]
WORDS = WordsModel.fit(SAFE + RISKY, np.array([0] * len(SAFE) + [1] * len(RISKY)), 2)


def test_words_match_by_stem_and_function_words_and_figures_are_not_read():
    assert stem("deployed") == stem("deploying") == stem("deploys") == stem("deploy")
    assert content_words("Deploy the 2 builds to it, then rename them") == ["deploy", "builds", "rename"]
    assert unmatched("the deployed build for staff", "deploying builds for the staff team") == ([], ["team"])


def test_a_changed_negation_or_amount_is_a_decision_change_of_its_own():
    taught = "rotate the staging password with the old one valid for an hour"
    assert decision_change(WORDS, taught, taught, 0) == 0.0
    assert decision_change(WORDS, "rotate the staging password with no old one valid", taught, 0) == math.inf
    assert decision_change(WORDS, "rotate the staging password, the old one valid for 9 days", taught, 0) == math.inf
    assert decision_change(None, "rotate the staging password at an hour", taught, 0) == 0.0  # no words expert


def test_a_few_words_that_carry_the_other_label_move_further_than_neutral_rewording():
    taught = "rotate the staging password with the old one valid for an hour"
    minimal = "rotate the production password with the old one valid for an hour for every customer"
    reworded = "staging password rotated, old one kept valid an hour"
    assert decision_change(WORDS, minimal, taught, 0) > memory_wide.BOUND  # "production", "every customer": risky
    assert decision_change(WORDS, reworded, taught, 0) < memory_wide.BOUND
    # read from the other side (the risky text taught, the safe one asked about): the words it lacks carried the
    # taught label, so the change is as large
    assert decision_change(WORDS, taught, minimal, 1) > memory_wide.BOUND


REWORDED = "staging password rotated, old one kept valid an hour"


def decisions(best, reason, recalled=None):
    n = len(best)
    return Decisions(np.array(best), np.full(n, 0.6), np.full(n, 0.8), np.array(reason, dtype=object), recalled)


def test_the_wide_rule_answers_a_far_restatement_only_with_the_ensembles_own_taught_label():
    rows_text = SAFE + RISKY + ["rotate the staging password with the old one valid for an hour"]
    rows = (rows_text, np.array([0] * 4 + [1] * 4 + [0]))
    shipped = 8  # row 8 is taught
    texts = [
        REWORDED,  # reworded, best = taught
        REWORDED,  # best = the other label
        "rotate the production password with the old one valid for an hour for every customer",  # moves away
        REWORDED,  # out of scope
        REWORDED,  # nearest taught too far
    ]
    ids = np.array([[8, 0]] * 5)
    sims = np.array([[0.76, 0.5]] * 4 + [[0.70, 0.5]])
    ensemble = decisions([0, 1, 0, 0, 0], [LOW_CONFIDENCE, LOW_CONFIDENCE, LOW_CONFIDENCE, OUT_OF_SCOPE, None])
    probs = np.array([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4]])
    out = memory_wide.apply(ensemble, ensemble, probs, ids, sims, texts, rows, shipped, WORDS, 0.9)
    assert list(out.recalled) == [8, -1, -1, -1, -1]
    assert out.reason[0] is None and out.best[0] == 0 and out.p[0] == 0.9
    assert list(out.reason[1:4]) == [LOW_CONFIDENCE, LOW_CONFIDENCE, OUT_OF_SCOPE]
    # a profile file's own exemplar (not taught) is never read: first-call verdicts do not move
    ids_shipped = np.array([[0, 1]] * 5)
    assert memory_wide.apply(ensemble, ensemble, probs, ids_shipped, sims, texts, rows, shipped, WORDS, 0.9) is ensemble
