"""tools/encoder_tuning_study.py: the offline stream replay (fake embedder, tiny data), its hindsight arithmetic, the
tuning methods' batches, and one real tuning step of the shipped model."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, HashingEmbedder

sys.path.insert(0, str(ROOT / "tools"))
import encoder_tuning_methods as methods  # noqa: E402
from encoder_tuning_study import TableEmbedder, at_agreement, replay  # noqa: E402

WORDS = {
    "weather": ["rain", "sunny", "forecast", "umbrella", "cloudy", "temperature"],
    "music": ["song", "playlist", "album", "guitar", "volume", "track"],
    "alarm": ["alarm", "wake", "snooze", "clock", "morning", "ring"],
    "food": ["pizza", "recipe", "dinner", "order", "restaurant", "lunch"],
}


class Bar:
    def update(self, n):
        pass

    def set_postfix_str(self, s):
        pass


def rows(count: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for i in range(count):
        label = sorted(WORDS)[i % len(WORDS)]
        words = rng.choice(WORDS[label], size=3, replace=False)
        out.append({"text": f"please {' '.join(words)} now {i}", "label": label})
    return out


def test_replay_teaches_every_escalation_and_escalates_less_as_it_learns():
    rng = np.random.default_rng(0)
    seed = {label: [f"{' '.join(words[:2])} please"] for label, words in WORDS.items()}
    stream = rows(180, rng)
    texts = [t for group in seed.values() for t in group] + [r["text"] for r in stream]
    frozen = TableEmbedder("fake", texts, HashingEmbedder().embed(texts))
    args = argparse.Namespace(tune_at=[60, 120], refit_every=5, window=60, target_accuracy=0.9)
    run = replay(seed, stream, "frozen", None, frozen, args, Bar())
    items = run["items"]
    assert len(items) == 180
    escalated = [i["label"] is None for i in items]
    assert run["taught"] == sum(escalated) > 0  # every escalation taught, nothing else
    assert run["exemplars"] == 4 + run["taught"]
    assert [t["item"] for t in run["tunes"]] == [60, 120]
    assert run["tunes"][0]["exemplars"] == 4 + sum(escalated[:60])
    assert len(run["windows"]) == 3 and run["windows"][2] < run["windows"][0]
    assert run["last_third"]["items"] == 60
    assert run["last_third"]["escalated"] == pytest.approx(np.mean(escalated[120:]))
    answered = [i for i in items if i["label"] is not None]
    assert run["all"]["answered_agreement"] == pytest.approx(np.mean([i["label"] == i["gold"] for i in answered]))


def test_escalated_at_agreement_is_the_lowest_threshold_meeting_it():
    def item(p, right, reason=None):
        return {"p": p, "best": "a" if right else "b", "gold": "a", "reason": reason}

    items = [item(0.99, True), item(0.95, True), item(0.9, False), item(0.8, True), item(0.7, True)]
    items.append(item(0.99, True, reason="out_of_scope"))  # cut off: escalated at any threshold
    assert at_agreement(items, 0.75) == pytest.approx(1 - 5 / 6)  # 4 of 5 right at p >= 0.7
    assert at_agreement(items, 0.97) == pytest.approx(1 - 2 / 6)  # only p >= 0.95 is all right
    assert at_agreement([item(0.9, False)], 0.97) is None


def test_mnrl_batches_hold_each_label_once_and_each_exemplar_as_anchor_at_most_once():
    y = np.repeat(np.arange(10), 7)
    batches = methods._mnrl_batches(y, np.random.default_rng(1), 8)
    assert all(len({int(y[i]) for i, _ in batch}) == len(batch) for batch in batches)
    assert all(y[i] == y[j] and i != j for batch in batches for i, j in batch)
    anchors = [i for batch in batches for i, _ in batch]
    assert len(set(anchors)) == len(anchors) >= len(y) - 2  # a lone pair left over (nothing to rank against) goes
    assert all(len(batch) > 1 for batch in batches)


def test_setfit_pairs_are_half_positive_at_one_pair_per_exemplar():
    y = np.repeat(np.arange(4), 6)
    pairs = methods._setfit_pairs(y, np.random.default_rng(2), 1)
    assert len(pairs) == len(y)
    assert sum(t for _, _, t in pairs) == len(y) / 2
    assert all((y[i] == y[j]) == (t == 1.0) and i != j for i, j, t in pairs)


def test_one_tuning_step_moves_a_copy_of_the_shipped_model_and_leaves_it_alone():
    from mcp_latent.embedding.model_source import shipped_model_path

    source = shipped_model_path()
    if source is None:
        pytest.skip("the shipped model is not installed")
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(str(Path(source)), device="cpu", local_files_only=True)
    texts = [
        f"{w} {v}" for label in sorted(WORDS)[:2] for w, v in zip(WORDS[label][:-1], WORDS[label][1:], strict=True)
    ]
    y = np.repeat([0, 1], len(texts) // 2)
    before = methods.encode(base, texts)
    for method in methods.METHODS:
        result = methods.tune(base, texts, y, method, epochs=0.01, lr=1e-3)
        assert result.steps == 1 and not result.truncated
        moved = methods.encode(result.model, texts)
        assert np.abs(moved - before).max() > 1e-3
        assert np.allclose(np.linalg.norm(moved, axis=1), 1.0, atol=1e-4)
    assert np.allclose(methods.encode(base, texts), before, atol=1e-6)
    assert 80 < methods.size_mib(base) < 95  # all-MiniLM-L6-v2: 22.7M fp32 parameters
    with pytest.raises(ValueError, match="unknown method"):
        methods.tune(base, texts, y, "lora")


def test_combine_merges_runs_into_one_table_and_plot(tmp_path):
    from encoder_tuning_study import combine

    def run(data, seed, arm, escalated):
        last = {"items": 4, "escalated": escalated, "answered_agreement": 0.98, "escalated_at_97_hindsight": 0.2}
        tunes = [] if arm == "frozen" else [{"train_seconds": 12.0, "size_mib": 86.6, "steps": 3, "truncated": False}]
        return {
            "data": data,
            "seed": seed,
            "arm": arm,
            "all": last,
            "last_third": last,
            "windows": [0.5, escalated],
            "tunes": tunes,
        }

    args = {"window": 6, "tune_at": [4, 8]}
    parts = {
        "a": [run("hwu64", 0, "frozen", 0.4), run("hwu64", 0, "mnrl", 0.3)],
        "b": [run("banking77", 1, "frozen", 0.35)],
        "c": [run("banking77", 2, "frozen+pairwise", 0.3)],  # an arm run without frozen beside it is drawn alone
    }
    for folder, runs in parts.items():
        (tmp_path / folder).mkdir()
        summary = {"args": args, "commit": folder, "runs": runs}
        (tmp_path / folder / "summary.json").write_text(json.dumps(summary))
    assert combine([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "out") == 0
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "| hwu64 | 0 | mnrl | 30.0% | 98.0% | 98.0% | 20.0% | 12 | 87 |" in table
    assert "| banking77 | 1 | frozen | 35.0% |" in table
    assert "| banking77 | 2 | frozen+pairwise | 30.0% |" in table
    assert (tmp_path / "out" / "escalation.png").stat().st_size > 10_000
