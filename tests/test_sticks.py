"""A taught decision sticks (issue 24): a taught text and a near copy of it are answered as taught from the next
call, a minimal-pair opposite is not; teaching that confirms never makes a profile shyer; spot checks below the
target raise the threshold just to meet it; `detail` says which threshold applied and why. Fake embedder here
(fast); through a real stdio server with the real model: test_e2e_sticks.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import FRUIT, TOOLS, HashingEmbedder, write_profile

from mcp_latent.judge import spot_checks as spot_reading
from mcp_latent.judge.memory import Memory
from mcp_latent.judge.threshold import MIN_HOLD_CHECKS, online_threshold
from mcp_latent.service.api import LatentService

# A small rollout profile with minimal pairs: the same change with and without its safeguards, labelled apart.
CHANGES = ["billing service", "search cluster", "auth gateway", "payments queue", "user database", "mail relay"]
SAFE = [f"deploy the {c} update with a rollback plan and a canary step" for c in CHANGES] + [
    f"ship the {c} patch after staging tests and review" for c in CHANGES
]
RISKY = [f"deploy the {c} update without any rollback plan or canary step" for c in CHANGES] + [
    f"ship the {c} patch straight to production skipping staging tests" for c in CHANGES
]


@pytest.fixture
def rollout(settings):
    write_profile(settings.user_profiles_dir, "rollout", {"safe": SAFE, "risky": RISKY}, "min_similarity = -1.0")
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    yield service
    service.close()


def judged(service, text, profile="rollout"):
    return service.evaluate(text=text, profiles=[profile], detail=True)["verdicts"][profile]


def test_a_taught_text_and_a_near_copy_are_answered_as_taught_at_once_a_minimal_pair_opposite_is_not(rollout):
    taught = "migrate the ledger archive tonight with a rollback plan and a canary step"
    near_copy = "please migrate the ledger archive tonight with a rollback plan and a canary step"
    opposite = "migrate the ledger archive tonight without any rollback plan or canary step"
    before = judged(rollout, taught)
    label = "risky" if before["top"][0][0] == "safe" else "safe"  # against what the profile leaned to
    rollout.teach("rollout", label, text=taught)
    memory = rollout.live["rollout"].snapshot.memory
    vectors = HashingEmbedder().embed([taught, near_copy, opposite])
    assert float(vectors[0] @ vectors[2]) < memory.radius <= float(vectors[0] @ vectors[1])
    for text in (taught, near_copy):  # no refit waited for
        verdict = judged(rollout, text)
        assert verdict["label"] == label and "unsure" not in verdict, verdict
        assert verdict["memory"]["taught"] is True and verdict["memory"]["similarity"] >= memory.radius
    assert "memory" not in judged(rollout, opposite)  # a minimal pair is not a copy: the profile judges it
    # The radius is fitted above the profile's closest minimal pair, so its own exemplars' pairs are no copies.
    pair = HashingEmbedder().embed([SAFE[0], RISKY[0]])
    assert memory.radius > float(pair[0] @ pair[1])


def test_of_conflicting_teaches_of_one_text_the_latest_wins(rollout):
    text = "rotate the signing keys for the mail relay on friday night"
    for label in ("safe", "risky", "safe", "risky"):
        rollout.teach("rollout", label, text=text)
        assert judged(rollout, text)["label"] == label
    assert rollout.wait_refitted(60)
    assert judged(rollout, text)["label"] == "risky"  # and after the background refit too


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_teach_on_another_server_is_answered_as_taught_here(settings, store, request):
    write_profile(settings.user_profiles_dir, "rollout", {"safe": SAFE, "risky": RISKY}, "min_similarity = -1.0")
    settings.store_poll_seconds = 0.05
    if store == "postgres":  # a real PostgreSQL, a schema of this test's own
        settings.store_url = request.getfixturevalue("postgres").url
        settings.store_schema = request.getfixturevalue("pg_schema")
    first, second = (LatentService(settings, embedder=HashingEmbedder()) for _ in range(2))
    first.start()
    second.start()
    text = "turn off the audit log on the user database to save disk"
    for label in ("safe", "risky"):  # a conflicting teach later: the latest wins on both servers
        first.teach("rollout", label, text=text)
        deadline = time.monotonic() + 30
        while judged(second, text).get("label") != label:
            assert time.monotonic() < deadline, "the other server never answered as taught"
            time.sleep(0.05)
        assert judged(second, text)["memory"]["taught"] is True
    # Conflicting teaches on both servers at once: the one stored last wins on both, whatever each saw first.
    other = "drop the payments queue backlog without a backup"
    first.teach("rollout", "safe", text=other)
    second.teach("rollout", "risky", text=other)
    deadline = time.monotonic() + 30
    while [judged(s, other).get("label") for s in (first, second)] != ["risky", "risky"]:
        assert time.monotonic() < deadline, [judged(s, other) for s in (first, second)]
        time.sleep(0.05)
    time.sleep(0.5)  # several polls later it still holds
    assert [judged(s, other)["label"] for s in (first, second)] == ["risky", "risky"]
    first.close()
    second.close()


def test_memory_radius_rises_above_a_minimal_pair_taught_later():
    vectors = HashingEmbedder().embed(SAFE + RISKY)
    y = np.array([0] * len(SAFE) + [1] * len(RISKY))
    memory = Memory.fit(vectors, y, 0.9)
    new = HashingEmbedder().embed(["deploy the billing service update with a rollback plan and a canary"])
    grown = memory.with_rows(vectors, y, new, np.array([1]))  # nearly SAFE[0], taught the other label
    closest = float(new[0] @ vectors[0])
    assert memory.radius <= closest < grown.radius


def test_detail_shows_the_threshold_and_its_source(service):
    verdict = service.evaluate(text="apple banana", profiles=["kind"], detail=True)["verdicts"]["kind"]
    value, source = verdict["threshold"]
    assert source == "fit" and value == pytest.approx(service.live["kind"].snapshot.calibration.threshold, abs=1e-3)
    stats = service.profile_stats()["stats"]["kind"]
    assert stats["operating"]["threshold"] == verdict["threshold"]


def test_a_fixed_threshold_is_shown_as_fixed(settings):
    write_profile(settings.user_profiles_dir, "rollout", {"safe": SAFE, "risky": RISKY}, "threshold = 0.8")
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    assert judged(service, "deploy the mail relay")["threshold"] == [0.8, "fixed"]
    service.close()


def answered_share(verdicts) -> float:
    return sum("unsure" not in v for v in verdicts) / len(verdicts)


def test_teaching_that_confirms_never_makes_a_profile_shyer(settings):
    # The stream's p-based estimate asked for a higher threshold than the fit's while the taught texts confirmed
    # the answers, and the refit answered from it: coverage on texts nobody taught fell (shipped category: 80% ->
    # 39% after 80 mostly confirming teaches). Here: 300 verdicts at p 0.6-1.0 recorded, 60 of them answered and
    # confirmed by a teach; the stream asks for about 0.9, the fit's point stays.
    write_profile(settings.user_profiles_dir, "kind", {"fruit": FRUIT, "tools": TOOLS}, "target_accuracy = 0.95")
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    live = service.live["kind"]
    fit = live.snapshot.calibration.threshold
    rng = np.random.default_rng(0)
    p = rng.uniform(0.6, 1.0, 300)
    for value in p:
        live.stream.observe(rng.standard_normal(64).astype(np.float32), float(value), True, "fruit")
    live.stream.checks.extend((float(value), True) for value in p[:60])  # every taught text's verdict was right
    live.stream.spot.extend((float(value), True) for value in p[:60])  # and answered: every spot check agreed
    probes = [f"apple hammer wrench {i}" for i in range(50)]
    before = [judged(service, t, "kind") for t in probes]
    service.teach("kind", "fruit", text="ripe mango papaya")
    assert service.wait_refitted(60)
    asked = live.stream.stream_threshold  # what the refit used to answer at
    assert asked is not None and asked > fit
    assert live.snapshot.threshold(True) == (fit, "fit")
    after = [judged(service, t, "kind") for t in probes]
    assert answered_share(after) >= answered_share(before) - 0.02
    assert service.profile_stats()["stats"]["kind"]["operating"]["checked_agreement"] == 1.0
    service.close()


def spot_checks(n=400, seed=1):
    """Spot checks (p, right) below a 0.9 target at p >= 0.55, above it from about p 0.8."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.5, 1.0, n)
    return p, np.where(p >= 0.8, rng.random(n) < 0.97, rng.random(n) < 0.6).astype(float)


