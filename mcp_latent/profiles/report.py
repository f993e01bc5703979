"""A fitted profile's trade-off made visible: its cross-validated operating points at a few target accuracies (text),
the whole curve (PNG), the record of the chosen point written into the profile file, and the warning when the
target accuracy is out of reach. Used by `profiles build`, `profiles tune` and `profiles list`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from mcp_latent.judge.operating_point import MIN_USEFUL_COVERAGE, NO_CUTOFF, Curve, curve, front_2d, score
from mcp_latent.judge.selection import Calibration
from mcp_latent.judge.support import is_unsupported
from mcp_latent.plotting import figure
from mcp_latent.profiles.spec import OperatingPointRecord, ProfileSpec

log = logging.getLogger(__name__)

TARGETS = (0.8, 0.9, 0.95, 0.97, 0.98, 0.99)  # target answered accuracies shown by `profiles build`/`tune`
ANCHORS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # thresholds of the plain head-alone rule shown beside them


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}%"


def knee_target(calibration: Calibration) -> float | None:
    """The knee's answered accuracy rounded down to 0.001: a target that reaches the knee's coverage."""
    if calibration.knee_accuracy is None:
        return None
    return math.floor(calibration.knee_accuracy * 1000) / 1000


def table(calibration: Calibration, spec: ProfileSpec) -> list[str]:
    """The estimated operating point at each of TARGETS and at the spec's own target (marked)."""
    if calibration.evidence is None:
        return ["too few exemplars per label to cross-validate: no estimated curve"]
    simulated = calibration.evidence.simulated
    lines = [
        "target accuracy  rule        threshold  min similarity  coverage  answered accuracy  out-of-scope recall"
        + (" (simulated)" if simulated else " (no simulation: fewer than 8 labels)")
    ]
    targets = sorted({*TARGETS, spec.target_accuracy})
    for target in targets:
        at = calibration.retarget(spec.model_copy(update={"target_accuracy": target}))
        mark = "  <- chosen" if target == spec.target_accuracy else ""
        if not at.reachable:
            mark += "  (out of reach)"
        lines.append(
            f"{target:>15.3f}  {at.family:<10}  {at.threshold:>9.3f}  {at.min_similarity:>14.3f}  "
            f"{_pct(at.cv_coverage):>8}  {_pct(at.cv_answered_accuracy):>17}  {_pct(at.cv_out_of_scope_recall):>19}"
            + mark
        )
    return lines + anchor_table(calibration)


def anchor_table(calibration: Calibration) -> list[str]:
    """The plain rule the chosen point is held against (the head alone thresholded, no cutoff) at ANCHORS, with a
    mark where it would beat the chosen point on coverage and answered accuracy (the fit never lets it)."""
    evidence = calibration.evidence
    if evidence is None or calibration.cv_coverage is None:
        return []
    anchor = evidence.anchor()
    name = evidence.families[anchor].name
    lines = [f"against the plain rule ({name}, thresholded, no out-of-scope cutoff):"]
    for threshold in ANCHORS:
        at = score(evidence, anchor, threshold, NO_CUTOFF)
        better = at.coverage >= calibration.cv_coverage and (at.answered_accuracy or 0.0) >= (
            calibration.cv_answered_accuracy or 0.0
        )
        better &= (at.coverage, at.answered_accuracy) != (calibration.cv_coverage, calibration.cv_answered_accuracy)
        lines.append(
            f"{'p >= ' + format(threshold, '.2f'):>15}  {name:<10}  {threshold:>9.3f}  {'none':>14}  "
            f"{_pct(at.coverage):>8}  {_pct(at.answered_accuracy):>17}  {_pct(at.out_of_scope_recall):>19}"
            + ("  (beats the chosen point in scope)" if better else "")
        )
    return lines


def warning(calibration: Calibration, spec: ProfileSpec) -> str | None:
    """Why the profile will escalate most texts at its target, and what to try; None when it will not."""
    if calibration.reachable or calibration.evidence is None:
        return None
    knee = knee_target(calibration)
    coverage = _pct(calibration.cv_coverage).strip()
    hint = f"; the knee of the curve is at target {knee:.3f}" if knee is not None else ""
    return (
        f"target accuracy {spec.target_accuracy} is out of reach at useful coverage: cross-validated coverage "
        f"{coverage} (< {MIN_USEFUL_COVERAGE:.0%}){hint} (`mcp-latent profiles tune --profile {spec.name} "
        f"--target-accuracy {knee if knee is not None else 0.9}`)"
    )


