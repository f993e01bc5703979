"""Two readers of what a copy is, beside the log-odds guard (issue 24 item 1, roi's paraphrases): a text stating
other amounts than the taught one ("$900 a year" / "$90k a year") is never a copy of it, and a paraphrase the
profile's model reads less surely but *as the taught label* (corroborated) may pass a wider guard limit, fitted on
the same evidence and rule as the limit itself. Pure arithmetic on made-up evidence and strings."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_latent.judge.memory import MIN_PAIRS, Memory, _corroborated_limit
from mcp_latent.judge.memory_numbers import amounts, amounts_differ, mismatch


def differ(a: str, b: str) -> bool:
    return amounts_differ(amounts(a), amounts(b))


def test_amounts_an_order_apart_make_a_minimal_pair():
    assert differ("Cancel the unused seats: it costs $900 a year.", "Cancel the unused seats: it costs $90k a year.")
    assert differ("The script is two hours of work.", "The script is two weeks of work.")
    assert differ("Turn off 14 staging environments.", "Turn off 2 staging environments.")
    assert differ("Egress drops 60%.", "Egress drops 2%.")


def test_a_paraphrase_that_restates_rounds_or_drops_an_amount_is_not_a_minimal_pair():
    assert not differ("about $25k a month", "roughly $24,800 per month")
    assert not differ("it costs $2,000 a year", "it costs 2k USD a year")
    assert not differ("a day of work", "one day of work")
    assert not differ("The cron host failed 3 times this quarter.", "It died without a trace three times.")
    # one text states an amount the other leaves out: compared on what both state
    assert not differ("Buy the $2k/year service; building one is six weeks.", "Buy the $2k/year service.")
    assert mismatch(amounts("no numbers here"), amounts("$5k")) == 0.0


def test_a_rate_s_period_is_not_an_amount_of_time():
    assert amounts("They cost $9k a month.") == {"money": [pytest.approx(np.log10(9000))]}
    assert "duration" in amounts("It takes a month.")


def test_the_corroborated_limit_takes_the_readings_as_far_as_the_rule_allows():
    # 20 minimal pairs: at most 2 may pass (target 0.9). One passes the plain limit (shift 0.5); corroborated
    # readings of same-label pairs reach 3.0, and one corroborated minimal pair sits at 2.5, another at 3.5.
    shift = np.array([0.2, 0.5, 1.0, 2.0, 3.0, 2.5, 3.5] + [5.0] * (MIN_PAIRS + 7))
    same = np.array([True, False, True, True, True, False, False] + [False] * (MIN_PAIRS + 7))
    agrees = np.array([True, False, True, True, True, True, True] + [False] * (MIN_PAIRS + 7))
    assert (~same).sum() == 20
    limit = 0.5
    wider = _corroborated_limit(shift, same, agrees, limit, 0.9)
    assert wider == pytest.approx(3.0)  # 2.5 lets the second minimal pair through (2 of 20); 3.5 a third
    # never below the plain limit, and nothing corroborated: the plain limit
    assert _corroborated_limit(shift, same, np.zeros_like(agrees), limit, 0.9) == limit


def test_a_corroborated_reading_passes_the_wider_limit_and_an_uncorroborated_one_does_not():
    close = [(0.9, True, s, False) for s in np.linspace(0.1, 0.9, 9)]
    close += [(0.9, False, 1.0, False), (0.9, False, 1.1, False)]
    close += [(0.9, True, s, True) for s in (1.5, 2.0, 2.5)] + [(0.9, False, 3.0, True), (0.9, False, np.inf, True)]
    pairs = np.array(close, dtype=np.float64)
    memory = Memory(pairs[:, 0].astype(np.float32), pairs[:, 1].astype(bool), -1.0, 0.9, pairs).retarget(0.9)
    assert memory.shift_limit == pytest.approx(1.0)  # the agreement rule (4 minimal pairs): 9 of 10 up to 1.0
    # corroborated readings up to 2.5 keep the pairs passing at 12 of 13; the corroborated minimal pair at 3.0
    # would bring it to 12 of 14
    assert memory.corroborated_limit == pytest.approx(2.5)
    assert memory.passes(2.0, True) and not memory.passes(2.0, False)
    assert not memory.passes(np.inf, True)  # other amounts: never a copy
    ids, sims = np.array([[0], [0]]), np.array([[0.95, 0.5], [0.95, 0.5]])
    readings = {0: (2.0, True), 1: (2.0, False)}
    assert memory.recall(ids, sims[:, :1], lambda q, row: readings[q]).tolist() == [0, -1]
    assert memory.recall(ids, sims[:, :1], lambda q, row: 2.0).tolist() == [-1, -1]  # a bare shift corroborates nothing


def test_a_memory_stored_before_corroboration_reads_as_uncorroborated():
    pairs = np.array([(0.9, True, s) for s in np.linspace(0.1, 2.0, 12)] + [(0.9, False, 3.0)], dtype=np.float64)
    memory = Memory(pairs[:, 0].astype(np.float32), pairs[:, 1].astype(bool), -1.0, 0.9, pairs).retarget(0.9)
    assert memory.corroborated_limit == memory.shift_limit
    restored = Memory.from_arrays(memory.to_arrays(), 0.9)
    assert restored is not None and restored.corroborated_limit == memory.corroborated_limit