def test_spot_checks_below_the_target_raise_the_threshold_and_stats_say_so(settings, fruit_tools_profile):
    settings.stream_calibration_window = 1000
    service = LatentService(settings, embedder=HashingEmbedder())
    service.start()
    live = service.live["kind"]
    fit = judged(service, "apple hammer", "kind")["threshold"]
    p, right = spot_checks()
    live.stream.spot.extend(zip(p, right.astype(bool), strict=True))  # 400 answers' spot checks
    service.teach("kind", "fruit", text="ripe mango papaya")  # a refit takes the evidence
    assert service.wait_refitted(60)
    stats = service.profile_stats()["stats"]["kind"]["operating"]
    threshold, source = stats["threshold"]
    assert source == "spot checks" and threshold > fit[0]
    p, right = np.array(live.stream.spot, dtype=float).T  # and the taught text's own, if it was answered
    served = live.stream.online[0]
    prior = live.snapshot.calibration.cv_answered_accuracy  # the fit's promise, the checks' prior
    assert within_target(p, right, served, 0.9, prior) and not within_target(p, right, p[p < served].max(), 0.9, prior)
    said = stats["spot_checks"]  # when and why it moved
    assert said["moved"]["to"] == threshold and said["moved"]["from"] == said["at_fit"]["threshold"]
    assert said["at_fit"]["p_below"] >= spot_reading.SPOT_CHECK_CONFIDENCE and "moved to" in said["why"]
    answered = p >= served  # what the stats report: the spot checks at the threshold answered at now
    assert stats["checked"] == answered.sum() and stats["checked_agreement"] == round(right[answered].mean(), 3)
    assert judged(service, "apple hammer", "kind")["threshold"] == stats["threshold"]
    service.close()


