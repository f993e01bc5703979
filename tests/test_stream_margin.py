"""The stream threshold's margin: one standard error holds the target without asking for far more than it.

With two (the rule until now) the stream's own threshold sat at 0.98-0.99 for windows of 500-1,750 items and the
stream protocol answered about 98.5% on a 97.5% target (docs/learning.md "Calibrated on the stream")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_settings_text import described_rule as rule

from mcp_latent.judge.stream import (
    MIN_SHARPNESS,
    STREAM_MARGIN_ERRORS,
    stream_sharpness,
    stream_threshold,
)

RUNS = Path(__file__).resolve().parent.parent / "tools" / "results" / "stream_runs"
TARGET = 0.975  # tools/learning_curve.py's profile target


def test_one_standard_error_holds_the_target_on_a_calibrated_stream_where_none_does_not():
    # 400 streams of 600 verdicts whose p is right as often as it says; the escalated ones (p < 0.9) were taught,
    # so their outcome is known. Each stream's threshold is judged by how often the verdicts it answers were right.
    rng = np.random.default_rng(24)
    below = {0.0: 0, 1.0: 0, 2.0: 0}
    answered = {0.0: [], 1.0: [], 2.0: []}
    for _ in range(400):
        p = np.round(1 - rng.beta(0.6, 12, 600), 3)
        right = (rng.random(600) < p).astype(float)
        known = np.where(p < 0.9, right, np.nan)
        for margin in below:
            t = rule(p, known, 0.97, margin)
            assert t is not None
            below[margin] += right[p >= t].mean() < 0.97
            answered[margin].append(np.mean(p >= t))
    assert STREAM_MARGIN_ERRORS == 1.0
    # The code's rule is the one computed here at its margin.
    assert stream_threshold(p, 0.97, known) == rule(p, known, 0.97, STREAM_MARGIN_ERRORS)
    # No margin: the measured rate falls below the target in about half the streams; one standard error: in about
    # a sixth (a one-sided 84% bound), two: a fiftieth, paid for in coverage.
    assert below[0.0] > 150
    assert below[1.0] < 100
    assert below[2.0] < below[1.0] / 2
    assert np.mean(answered[1.0]) > np.mean(answered[2.0]) + 0.01


def _window(run: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    """A recorded stream run (tools/learning_curve.py, engine d78c215) as its server's StreamRecord held it after
    `n` items: the last 1,000 in-scope verdicts (p; outcome known for the escalated, which were taught), the gold
    outcome of all of them, and the sharpness the escalated verdicts' checks give."""
    lines = (RUNS / run / "items.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines[:n]]
    window = [i for i in items if i["reason"] != "out_of_scope"][-1000:]
    p = np.array([i["p"] for i in window])
    gold = np.array([i["best"] == i["gold"] for i in window], dtype=np.float64)
    escalated = np.array([i["label"] is None for i in window])
    checks = np.array([(i["p"], i["best"] == i["gold"]) for i in items if i["label"] is None and i["gold"]])[-1000:]
    return p, np.where(escalated, gold, np.nan), gold, stream_sharpness(checks[:, 0], checks[:, 1])


@pytest.mark.parametrize("run", ["banking77_2", "hwu64_3"])
def test_on_recorded_streams_the_threshold_meets_the_target_not_far_past_it(run):
    # The two runs whose threshold sat highest (0.991 and 0.998). At each 250th item from the 750th (at the 500th
    # two standard errors allowed none): the threshold the stream rule sets now, and how often the window's verdicts
    # answered at it were right by their gold label.
    now, before, agreement = [], [], []
    for n in range(750, 3001, 250):
        p, known, gold, sharpness = _window(run, n)
        assert sharpness is not None and sharpness >= MIN_SHARPNESS
        t = stream_threshold(p, TARGET, known, sharpness)
        two = rule(p, known, TARGET, 2.0, sharpness)
        assert t == pytest.approx(rule(p, known, TARGET, STREAM_MARGIN_ERRORS, sharpness))
        assert t is not None and two is not None
        now.append(t)
        before.append(two)
        agreement.append(gold[p >= t].mean())
    now, before, agreement = map(np.array, (now, before, agreement))
    assert np.all(now <= before + 1e-9)  # never asks for more than the old rule
    assert np.mean(before - now) > 0.02  # ...and asked for less on the whole
    assert np.mean(agreement) >= TARGET  # the answered verdicts still meet the target on the whole
    assert agreement.min() >= TARGET - 0.01  # ...and at every checkpoint within a point of it
    assert np.mean(agreement) < 0.99  # not far past it (two standard errors: 98-99% measured)


def test_the_stream_rule_runs_again_after_teaches_between_refits(settings, fruit_tools_profile):
    # A threshold used to be set only when a background refit ended; a recalibration on a loaded machine takes a
    # thousand stream items, and the server answered at 0.988 where the same rule on the same evidence had come down
    # to 0.919 (HWU64, d78c215 run 3, items 1,750-2,500). Now every STREAM_RESTATE_EVERY outcomes learnt by teaches
    # run the rule again on the snapshot serving now. Here no refit ever runs.
    from mcp_latent.judge.operating_point import MIN_THRESHOLD
    from mcp_latent.judge.stream import MIN_STREAM_CHECKS, MIN_STREAM_VERDICTS
    from mcp_latent.judge.stream_rule import STREAM_RESTATE_EVERY
    from mcp_latent.service.api import LatentService
    from tests.conftest import HashingEmbedder

    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    live = service.live["kind"]
    live._schedule_refit = lambda: None  # no background refit: only the restate can set a threshold
    texts = [f"apple {i} banana {i // 8} cherry {i % 8} pear" for i in range(2 * MIN_STREAM_VERDICTS)]
    best = {}
    for text in texts:
        verdict = service.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]
        best[text] = verdict["top"][0][0]
    assert len(live.stream.verdicts()[0]) >= MIN_STREAM_VERDICTS and live.stream.stream_threshold is None
    # The snapshot serving answers from a threshold an earlier refit's stream rule set, stricter than the evidence
    # now asks for (the teaches below all confirm the verdicts).
    fit_point = live.snapshot.calibration.threshold
    live.snapshot = live.snapshot.with_threshold(0.99, "stream")
    taught = 0
    for text in texts:  # each recorded verdict learns its outcome: its best label was right
        if taught == MIN_STREAM_CHECKS + STREAM_RESTATE_EVERY:
            break
        service.teach("kind", best[text], text=text)
        taught += 1
        assert live.stream.restate_due() == (live.stream._learnt >= STREAM_RESTATE_EVERY)
    assert live.refits == 0
    # The rule ran between refits: the stream threshold is set (p held on every check), and the snapshot serving
    # now answers from what it asks for: here the fit's own point (the stream asks for more, and the spot checks
    # answered at the fit's point all agreed: `online_threshold` keeps it), not the stale 0.99, which the rule
    # does not mistake for the fit's point either.
    assert live.stream.stream_threshold is not None and live.stream.stream_threshold >= MIN_THRESHOLD
    assert live.stream.online is None
    assert live.snapshot.threshold(True) == (pytest.approx(fit_point), "fit") and fit_point < 0.99
    assert live.snapshot.calibration.threshold == fit_point
    assert not live.stream.restate_due()
    service.close()


