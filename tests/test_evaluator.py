"""Calibration and abstention on synthetic cases whose answers are known."""

import hashlib
import json

import numpy as np
import pytest

from mcp_latent.eval.quality import expected_calibration_error
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.profiles.spec import ProfileSpec

DIM = 32


def clusters(n_per_label: int, spread: float, seed: int = 0, labels: int = 3):
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM, dtype=np.float32)[:labels] * 3
    x = np.concatenate([c + rng.normal(scale=spread, size=(n_per_label, DIM)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(labels), n_per_label)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def spec(labels=3, **kw):
    return ProfileSpec.model_validate(
        {"name": "syn", "labels": [{"name": f"l{i}", "examples": ["x"]} for i in range(labels)], **kw}
    )


def fit(x, y, **kw):
    return FittedProfile.fit(spec(**kw), x, [f"t{i}" for i in range(len(y))], y)


def test_separable_clusters_are_answered_confidently():
    x, y = clusters(40, 0.3)
    fitted = fit(x, y)
    tx, ty = clusters(30, 0.3, seed=1)
    verdicts = [fitted.verdict(v) for v in tx]
    assert sum(v.label == f"l{t}" for v, t in zip(verdicts, ty, strict=True)) / len(ty) > 0.97
    assert np.mean([v.p for v in verdicts]) > 0.9
    assert not any(v.unsure for v in verdicts[:10])


def test_overlapping_clusters_are_calibrated():
    # Heavy overlap: the right answer is only sometimes knowable, so p must track the hit rate.
    x, y = clusters(300, 1.6)
    fitted = fit(x, y, target_accuracy=0.9)
    tx, ty = clusters(400, 1.6, seed=7)
    probs = fitted.probabilities(tx)
    p, correct = probs.max(axis=1), probs.argmax(axis=1) == ty
    assert 0.45 < correct.mean() < 0.95  # a genuinely uncertain task
    assert expected_calibration_error(p, correct, bins=10) < 0.06
    answered = p >= fitted.calibration.threshold
    assert correct[answered].mean() > correct.mean()  # abstaining removes mistakes


def test_far_away_vector_is_out_of_scope():
    x, y = clusters(40, 0.3)
    fitted = fit(x, y)
    far = np.zeros(DIM, dtype=np.float32)
    far[-1] = 1.0
    verdict = fitted.verdict(far, detail=True)
    assert verdict.unsure and verdict.label is None and verdict.reason == "out_of_scope"
    assert verdict.detailed()["top"][0][0] in {"l0", "l1", "l2"}


def test_ordinal_profile_gives_expected_score():
    x, y = clusters(40, 0.3)
    s = ProfileSpec.model_validate(
        {"name": "o", "labels": [{"name": f"l{i}", "value": i, "examples": ["x"]} for i in range(3)]}
    )
    fitted = FittedProfile.fit(s, x, ["t"] * len(y), y)
    verdict = fitted.verdict(x[-1])
    assert verdict.score == pytest.approx(2.0, abs=0.2)


def test_fit_survives_save_and_load(tmp_path):
    x, y = clusters(20, 0.5)
    fitted = fit(x, y)
    fitted.save(tmp_path / "f.npz")
    loaded = FittedProfile.load(tmp_path / "f.npz", spec(), ["t"] * len(y))
    np.testing.assert_allclose(loaded.probabilities(x[:5]), fitted.probabilities(x[:5]), rtol=1e-5)
    assert loaded.calibration == fitted.calibration


def test_unseen_topics_are_flagged_at_the_target_rate():
    # 16 topics on a sphere; 12 go into the profile, 4 stay unseen. Neighbouring topics overlap a little, so the
    # in-scope floor alone (target 0) misses many unseen texts; the simulated cutoff must catch them while the
    # profile's own topics are still answered.
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(16, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def sample(topics, n):
        x = np.concatenate([c + rng.normal(scale=0.18, size=(n, DIM)) for c in centres[topics]])
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(len(topics)), n)

    x, y = sample(np.arange(12), 40)
    unseen, _ = sample(np.arange(12, 16), 50)
    seen, seen_y = sample(np.arange(12), 20)
    flagged = {}
    for target in (0.0, 0.9):
        fitted = fit(x, y, labels=12, target_out_of_scope_recall=target)
        flagged[target] = np.mean([fitted.verdict(v).unsure for v in unseen])
    # The recall target is met as far as the plain rule (the head alone, thresholded, no cutoff) does not then beat
    # the point on in-scope coverage and accuracy: every in-scope exemplar here is right, so the last points of
    # simulated recall (0.87 -> 0.9) would cost only right answers, and are not bought.
    assert fitted.calibration.cv_out_of_scope_recall >= 0.85
    # (the lowest cutoff and the threshold already flag most unseen texts at target 0 here: 0.80 against 0.835)
    assert flagged[0.9] >= 0.8 and flagged[0.9] >= flagged[0.0]
    verdicts = [fitted.verdict(v) for v in seen]
    answered = [(v.label, f"l{t}") for v, t in zip(verdicts, seen_y, strict=True) if not v.unsure]
    assert len(answered) / len(verdicts) >= 0.95
    assert np.mean([got == want for got, want in answered]) >= 0.98
    # A user who wants more recall at that price fixes the cutoff (here: the 5% least similar exemplars' level).
    cutoff = float(np.quantile(fitted.calibration.evidence.nearest, 0.05))
    insisted = fit(x, y, labels=12, min_similarity=cutoff)
    assert np.mean([insisted.verdict(v).unsure for v in unseen]) >= 0.9


def test_few_labels_keep_the_in_scope_cutoff():
    x, y = clusters(40, 0.3)  # 3 labels: too few to hide some and call them "other topics"
    cal = fit(x, y).calibration
    assert cal.cv_out_of_scope_recall is None


def test_fixed_settings_of_zero_are_kept_when_too_small_to_cross_validate():
    x, y = clusters(1, 0.3)  # one exemplar per label: no held-out folds, so the default calibration applies
    cal = fit(x, y, threshold=0.0, min_similarity=0.0).calibration
    assert cal.cv_accuracy is None and (cal.threshold, cal.min_similarity) == (0.0, 0.0)


def test_a_moved_target_moves_the_point_without_a_refit(tmp_path):
    x, y = clusters(80, 1.4)  # overlapping clusters: the target accuracy decides how much is answered
    fitted = fit(x, y, target_accuracy=0.75)
    fitted.save(tmp_path / "f.npz")
    stricter = spec(target_accuracy=0.95)
    loaded = FittedProfile.load(tmp_path / "f.npz", stricter, ["t"] * len(y))
    np.testing.assert_array_equal(loaded.weights, fitted.weights)  # the same fit...
    assert loaded.calibration.threshold > fitted.calibration.threshold  # ...answering less, more accurately
    assert loaded.calibration.cv_coverage < fitted.calibration.cv_coverage
    assert loaded.calibration.cv_answered_accuracy >= 0.95 > fitted.calibration.cv_answered_accuracy
    # The fit cache is keyed by what a fit learns from, so a new target finds the stored fit.
    assert spec(target_accuracy=0.75).fit_hash() == stricter.fit_hash() != spec(labels=4).fit_hash()
    assert spec(target_accuracy=0.75).content_hash() != stricter.content_hash()


def test_fixed_threshold_overrides_the_chosen_one_and_is_estimated_as_it_runs():
    x, y = clusters(80, 1.4)
    chosen = fit(x, y, target_accuracy=0.75).calibration
    fixed = fit(x, y, target_accuracy=0.75, threshold=0.99).calibration
    assert fixed.threshold == 0.99 and fixed.cv_coverage < chosen.cv_coverage


def test_without_evidence_an_edited_fixed_threshold_applies_on_load(tmp_path):
    x, y = clusters(1, 0.3)  # too small to cross-validate: no evidence, the default calibration
    fit(x, y).save(tmp_path / "f.npz")
    loaded = FittedProfile.load(tmp_path / "f.npz", spec(threshold=0.7, min_similarity=0.2), ["t"] * len(y))
    assert (loaded.calibration.threshold, loaded.calibration.min_similarity) == (0.7, 0.2)


def with_off_topic(x, y, n: int, seed: int = 5):
    """The clusters plus n texts of an abstain label beside l0's: near enough to pass the in-scope cutoff (like a
    question about passwords beside the security exemplars)."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(DIM, dtype=np.float32)
    centre[0], centre[3] = 1.0, 0.5
    off = centre + rng.normal(scale=0.1, size=(n, DIM))
    off = (off / np.linalg.norm(off, axis=1, keepdims=True)).astype(np.float32)
    return off, np.concatenate([x, off]), np.concatenate([y, np.full(n, 3)])


def abstain_spec(**kw):
    labels = [{"name": f"l{i}", "value": i, "examples": ["x"]} for i in range(3)]
    return ProfileSpec.model_validate(
        {"name": "a", "labels": [*labels, {"name": "off_topic", "abstain": True, "examples": ["x"]}], **kw}
    )


def test_an_abstain_label_makes_texts_like_it_out_of_scope_and_is_never_the_answer():
    x, y = clusters(40, 0.3)
    _, ax, ay = with_off_topic(x, y, 40)
    fitted = FittedProfile.fit(abstain_spec(), ax, ["t"] * len(ay), ay)
    plain = FittedProfile.fit(abstain_spec().model_copy(update={"labels": abstain_spec().labels[:3]}), x, [], y)
    off_topic, _, _ = with_off_topic(x, y, 50, seed=9)
    verdicts = [fitted.verdict(v, detail=True) for v in off_topic]
    assert np.mean([v.unsure and v.reason == "out_of_scope" for v in verdicts]) >= 0.95
    assert np.mean([plain.verdict(v).unsure for v in off_topic]) < 0.5  # the in-scope cutoff alone lets them in
    # p stays the best answer's probability (low: it does not read as confidence); top lists answers only
    assert max(v.p for v in verdicts) < 0.5
    assert all(row[0] != "off_topic" for v in verdicts for row in v.detailed()["top"])
    assert all(0.0 <= v.score <= 2.0 for v in verdicts)
    # the profile's own texts are still answered, and the fit estimated its out-of-scope recall on the label
    tx, ty = clusters(30, 0.3, seed=1)
    answered = [(v.label, f"l{t}") for v, t in zip(map(fitted.verdict, tx), ty, strict=True) if not v.unsure]
    assert len(answered) / len(ty) >= 0.95 and all(got == want for got, want in answered)
    assert fitted.calibration.cv_out_of_scope_recall >= 0.95
    assert 0.95 <= fitted.calibration.cv_accuracy  # measured on the answer labels' exemplars only


def test_abstain_labels_take_no_value_and_leave_two_answers():
    labels = [{"name": "a", "value": 0, "examples": ["x"]}, {"name": "b", "value": 1, "examples": ["y"]}]
    off = {"name": "none", "abstain": True, "examples": ["z"]}
    assert ProfileSpec.model_validate({"name": "p", "labels": [*labels, off]}).ordinal
    with pytest.raises(ValueError, match="abstain"):
        ProfileSpec.model_validate({"name": "p", "labels": [*labels, {**off, "value": 2}]})
    with pytest.raises(ValueError, match="at least 2 labels"):
        ProfileSpec.model_validate({"name": "p", "labels": [labels[0], off]})


def test_files_without_abstain_labels_keep_their_hashes():
    # Cached fits are keyed by fit_hash: adding the field must not refit every existing profile.
    s = spec()
    data = s.model_dump(mode="json")
    for label in data["labels"]:
        del label["abstain"]
        del label["groups"]  # nor adding `groups` (issue 24): the hash is that of a file from before both fields
        del label["pair_examples"]  # nor adding the memory's `pair_examples` (empty: left out)
    del data["abstain_until_supported"]  # nor adding the later `abstain_until_supported` (off: left out)
    del data["scope_gate"]  # nor adding `scope_gate` (None: left out)
    assert (
        s.content_hash()
        == hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    )
    assert (
        abstain_spec().fit_hash() != abstain_spec().model_copy(update={"labels": abstain_spec().labels[:3]}).fit_hash()
    )
