"""The memory's guard, fitted jointly with its radius (issue 24 item 1): a paraphrase of a taught text is a copy
when the profile's own model reads it alike, a minimal pair is not; the guard's limit lets through at most
1 - target of the profile's minimal pairs; the radius counts only the pairs that also pass the guard, so minimal
pairs the guard already rejects no longer hold it up. Pure arithmetic on made-up evidence, and a fake embedder
through a real service (the real model: test_e2e_sticks.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HashingEmbedder

from mcp_latent.judge.memory import MIN_PAIRS, MIN_RADIUS, Memory, _limit
from mcp_latent.judge.memory_evidence import IDENTICAL, SHIFT_BAND, log_odds_shift


def memory_of(close: list[tuple[float, bool, float]], target: float = 0.9) -> Memory:
    """A guarded memory fitted on made-up close pairs [(similarity, same label, shift)]."""
    pairs = np.array([[s, same, shift] for s, same, shift in close], dtype=np.float64)
    sims = pairs[:, 0].astype(np.float32)
    return Memory(sims, pairs[:, 1].astype(bool), -1.0, target, pairs).retarget(target)


def test_the_shift_is_the_drop_in_the_log_odds_of_the_exemplars_label():
    exemplar = np.log(np.array([[0.8, 0.15, 0.05]]))
    assert log_odds_shift(exemplar, exemplar, np.array([0]))[0] == pytest.approx(0.0)
    surer = np.log(np.array([[0.9, 0.05, 0.05]]))
    assert log_odds_shift(surer, exemplar, np.array([0]))[0] < 0  # reads as the label even more: no shift away
    other = np.log(np.array([[0.2, 0.1, 0.7]]))
    # log-odds of label 0 against the rest: log(0.8 / 0.2) before, log(0.2 / 0.8) after
    assert log_odds_shift(other, exemplar, np.array([0]))[0] == pytest.approx(2 * np.log(4.0))


def test_the_limit_lets_through_at_most_one_minus_target_of_the_minimal_pairs():
    same = [(0.9, True, s) for s in (0.1, 0.4, 0.8, 1.2, 1.9)]
    minimal = [(0.9, False, 0.5)] + [(0.9, False, 2.0 + i / 10) for i in range(MIN_PAIRS + 1)]
    shift = np.array([p[2] for p in same + minimal])
    agree = np.array([p[1] for p in same + minimal])
    limit = _limit(shift, agree, 0.9)
    passing = shift[~agree] <= limit
    assert passing.sum() <= 0.1 * (~agree).sum()  # 1 of 12
    assert limit == pytest.approx(1.9)  # as wide as that allows: every same-label pair below the next one
    # Tighter target, fewer allowed: 0.95 of 12 lets none through, so the limit stops below the first one.
    assert _limit(shift, agree, 0.95) == pytest.approx(0.4)


def test_with_few_minimal_pairs_the_limit_is_where_the_pairs_within_it_agree():
    close = [(0.9, True, s) for s in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)] + [(0.9, False, 1.0)]
    close += [(0.9, True, 1.1), (0.9, False, 3.0)]
    shift, agree = np.array([c[2] for c in close]), np.array([c[1] for c in close])
    assert _limit(shift, agree, 0.9) == pytest.approx(1.1)  # 10 of 11 agree up to 1.1; 10 of 12 past 3.0
    assert _limit(np.array([-2.0, -1.0] * 5), np.zeros(10, dtype=bool), 0.9) == 0.0  # never below 0


def test_minimal_pairs_the_guard_rejects_no_longer_hold_the_radius_up():
    # Paraphrase-like pairs from 0.86 to 0.95 read alike; 18 minimal pairs at 0.93-0.97 read far apart, and the
    # 2 of 20 the target lets through sit at 0.86.
    close = [(0.86 + i * 0.01, True, 0.2) for i in range(10)] + [(0.86, False, 1.0)] * 2
    close += [(0.93 + i * 0.002, False, 5.0 + i) for i in range(2 * MIN_PAIRS - 2)]
    guarded = memory_of(close)
    assert guarded.shift_limit == pytest.approx(1.0)
    # down to where the pairs that pass agree, just above the passing minimal pairs (not above the 0.93-0.97 ones)
    assert guarded.radius == pytest.approx(0.87, abs=1e-6) and guarded.radius > SHIFT_BAND
    # The same evidence without the guard: the radius clears the closest minimal pair, as before.
    sims = np.array([c[0] for c in close], dtype=np.float32)
    unguarded = Memory(sims, np.array([c[1] for c in close]), float(sims.max()), 0.9).retarget(0.9)
    assert unguarded.radius > 0.966 and unguarded.radius >= MIN_RADIUS


def test_a_minimal_pair_the_guard_lets_through_keeps_the_radius_above_it():
    close = [(0.86 + i * 0.01, True, 0.2) for i in range(10)]
    close += [(0.93, False, 0.1)]  # reads alike although labelled apart (e.g. a label the model cannot see)
    close += [(0.9, False, 5.0 + i) for i in range(MIN_PAIRS)]
    memory = memory_of(close)
    assert 0.93 < memory.radius <= 0.94 + 1e-6


def test_too_few_close_pairs_mean_only_identical_texts_are_copies():
    memory = memory_of([(0.95, True, 0.0)] * (MIN_PAIRS - 1))
    assert memory.radius == IDENTICAL


def test_a_taught_minimal_pair_raises_the_radius_only_when_the_guard_reads_it_alike():
    vectors = HashingEmbedder().embed([f"deploy the {c} update with a rollback plan" for c in "abcdefghijkl"])
    y = np.zeros(len(vectors), dtype=np.int64)
    memory = memory_of([(0.86 + i * 0.01, True, 0.2) for i in range(MIN_PAIRS)])
    new = HashingEmbedder().embed(["deploy the a update with a rollback plan, please"])
    closest = float((new @ vectors.T).max())
    assert closest > memory.radius  # a taught text of another label, well within the radius of an exemplar
    apart = memory.with_rows(vectors, y, new, np.array([1]), lambda q, e: np.full(len(q), 9.0))
    assert apart.radius == memory.radius  # the guard tells them apart: no copy either way, the radius holds
    alike = memory.with_rows(vectors, y, new, np.array([1]), lambda q, e: np.full(len(q), -1.0))
    assert alike.radius > closest  # read alike: the radius rises above the new minimal pair at once


def budgeted_memory_of(close: list[tuple[float, bool, float]], target: float = 0.9) -> Memory:
    """`memory_of` fitted with the file's minimal pairs (`pair_examples`) among its evidence."""
    pairs = np.array([[s, same, shift] for s, same, shift in close], dtype=np.float64)
    sims = pairs[:, 0].astype(np.float32)
    return Memory(sims, pairs[:, 1].astype(bool), -1.0, target, pairs, budgeted=True).retarget(target)