AFTER = Path(__file__).resolve().parent.parent / "tools" / "results" / "stream_after"


def _thresholds(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A recorded run (tools/learning_curve.py, engine 50bc7c5) at each 250th item from the 750th: the threshold the
    stream rule sets now and the one it set before 6 Dec (sharpness at most 1, fitted on every labelled verdict of
    the window), and how often the window's verdicts answered at each were right by their gold label."""
    items = [json.loads(line) for line in (AFTER / run / "items.jsonl").read_text().splitlines()]
    grid = np.linspace(0.25, 1.0, 76)
    now, before, agreement_now, agreement_before = [], [], [], []
    for n in range(750, 3001, 250):
        window = [i for i in items[:n] if i["reason"] != "out_of_scope"][-1000:]
        p = np.array([i["p"] for i in window])
        gold = np.array([i["best"] == i["gold"] for i in window], dtype=np.float64)
        known = np.where([i["label"] is None for i in window], gold, np.nan)
        checks = np.array([(i["p"], i["best"] == i["gold"]) for i in items[:n] if i["label"] is None and i["gold"]])
        checks = checks[-1000:]
        z = np.log(np.clip(checks[:, 0], 1e-6, 1 - 1e-6) / np.clip(1 - checks[:, 0], 1e-6, 1))[None, :] * grid[:, None]
        old = float(grid[np.argmax((checks[:, 1][None, :] * z - np.logaddexp(0.0, z)).sum(axis=1))])
        t_now = stream_threshold(p, TARGET, known, stream_sharpness(checks[:, 0], checks[:, 1]))
        t_before = stream_threshold(p, TARGET, known, old)
        assert t_now is not None and t_before is not None
        now.append(t_now)
        before.append(t_before)
        agreement_now.append(gold[p >= t_now].mean())
        agreement_before.append(gold[p >= t_before].mean())
    return tuple(map(np.array, (now, before, agreement_now, agreement_before)))


@pytest.mark.parametrize("run", ["banking77_s0", "banking77_s1", "banking77_s2"])
def test_an_underconfident_p_is_credited_and_the_answers_still_meet_the_target(run):
    # BANKING77's answers were right 97.9-99.3% of the last third at a 97.5% target while the sharpness could not
    # rise above 1: the stream threshold asks for less now, never more, and what it answers still meets the target.
    now, before, agreement, _ = _thresholds(run)
    assert np.all(now <= before + 1e-9)
    assert np.mean(before - now) > 0.005
    assert np.mean(agreement) >= TARGET and agreement.min() >= TARGET - 0.001


def test_on_banking77s_most_underconfident_run_the_threshold_comes_down_most():
    now, before, agreement, agreement_before = _thresholds("banking77_s2")
    assert np.mean(before - now) > 0.05  # 0.92 -> 0.85 on average from item 750
    assert np.mean(agreement_before) > 0.99 and np.mean(agreement) < np.mean(agreement_before)


@pytest.mark.parametrize("run", ["hwu64_s0", "hwu64_s1", "hwu64_s2"])
def test_an_overconfident_p_is_not_credited_for_what_the_escalated_verdicts_show(run):
    # HWU64's answered top is overconfident; its escalated verdicts do not show that, and sometimes show p less
    # sure than it should be: the rule credits that only beyond one standard error, so its answers stay within
    # half a point of the rule before.
    _, _, agreement, agreement_before = _thresholds(run)
    assert np.mean(agreement) >= np.mean(agreement_before) - 0.005
