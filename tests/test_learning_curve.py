"""The learning-curve harness's decomposition of escalations (pure arithmetic on per-item records)."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from learning_curve import decompose  # noqa: E402


def item(gold, label, best, p, reason=None, exemplars=5):
    return {"gold": gold, "label": label, "reason": reason, "best": best, "p": p, "best_exemplars": exemplars}


def test_decompose_counts_the_last_third_by_reason_exemplars_and_threshold():
    early = [item("a", None, "b", 0.1, "low_confidence")] * 6  # before the last third: ignored
    last = [
        item("a", "a", "a", 0.97, exemplars=12),
        item("a", None, "a", 0.85, "low_confidence", exemplars=12),
        item("b", None, "a", 0.75, "low_confidence", exemplars=35),
        item(None, None, "b", 0.9, "out_of_scope", exemplars=35),  # out of scope: never answered by a replay
    ]
    d = decompose(early + last[:0] + [item("a", "a", "a", 0.99)] * 2 + last)
    assert d["items"] == 4
    assert d["escalated_by_reason"] == {"low_confidence": 0.5, "out_of_scope": 0.25}
    bins = {b["exemplars"]: b for b in d["by_winning_label_exemplars"]}
    assert bins["10-19"]["escalated"] == 0.5 and bins["10-19"]["answered_accuracy"] == 1.0
    assert bins["30-49"]["best_right"] == 0.0 and bins["30-49"]["answered_accuracy"] is None
    at = {w["threshold"]: w for w in d["what_if"]}
    assert at[0.95] == {"threshold": 0.95, "escalated": 0.75, "answered_accuracy": 1.0}
    assert at[0.8]["escalated"] == 0.5 and at[0.8]["answered_accuracy"] == 1.0
    assert at[0.7]["escalated"] == 0.25 and abs(at[0.7]["answered_accuracy"] - 2 / 3) < 1e-9