def summary(calibration: Calibration, spec: ProfileSpec) -> dict[str, Any]:
    """The chosen point in a profile listing: threshold, target, cross-validated coverage and answered accuracy,
    and the out-of-reach warning when there is one."""
    out: dict[str, Any] = {"threshold": round(calibration.threshold, 3), "target_accuracy": spec.target_accuracy}
    if calibration.cv_coverage is not None:
        out["coverage"] = round(calibration.cv_coverage, 3)
        out["answered_accuracy"] = round(calibration.cv_answered_accuracy or 0.0, 3)
    if spec.abstain_until_supported:  # false: it abstains on everything until taught enough (judge/support.py)
        out["supported"] = not is_unsupported(calibration)
    problem = warning(calibration, spec)
    if problem:
        out["warning"] = problem
    return out


def record(calibration: Calibration) -> OperatingPointRecord:
    """The chosen point for the profile file."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return OperatingPointRecord(
        rule=calibration.family,
        threshold=round(calibration.threshold, 4),
        min_similarity=round(calibration.min_similarity, 4),
        coverage=rounded(calibration.cv_coverage) or 0.0,
        answered_accuracy=rounded(calibration.cv_answered_accuracy),
        out_of_scope_recall=rounded(calibration.cv_out_of_scope_recall),
        reachable=calibration.reachable,
        knee_accuracy=knee_target(calibration),
    )


def plot(calibration: Calibration, spec: ProfileSpec, path: Path) -> Path | None:
    """PNG of the cross-validated trade-off: answered accuracy against coverage (each rule's threshold curve and
    the best of all candidates) and, with a simulation, out-of-scope recall against coverage at a few accuracies;
    the chosen point in red. None without evidence; PlotsUnavailable without matplotlib."""
    if calibration.evidence is None:
        return None
    c = curve(calibration.evidence)
    accuracy = np.nan_to_num(c.answered_accuracy, nan=0.0)
    front = front_2d(c.coverage, accuracy)
    simulated = calibration.evidence.simulated
    size = (11 if simulated else 6, 4.2)
    with figure(path, nrows=1, ncols=2 if simulated else 1, figsize=size, squeeze=False) as (_, axes):
        _draw_accuracy(axes[0][0], calibration, spec, c, accuracy, front)
        if simulated:
            _draw_out_of_scope(axes[0][1], calibration, spec, c, accuracy)
    return path


def _draw_accuracy(
    ax: Any, calibration: Calibration, spec: ProfileSpec, c: Curve, accuracy: np.ndarray, front: np.ndarray
) -> None:
    assert calibration.evidence is not None
    for f, fam in enumerate(calibration.evidence.families):
        # each family's plain threshold curve at the lowest cutoff, for reference
        line = (c.family == f) & (c.min_similarity == c.min_similarity[c.family == f].min())
        order = np.argsort(c.coverage[line])
        plain = f == calibration.evidence.anchor()  # its lowest cutoff is none: the plain rule the point must beat
        label = f"{fam.name}, no cutoff (the plain rule)" if plain else f"{fam.name}, threshold only"
        ax.plot(c.coverage[line][order], c.answered_accuracy[line][order], lw=1, label=label)
    ax.plot(c.coverage[front], accuracy[front], color="grey", lw=2, alpha=0.5, label="best of all rules and cutoffs")
    ax.scatter([calibration.cv_coverage], [calibration.cv_answered_accuracy], color="red", zorder=3, label="chosen")
    ax.axhline(spec.target_accuracy, color="red", lw=0.6, ls="--")
    ax.axvline(MIN_USEFUL_COVERAGE, color="grey", lw=0.6, ls=":")
    ax.set(
        xlabel="coverage (share of in-scope texts answered)",
        ylabel="answered accuracy",
        title=f"{spec.name}: cross-validated trade-off",
    )
    ax.set_ylim(max(0.0, float(np.nanmin(c.answered_accuracy[front])) - 0.02), 1.002)
    ax.legend(fontsize=7, loc="lower left")


def _draw_out_of_scope(ax: Any, calibration: Calibration, spec: ProfileSpec, c: Curve, accuracy: np.ndarray) -> None:
    for target in sorted({0.95, 0.97, spec.target_accuracy}):
        meets = np.nonzero(accuracy >= target)[0]
        if len(meets):
            best = meets[front_2d(c.coverage[meets], c.recall()[meets])]
            ax.plot(c.coverage[best], c.out_of_scope_recall[best], lw=1, label=f"answered accuracy >= {target}")
    ax.scatter([calibration.cv_coverage], [calibration.cv_out_of_scope_recall], color="red", zorder=3)
    ax.legend(fontsize=7, loc="lower left")
    ax.axhline(spec.target_out_of_scope_recall, color="red", lw=0.6, ls="--")
    ax.set(xlabel="coverage", ylabel="out-of-scope recall (simulated)", title="out-of-scope trade-off")
