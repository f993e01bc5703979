"""The scope gate (judge/scope_gate.py, `scope_gate` in a profile file): a binary "in scope at all?" decision fitted
on the profile's own exemplars, which makes a text it stops unsure (reason out_of_scope) whatever the labels say."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.scope_gate import ScopeGate
from mcp_latent.profiles.fitter import flatten
from mcp_latent.profiles.spec import ProfileSpec

DEPLOY = ["deploy", "release", "rollout", "canary", "cluster", "service", "pipeline", "migration", "database"]
HIRE = ["hire", "recruit", "onboard", "salary", "interview", "manager", "team", "offer", "promotion"]
CHAT = ["thanks", "lunch", "weekend", "coffee", "birthday", "welcome", "cheers", "holiday", "morning"]


def texts_from(words: list[str], n: int, seed: int, extra: tuple[str, ...] = ()) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join([*rng.choice(words, size=4, replace=False), *extra, f"w{seed}x{i}"]) for i in range(n)]


def labels(off: bool = True) -> list[dict]:
    out = [
        {"name": "deploy", "examples": texts_from(DEPLOY, 40, 1)},
        {"name": "hire", "examples": texts_from(HIRE, 40, 2)},
    ]
    if off:
        out.append({"name": "off_topic", "abstain": True, "examples": texts_from(CHAT, 40, 3)})
    return out


def fit(fake_embedder, **extra) -> FittedProfile:
    spec = ProfileSpec.model_validate({"name": "g", "labels": labels(), "min_similarity": -1.0, **extra})
    texts, y = flatten(spec)
    return FittedProfile.fit(spec, fake_embedder.embed(texts), texts, y)


def test_the_gate_stops_texts_like_the_abstain_exemplars_and_says_so(fake_embedder):
    fitted = fit(fake_embedder, scope_gate=0.98)
    assert fitted.gate is not None and fitted.gate.recall == 0.98
    chat = "thanks everyone cheers lunch holiday"
    verdict = fitted.verdict(fake_embedder.embed([chat])[0], text=chat, detail=True)
    assert verdict.unsure and verdict.reason == "out_of_scope" and verdict.label is None
    shown = verdict.detailed()["scope"]
    assert shown["in_scope"] is False and shown["p"] < shown["threshold"]
    work = "deploy the canary release to the cluster"
    answered = fitted.verdict(fake_embedder.embed([work])[0], text=work, detail=True)
    assert answered.label == "deploy" and answered.detailed()["scope"]["in_scope"] is True
    # A handle stored without its text is gated from the vector alone, at the threshold chosen for that.
    textless = fitted.verdict(fake_embedder.embed([chat])[0])
    assert textless.unsure and textless.scope[1] == fitted.gate.threshold_no_text


def test_the_gate_lets_through_the_in_scope_share_it_was_fitted_for(fake_embedder):
    """Fresh in-scope texts (other words, same topics) pass at about the recall the gate was asked for."""
    fitted = fit(fake_embedder, scope_gate=0.98)
    fresh = texts_from(DEPLOY, 50, 11) + texts_from(HIRE, 50, 12)
    decisions, _, _ = fitted.judge(fake_embedder.embed(fresh), texts=fresh)
    assert (decisions.scope_p >= decisions.scope_threshold).mean() >= 0.9
    chat = texts_from(CHAT, 50, 13)
    decisions, _, _ = fitted.judge(fake_embedder.embed(chat), texts=chat)
    assert (decisions.scope_p < decisions.scope_threshold).mean() >= 0.9
    assert all(reason == "out_of_scope" for reason in decisions.reason[decisions.scope_p < decisions.scope_threshold])


def test_without_scope_gate_nothing_changes(fake_embedder):
    plain = fit(fake_embedder)
    assert plain.gate is None
    text = "thanks everyone cheers lunch holiday"
    verdict = plain.verdict(fake_embedder.embed([text])[0], text=text, detail=True)
    assert verdict.scope is None and "scope" not in verdict.detailed()
    # Files without the field keep their hashes (and cached fits); setting it is a new fit.
    spec = ProfileSpec.model_validate({"name": "g", "labels": labels()})
    assert "scope_gate" not in spec._canonical()
    assert spec.fit_hash() != spec.model_copy(update={"scope_gate": 0.98}).fit_hash()


def test_the_gate_survives_save_load_and_learning(tmp_path, fake_embedder):
    fitted = fit(fake_embedder, scope_gate=0.98)
    queries = texts_from(CHAT, 10, 21) + texts_from(DEPLOY, 10, 22)
    vectors = fake_embedder.embed(queries)
    before, _, _ = fitted.judge(vectors, texts=queries)
    fitted.save(tmp_path / "fit.npz")
    loaded = FittedProfile.load(tmp_path / "fit.npz", fitted.spec, fitted.texts)
    after, _, _ = loaded.judge(vectors, texts=queries)
    np.testing.assert_allclose(after.scope_p, before.scope_p, rtol=1e-5, atol=1e-6)
    assert after.scope_threshold == before.scope_threshold and list(after.reason) == list(before.reason)
    # A taught decision is answered as taught even where the gate stops the text (memory comes after the gate).
    taught_text = "thanks cheers lunch deploy weekend"
    vector = fake_embedder.embed([taught_text])
    assert fitted.verdict(vector[0], text=taught_text).unsure
    learnt = fitted.with_exemplars(vector, np.array([0]), [taught_text])
    assert learnt.gate is fitted.gate
    verdict = learnt.verdict(vector[0], text=taught_text, detail=True)
    assert verdict.label == "deploy" and verdict.memory is not None


def test_scope_gate_needs_an_abstain_label():
    with pytest.raises(ValueError, match="scope_gate.*abstain = true"):
        ProfileSpec.model_validate({"name": "g", "labels": labels(off=False), "scope_gate": 0.98})
    with pytest.raises(ValueError):
        ProfileSpec.model_validate({"name": "g", "labels": labels(), "scope_gate": 1.5})


def test_too_few_abstain_exemplars_fit_no_gate(fake_embedder):
    vectors = fake_embedder.embed(["a b", "c d", "e f", "g h"])
    assert ScopeGate.fit(vectors, np.array([True, True, True, False]), 0.98) is None


# Written for this test (not exemplars, not held-out texts): texts that propose nothing, on topics the shipped
# category profile knows, and real proposals. Before the gate and the work-chatter exemplars of issue 24, category
# answered the first two and the question ("engineering", "finance", "engineering") and risk the question ("low").
NOT_PROPOSALS = [
    "The rollout of billing-api 7.3 to us-east completed at 14:20 and error rates are flat.",
    "Quarterly close wrapped up yesterday; the ledger for Q1 is locked.",
    "thank you all for covering my on-call shift last weekend, really appreciated",
    "which dashboard shows the p95 latency of the export service?",
]
PROPOSALS = [  # (text, risk, category)
    ("disable the firewall and give every contractor admin access to production", "high", "security"),
    (
        "Move the nightly batch jobs from the old VM to Kubernetes CronJobs, one job at a time, keeping the VM "
        "crontab as a fallback for two weeks.",
        "medium",
        "engineering",
    ),
    (
        "Raise list prices 8% for new customers from next quarter; existing contracts keep their rate until renewal.",
        "medium",
        "finance",
    ),
]


def test_shipped_profiles_abstain_on_texts_that_propose_nothing_and_answer_proposals(tmp_path, warm_profile_cache):
    """Real model, shipped profiles, through LatentService.evaluate (what the `evaluate` tool runs)."""
    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    service = LatentService(Settings(data_dir=tmp_path / "d", profile_cache_dir=warm_profile_cache))
    service.start()
    service.wait_ready()
    try:
        for text in NOT_PROPOSALS:
            verdicts = service.evaluate(text=text, profiles=["risk", "roi", "category"], detail=True)["verdicts"]
            for name, verdict in verdicts.items():
                assert verdict["unsure"] and verdict["reason"] == "out_of_scope", (text, name, verdict)
                assert verdict["scope"]["in_scope"] is False, (text, name, verdict)
        for text, risk, category in PROPOSALS:
            verdicts = service.evaluate(text=text, profiles=["risk", "roi", "category"], detail=True)["verdicts"]
            assert all(v["scope"]["in_scope"] for v in verdicts.values()), (text, verdicts)
            assert (verdicts["risk"]["label"], verdicts["category"]["label"]) == (risk, category), (text, verdicts)
    finally:
        service.close()
