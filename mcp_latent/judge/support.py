"""Whether a profile's cross-validated evidence supports answering at all (profiles with `abstain_until_supported`).

A profile defined with two examples a label cross-validates on six held-out texts: four right answers looked like
"100% answered accuracy at 67% coverage", and it answered live texts from that. Such a profile must abstain until
the evidence supports its target: the chosen point's answered accuracy, lowered by one standard error (the Wilson
bound at z = 1: the same one-standard-error margin the choice of operating point uses), reaches the target
accuracy. With every held-out answer right that takes 9 answers for a 0.9 target, 19 for 0.95. And the held-out texts
must number at least MIN_HELD_OUT_PER_LABEL per answer label: eleven texts of which nine were taught to one label
were "supported" for a three-label profile whose other labels had two examples each."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_latent.judge.selection import Calibration
    from mcp_latent.profiles.spec import ProfileSpec

UNSUPPORTED_THRESHOLD = 1.01  # above every probability: each verdict abstains (low confidence)
Z = 1.0
MIN_HELD_OUT_PER_LABEL = 5


def wilson_lower(correct: float, n: float, z: float = Z) -> float:
    """Lower Wilson bound of a proportion (0 for no observations)."""
    if n <= 0:
        return 0.0
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def supported(calibration: Calibration, target_accuracy: float, answer_labels: int) -> bool:
    """True when the calibration's held-out answers support its target accuracy (see the module docstring)."""
    evidence = calibration.evidence
    if evidence is None or calibration.cv_coverage is None or calibration.cv_answered_accuracy is None:
        return False
    if len(evidence.nearest) < MIN_HELD_OUT_PER_LABEL * answer_labels:
        return False
    answered = calibration.cv_coverage * len(evidence.nearest)
    return wilson_lower(calibration.cv_answered_accuracy * answered, answered) >= target_accuracy - 1e-9


def gate(calibration: Calibration, spec: ProfileSpec) -> Calibration:
    """The calibration as it runs: unchanged, or abstaining on every text while the spec asks for support it lacks
    (a fixed `threshold` in the file is the user's choice and is left alone)."""
    if not spec.abstain_until_supported or spec.threshold is not None:
        return calibration
    if supported(calibration, spec.target_accuracy, len(spec.answer_labels)):
        return calibration
    return replace(calibration, threshold=UNSUPPORTED_THRESHOLD)


def is_unsupported(calibration: Calibration) -> bool:
    return calibration.threshold > 1.0
