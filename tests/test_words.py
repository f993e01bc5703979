"""The words expert: n-gram naive Bayes beside the embedding, weighed by cross-validation, on cases whose answer is
known (labels that only a word decides, vectors that carry no label at all)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.judge.words import WordsModel, featurize
from mcp_latent.profiles.spec import ProfileSpec

DIM = 32
FILLER = "the team wants to ship the quarterly change for the billing service next week".split()


def spec(**kw) -> ProfileSpec:
    labels = [{"name": name, "examples": ["x"]} for name in ("safe", "unsafe")]
    return ProfileSpec.model_validate({"name": "words", "labels": labels, **kw})


def keyword_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts whose label is decided by one phrase only ("with a rollback plan" / "without any rollback plan")
    amid shuffled filler words."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    texts = []
    for label in y:
        words = list(rng.choice(FILLER, size=8))
        words.insert(int(rng.integers(0, 8)), "with a rollback plan" if label == 0 else "without any rollback plan")
        texts.append(" ".join(words))
    return texts, y


def unrelated_vectors(n: int, seed: int) -> np.ndarray:
    """Vectors that carry no label: what an embedding that blurs the deciding words gives, at the extreme."""
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_labels_that_only_words_decide_are_answered_with_the_words_and_abstained_on_without():
    texts, y = keyword_texts(80, seed=0)
    fitted = FittedProfile.fit(spec(target_accuracy=0.9), unrelated_vectors(80, 0), texts, y)
    assert fitted.calibration.words_weight > 0  # cross-validation found the words worth weighing
    new_texts, new_y = keyword_texts(40, seed=1)
    vectors = unrelated_vectors(40, 1)
    decisions, _, _ = fitted.judge(vectors, texts=new_texts)
    assert decisions.answered.mean() >= 0.8
    assert (decisions.best == new_y)[decisions.answered].mean() >= 0.95
    # without the words (a handle stored without its text) the vectors alone decide: they cannot, so it abstains
    blind, _, _ = fitted.judge(vectors)
    assert blind.answered.mean() <= 0.2
    assert fitted.calibration.for_text(False).words_weight == 0.0


def test_a_taught_text_counts_its_words_from_the_next_verdict():
    texts, y = keyword_texts(40, seed=0)
    model = WordsModel.fit(texts, y, 2)
    probe = ["ship it behind a canary flag"]  # words the fit never saw with any label
    before = model.log_probs(probe)[0]
    taught = model.with_texts(["roll out behind a canary flag"], np.array([1]))
    after = taught.log_probs(probe)[0]
    assert after[1] - after[0] > before[1] - before[0] + 0.5
    np.testing.assert_allclose(model.log_probs(probe), before[None, :])  # the old model is unchanged (immutable)


def test_a_stored_model_judges_exactly_as_the_one_in_memory(tmp_path):
    texts, y = keyword_texts(60, seed=0)
    model = WordsModel.fit(texts, y, 2).with_texts(["a canary flag rollout"], np.array([0]))
    np.savez(tmp_path / "w.npz", **model.to_arrays())
    with np.load(tmp_path / "w.npz") as data:
        loaded = WordsModel.from_arrays(data)
    probe, _ = keyword_texts(10, seed=3)
    # the taught text's n-grams, folded into the stored sums, weigh what they weighed beside the fitted ones
    # (float32 storage: 1e-5)
    probe = probe + ["a canary flag"]
    np.testing.assert_allclose(loaded.log_probs(probe), model.log_probs(probe), rtol=1e-5)


def test_a_fit_file_keeps_the_words_and_judges_the_same(tmp_path):
    texts, y = keyword_texts(80, seed=0)
    fitted = FittedProfile.fit(spec(target_accuracy=0.9), unrelated_vectors(80, 0), texts, y)
    fitted.save(tmp_path / "fit.npz")
    loaded = FittedProfile.load(tmp_path / "fit.npz", spec(target_accuracy=0.9), texts)
    new_texts, _ = keyword_texts(20, seed=1)
    vectors = unrelated_vectors(20, 1)
    np.testing.assert_allclose(
        loaded.probabilities(vectors, texts=new_texts), fitted.probabilities(vectors, texts=new_texts), rtol=1e-5
    )
    assert loaded.calibration.words_weight == fitted.calibration.words_weight


@pytest.mark.parametrize("texts", [["", "   "], ["a"], ["Ünïcode — émojis 🚀 and CJK 中文字"]])
def test_odd_texts_give_finite_probabilities(texts):
    model = WordsModel.fit(*keyword_texts(20, seed=0), 2)
    out = model.log_probs(texts)
    assert out.shape == (len(texts), 2) and np.isfinite(out).all()


def test_ngram_features_are_the_same_in_every_process():
    """Fits are cached on disk and shared across hosts: features must not depend on Python's salted `hash`."""
    script = (
        "from mcp_latent.judge.words import featurize; print(featurize(['Ship the billing change']).feature.tolist())"
    )

    def features(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        ).stdout

    assert features("1") == features("2") == str(featurize(["Ship the billing change"]).feature.tolist()) + "\n"