def within_target(p, right, threshold, target, prior=None) -> bool:
    """Whether the spot checks answered at `threshold` meet the target: their agreement, with the fit's promise
    (`prior`; None: the target) as `spot_checks.PRIOR_CHECKS` checks, at least the target."""
    answered = p >= threshold
    promise = spot_reading.prior_agreement(prior, target)
    k, n = right[answered].sum(), answered.sum()
    return (spot_reading.PRIOR_CHECKS * promise + k) / (spot_reading.PRIOR_CHECKS + n) >= target - 1e-12


def test_below_target_the_threshold_moves_to_meet_it_not_past_it():
    p, right = spot_checks()
    fit, target = 0.55, 0.9
    assert right[p >= fit].mean() < target
    threshold, source = online_threshold(fit, target, None, p, right)
    assert source == "spot checks" and threshold > fit
    assert within_target(p, right, threshold, target)  # meets it (the checks' estimate, the fit's promise included)
    assert not within_target(p, right, p[p < threshold].max(), target)  # and the next lower point would not
    assert threshold < 0.85  # not past it: the checks are right 97% of the time from 0.8


def test_confirming_spot_checks_keep_a_fitted_threshold_and_let_the_stream_lower_it():
    p = np.linspace(0.6, 1.0, 100)
    right = np.ones(100)
    assert online_threshold(0.7, 0.9, 0.85, p, right) is None  # the stream asked for more: the fit's stays
    assert online_threshold(0.7, 0.9, 0.62, p, right) == (0.62, "stream")  # and for less: taken
    assert online_threshold(0.5, 0.9, 0.85, p, right, fitted=False) == (0.85, "stream")  # a default: the stream's


def test_a_few_confirming_spot_checks_already_keep_the_stream_from_raising_the_fit():
    # The realistic proposals (issue 24): risk's 27 spot checks agreed 24 times (89%, target 90%), too few to move
    # it, and the stream asked for 0.98: the fit's point stays (before, the stream's applied and untaught coverage
    # fell from 30% to 7.5%).
    p = np.linspace(0.87, 1.0, 27)
    right = np.ones(27)
    right[[0, 9, 18]] = 0
    assert online_threshold(0.864, 0.9, 0.98, p, right) is None
    # Too few to say anything (fewer than MIN_HOLD_CHECKS), or a few that show it below the target: the stream's.
    assert online_threshold(0.864, 0.9, 0.98, p[: MIN_HOLD_CHECKS - 1], right[: MIN_HOLD_CHECKS - 1]) == (
        0.98,
        "stream",
    )
    wrong = right.copy()
    wrong[::2] = 0
    assert online_threshold(0.864, 0.9, 0.98, p, wrong) == (0.98, "stream")


def test_twenty_spot_checks_below_the_target_already_move_it_and_say_why():
    # Roi on the held-out proposals (seed 1): 13 of 17 checks agreed (target 90%); a move up needed 30 checks, so
    # the stream's 0.991 applied and untaught coverage fell from 27.5% to 1.4%. Now: to where the checks meet it.
    p = np.linspace(0.82, 0.99, 20)
    right = np.ones(20)
    right[[0, 2, 4, 6, 8]] = 0  # the five least confident of the lower half wrong: 75%
    threshold, source = online_threshold(0.817, 0.9, 0.991, p, right, prior=0.929)
    assert source == "spot checks" and 0.817 < threshold <= p[9]  # the lowest point whose checks meet it
    reading = spot_reading.read(0.817, 0.9, p, right, spot_reading.prior_agreement(0.929, 0.9))
    assert reading.shows_below() and "moved to" in spot_reading.describe(reading, 0.9, threshold)
    # ten or more that do not show it below keep the fit's point against the stream's 0.991
    right[[0, 2, 4, 6]] = 1
    assert online_threshold(0.817, 0.9, 0.991, p, right, prior=0.929) is None
