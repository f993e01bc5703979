"""Writer groups (issue 24 item 3): a fit whose exemplars name their writer holds each small writer out whole, and
chooses its temperature and operating point on those held-out writers, so what it answers on text by a writer it
never saw is as right as it promises. Synthetic vectors: one prolific writer whose labels are easy, and many
small writers whose texts sit off the prolific one's clusters and are harder (the shipped profiles' situation:
one synthetic writer, a few hundred real texts from many sources)."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_latent.judge.decision import decide
from mcp_latent.judge.grouping import MAX_GROUP_SHARE_OF_FOLD, grouped_folds, spec_groups
from mcp_latent.judge.selection import fit_calibration
from mcp_latent.profiles.spec import ProfileSpec

DIM, LABELS = 24, 3


def _writer(rng, means, n_per_label, noise, shift):
    x = np.concatenate([means[label] + shift + noise * rng.normal(size=(n_per_label, DIM)) for label in range(LABELS)])
    y = np.repeat(np.arange(LABELS), n_per_label)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def _foreign(rng, means, groups, per_label):
    """Small writers, each with its own style offset and noisier texts."""
    parts = [_writer(rng, means, per_label, 2.2, 1.2 * rng.normal(size=DIM)) for _ in range(groups)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _profile(seed: int):
    rng = np.random.default_rng(seed)
    means = 1.0 * rng.normal(size=(LABELS, DIM))
    main_x, main_y = _writer(rng, means, 300, 0.35, 0.0)
    foreign_x, foreign_y = _foreign(rng, means, 24, 5)  # 24 writers x 15 texts
    test_x, test_y = _foreign(rng, means, 60, 5)  # writers the fit never saw
    vectors = np.concatenate([main_x, foreign_x])
    y = np.concatenate([main_y, foreign_y])
    texts = [f"text {i}" for i in range(len(y))]
    group = [""] * len(main_y) + [f"writer{i // (LABELS * 5)}" for i in range(len(foreign_y))]
    labels = []
    for label in range(LABELS):
        own = np.nonzero(y == label)[0]
        # grouped exemplars first (`groups` covers a prefix of `examples`)
        own = sorted(own, key=lambda i: group[i] == "")
        labels.append(
            {
                "name": f"l{label}",
                "examples": [texts[i] for i in own],
                "groups": [group[i] for i in own if group[i]],
            }
        )
    spec = ProfileSpec(name="t", target_accuracy=0.9, labels=labels)
    order = [i for label in range(LABELS) for i in sorted(np.nonzero(y == label)[0], key=lambda i: group[i] == "")]
    return spec, vectors[order], y[order], [texts[i] for i in order], test_x, test_y


def _answered_accuracy(calibration, vectors, y, test_x, test_y):
    """Answered accuracy and coverage on the unseen writers, by the rule the server runs (head + kNN; the texts'
    words are unique ids, so the words expert, if chosen at all, is left out here as it carries nothing)."""
    from mcp_latent.judge.ensemble import KNN_K, ensemble_logits, exact_neighbours, fit_head, knn_votes, softmax

    weights, bias = fit_head(vectors, y, LABELS, calibration.c)
    ids, sims = exact_neighbours(test_x, vectors, KNN_K)
    votes = knn_votes(sims, y[ids], LABELS)
    logits = ensemble_logits(test_x @ weights + bias, votes, calibration.knn_weight, None, 0.0)
    probs = softmax(logits / calibration.temperature)
    decisions = decide(probs, sims[:, 0], calibration.threshold, calibration.min_similarity)
    answered = decisions.answered
    return float((decisions.best[answered] == test_y[answered]).mean()), float(answered.mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_held_out_writers_keep_the_promise_that_one_writers_cross_validation_breaks(seed):
    spec, vectors, y, texts, test_x, test_y = _profile(seed)
    ungrouped = ProfileSpec.model_validate(
        {**spec.model_dump(), "labels": [{**label.model_dump(), "groups": []} for label in spec.labels]}
    )
    # Without groups: stratified folds, dominated by the easy writer; the promise fails on unseen writers.
    before = fit_calibration(vectors, y, LABELS, ungrouped, texts)
    accuracy_before, _ = _answered_accuracy(before, vectors, y, test_x, test_y)
    assert before.held_out_groups == 0.0
    assert accuracy_before < 0.85
    # With groups: chosen on held-out writers, the promise holds on writers never seen (within noise).
    after = fit_calibration(vectors, y, LABELS, spec, texts)
    assert after.held_out_groups == 1.0
    accuracy_after, coverage_after = _answered_accuracy(after, vectors, y, test_x, test_y)
    assert accuracy_after >= 0.87 and accuracy_after > accuracy_before
    assert coverage_after > 0.1  # it still answers
    assert after.threshold > before.threshold


def test_grouped_folds_hold_small_groups_out_whole_and_split_the_big_writer():
    y = np.repeat([0, 1], 100)
    groups = ["main"] * 160 + [f"g{i // 5}" for i in range(40)]
    y = np.array([0, 1] * 80 + [0] * 20 + [1] * 20)
    folds, foreign = grouped_folds(y, groups, 5)
    assert foreign.sum() == 40 and not foreign[:160].any()  # "main" is too big to hold out (> half a fold)
    assert 160 > MAX_GROUP_SHARE_OF_FOLD * 200 / 5
    names = np.array(groups)
    for fold in folds:
        for group in {f"g{i}" for i in range(8)}:
            members = set(np.nonzero(names == group)[0])
            assert members <= set(fold) or not (members & set(fold))  # a small group is never split
        assert set(y[fold]) == {0, 1}
    assert sorted(np.concatenate(folds)) == list(range(200))


def test_groups_are_optional_and_read_by_text():
    spec = ProfileSpec(
        name="t",
        labels=[{"name": "a", "examples": ["x", "y"], "groups": ["w1"]}, {"name": "b", "examples": ["z"]}],
    )
    assert spec_groups(spec, ["x", "y", "z", "taught later"], 4) == ["w1", "", "", ""]
    plain = ProfileSpec(name="t", labels=[{"name": "a", "examples": ["x"]}, {"name": "b", "examples": ["z"]}])
    assert spec_groups(plain, ["x", "z"], 2) is None
    with pytest.raises(ValueError, match="one group per example"):
        ProfileSpec(name="t", labels=[{"name": "a", "examples": ["x"], "groups": ["1", "2"]}, {"name": "b"}])
