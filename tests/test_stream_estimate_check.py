"""tools/stream_estimate_check.py: the stream rule's expected accuracy of the answered, untaught verdicts against what
they were, on synthetic streams whose top is calibrated, overconfident or underconfident where the escalated
(taught) verdicts are calibrated alike: the rule cannot see the difference, the check must."""

import sys

import numpy as np
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from stream_estimate_check import check  # noqa: E402


def stream(top_shift: float, seed: int = 0, n: int = 2000) -> list[dict]:
    """Verdicts at p in 0.5-1, most of them near 1 (as a learning stream's); those under 0.9 escalated (taught) and
    right with probability p; those at or above right with probability p + top_shift (clipped to [0, 1])."""
    rng = np.random.default_rng(seed)
    items = []
    for p in 1.0 - 0.5 * rng.random(n) ** 3:
        chance = p if p < 0.9 else min(1.0, max(0.0, p + top_shift))
        right = rng.random() < chance
        items.append(
            {
                "gold": "a",
                "best": "a" if right else "b",
                "p": float(p),
                "label": None if p < 0.9 else "a",
                "reason": None,
            }
        )
    return items


def mean_error(items: list[dict]) -> float:
    rows = [r for r in check(items, window=1000, every=500) if r["k"] >= 1500]
    assert rows, "the rule set no threshold"
    return float(np.mean([r["error"] for r in rows]))


def test_the_check_sees_the_top_the_escalated_verdicts_do_not():
    calibrated, overconfident, underconfident = (mean_error(stream(shift)) for shift in (0.0, -0.03, 0.01))
    assert abs(calibrated) < 0.01
    assert overconfident > calibrated + 0.02  # the rule expected more than there was: too bold
    assert underconfident < calibrated - 0.005  # ... less: too cautious