class LabelBlindEmbedder:
    """A vector per text that carries nothing of its label (seeded by the text): only the words can decide."""

    model_id = "test/label-blind"
    dim = DIM

    def embed(self, texts):
        seeds = [zlib_seed(t) for t in texts]
        return np.stack([unrelated_vectors(1, seed)[0] for seed in seeds])


def zlib_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


@pytest.mark.parametrize("store_text", [True, False])
def test_the_server_judges_a_handle_by_its_words_and_without_stored_text_by_its_vector(tmp_path, store_text):
    from conftest import write_profile

    from mcp_latent.service.api import LatentService
    from mcp_latent.settings import Settings

    texts, y = keyword_texts(80, seed=0)
    labels = {"safe": [t for t, label in zip(texts, y, strict=True) if label == 0]}
    labels["unsafe"] = [t for t, label in zip(texts, y, strict=True) if label == 1]
    settings = Settings(data_dir=tmp_path / "data", builtin_profiles=False, store_text=store_text)
    write_profile(settings.user_profiles_dir, "change", labels, extra="target_accuracy = 0.9")
    service = LatentService(settings, embedder=LabelBlindEmbedder())
    service.start()
    try:
        fitted = service.fitted_profile("change", wait=60)
        assert fitted.calibration.words_weight > 0
        new_texts, new_y = keyword_texts(20, seed=5)
        right_by_text = answered_by_handle = 0
        for text, label in zip(new_texts, new_y, strict=True):
            handle = service.handoff(text)["handle"]
            by_handle = service.evaluate(handle=handle, profiles=["change"])["verdicts"]["change"]
            by_text = service.evaluate(text=text, profiles=["change"])["verdicts"]["change"]
            vector = LabelBlindEmbedder().embed([text])[0]
            assert by_handle == fitted.verdict(vector, text if store_text else None).compact()
            assert by_text == fitted.verdict(vector, text).compact()
            right_by_text += by_text["label"] == ("safe", "unsafe")[label]
            answered_by_handle += not by_handle.get("unsure", False)
        assert right_by_text >= 16
        assert answered_by_handle >= 16 if store_text else answered_by_handle <= 4
    finally:
        service.close()


def test_detail_names_the_words_the_verdict_turned_on():
    texts, y = keyword_texts(80, seed=0)
    fitted = FittedProfile.fit(spec(target_accuracy=0.9), unrelated_vectors(80, 0), texts, y)
    new_texts, new_y = keyword_texts(10, seed=7)
    for text, label, vector in zip(new_texts, new_y, unrelated_vectors(10, 7), strict=True):
        detail = fitted.verdict(vector, text, detail=True).detailed()
        assert detail["label"] == ("safe", "unsafe")[label]
        deciding = "with" if label == 0 else "without"
        assert any(deciding in gram.split() for gram in detail["words"]), detail["words"]
        assert len(detail["words"]) <= 3
        assert "words" not in fitted.verdict(vector, None, detail=True).detailed()  # no text: no words to name


def test_detail_names_no_words_for_a_text_out_of_scope():
    """Words that favour one answer over another say nothing about a text the profile abstains on as off-topic."""
    texts, y = keyword_texts(80, seed=0)
    fitted = FittedProfile.fit(spec(target_accuracy=0.9, min_similarity=0.99), unrelated_vectors(80, 0), texts, y)
    text, _ = keyword_texts(1, seed=9)
    detail = fitted.verdict(unrelated_vectors(1, 9)[0], text[0], detail=True).detailed()
    assert detail["reason"] == "out_of_scope" and "words" not in detail


def test_label_ids_beyond_16_bits_keep_their_own_n_grams():
    """(feature, label) pairs share one integer key; labels past 65,535 collided with small ones when they had
    16 bits (label 70,000 read back as 4,464)."""
    model = WordsModel.fit(["alpha beta", "gamma delta"], np.array([0, 70_000]), 70_001)
    assert model.log_probs(["alpha beta"]).argmax() == 0
    assert model.log_probs(["gamma delta"]).argmax() == 70_000