def test_with_written_minimal_pairs_the_share_the_limit_lets_through_does_not_hold_the_radius_up():
    # 4 paraphrase-like pairs, 20 minimal pairs (written so: far more than paraphrases), 2 of which (the 1 - target
    # the limit allows) the guard reads alike, at 0.92 and 0.91
    close = [(0.86 + i * 0.02, True, 0.2) for i in range(4)] + [(0.92, False, 0.1), (0.91, False, 0.15)]
    close += [(0.88 + i * 0.004, False, 4.0 + i) for i in range(2 * MIN_PAIRS - 2)]
    unbudgeted, budgeted = memory_of(close), budgeted_memory_of(close)
    assert unbudgeted.shift_limit == budgeted.shift_limit == pytest.approx(0.2)
    # the old rule: above every minimal pair that passes and where the passing pairs agree (4 of 6 never do)
    assert unbudgeted.radius >= 0.93
    # budgeted: 2 of 20 minimal pairs answered as copies is the target's share; the radius goes down to the band
    assert budgeted.radius == pytest.approx(SHIFT_BAND)
    passing_minimal = [c for c in close if not c[1] and c[2] <= budgeted.shift_limit and c[0] >= budgeted.radius]
    assert len(passing_minimal) <= 0.1 * 20
    # past the share (the limit cannot go below 0): the radius clears the excess, the closest ones stay
    alike = [(0.95 - i * 0.01, False, -0.5) for i in range(5)]
    crowded = budgeted_memory_of(close[:4] + alike + [(0.88, False, 5.0 + i) for i in range(15)])
    assert crowded.shift_limit == 0.0
    assert 0.93 < crowded.radius <= 0.94 + 1e-6  # 2 of the 20 (0.95, 0.94) pass: the share, no more


def test_the_budgeted_memory_survives_storage():
    close = [(0.86 + i * 0.02, True, 0.2) for i in range(4)] + [(0.88 + i * 0.004, False, 4.0) for i in range(12)]
    stored = budgeted_memory_of(close).to_arrays()
    loaded = Memory.from_arrays(stored, 0.9)
    assert loaded is not None and loaded.budgeted and loaded.radius == budgeted_memory_of(close).radius
    assert not Memory.from_arrays(memory_of(close).to_arrays(), 0.9).budgeted
