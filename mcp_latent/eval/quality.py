"""Measure a profile on labeled data: accuracy, coverage, answered accuracy, out-of-scope recall, calibration.

Baselines run in the same call on the same embeddings (1-NN, nearest centroid, the linear head alone), so
every figure has its anchor beside it. Rows whose label the profile lacks count as out of scope.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mcp_latent.judge.decision import decide
from mcp_latent.judge.ensemble import exact_neighbours, softmax
from mcp_latent.judge.fitted import FittedProfile
from mcp_latent.plotting import PlotsUnavailable, figure
from mcp_latent.profiles.builder import read_rows
from mcp_latent.profiles.fitter import ExemplarVectors
from mcp_latent.settings import Settings

from . import semantic_router_baseline

log = logging.getLogger(__name__)


def expected_calibration_error(p: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (p > low) & (p <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - p[inside].mean())
    return float(total)


# The head-alone rule (the linear head's own softmax, thresholded; no kNN, no out-of-scope cutoff) at these
# thresholds is the anchor every default point is compared with.
HEAD_ALONE_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.5, 0.951, 0.05))


def dominates(a: dict[str, float | None], b: dict[str, float | None]) -> bool:
    """True when operating point `a` is at least as good as `b` on every measured axis and better on one."""
    axes = [
        k for k in ("coverage", "answered_accuracy", "out_of_scope_recall") if a[k] is not None and b[k] is not None
    ]
    return all(a[k] >= b[k] for k in axes) and any(a[k] > b[k] for k in axes)


def operating_point(answered: np.ndarray, correct: np.ndarray, in_scope: np.ndarray) -> dict[str, float | None]:
    """Coverage, answered accuracy (in scope) and out-of-scope recall of one answer/abstain rule."""

    def mean(values: np.ndarray) -> float | None:
        return float(values.mean()) if len(values) else None

    return {
        "coverage": mean(answered[in_scope]),
        "answered_accuracy": mean(correct[answered & in_scope]),
        "out_of_scope_recall": mean(~answered[~in_scope]),
    }


def baselines(
    fitted: FittedProfile, vectors: np.ndarray, y: np.ndarray, texts: list[str] | None = None
) -> tuple[dict[str, float], dict[str, dict[str, float | None]]]:
    """Anchors on the same embeddings: closed-set accuracy of simple methods (in-scope rows), and the
    answer/abstain operating points of the anchors (the linear head alone at each of HEAD_ALONE_THRESHOLDS;
    semantic-router at confidence >= 0.8 when it is installed and the query texts are known)."""
    in_scope = y >= 0
    ids, _ = exact_neighbours(vectors, fitted.vectors, 1)
    one_nn = fitted.y[ids[:, 0]]
    centroids = np.stack([fitted.vectors[fitted.y == i].mean(axis=0) for i in range(len(fitted.labels))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    head = softmax(vectors @ fitted.weights + fitted.bias)
    head_pred = head.argmax(axis=1)
    accuracy = {
        "1-NN": float((one_nn == y)[in_scope].mean()),
        "nearest centroid": float(((vectors @ centroids.T).argmax(axis=1) == y)[in_scope].mean()),
        "linear head alone": float((head_pred == y)[in_scope].mean()),
    }
    points = {}
    for threshold in HEAD_ALONE_THRESHOLDS:
        rule = decide(head, np.ones(len(head)), threshold, -1.0)  # the server's rule, without the cutoff
        points[f"linear head alone, p >= {threshold:.2f}"] = operating_point(rule.answered, rule.best == y, in_scope)
    if texts is not None and semantic_router_baseline.available():
        routed = semantic_router_baseline.run(fitted.labels, fitted.texts, fitted.y, fitted.vectors, texts, vectors)
        name = "semantic-router 1.1.1 (Platt)"
        correct = routed["predicted"] == y
        accuracy[name] = float(correct[in_scope].mean())
        confident = routed["confidence"] >= semantic_router_baseline.CONFIDENCE
        points[f"{name}, confidence >= {semantic_router_baseline.CONFIDENCE}"] = operating_point(
            confident, correct, in_scope
        )
    return accuracy, points


def metrics(
    fitted: FittedProfile,
    vectors: np.ndarray,
    labels: list[str],
    texts: list[str] | None = None,
    with_baselines: bool = True,
) -> dict[str, Any]:
    """All figures for one evaluation set (texts: the rows', judged with their words as the server does, and for
    baselines that need them, e.g. semantic-router; None judges from the vectors alone)."""
    index = {name: i for i, name in enumerate(fitted.labels)}
    in_scope = np.array([label in index for label in labels])
    y = np.array([index.get(label, -1) for label in labels])
    decisions, _, _ = fitted.judge(vectors, texts=texts)  # exactly what the server's verdicts do
    d = {"pred": decisions.best, "p": decisions.p, "nearest": decisions.nearest, "answered": decisions.answered}
    correct = d["pred"] == y
    result: dict[str, Any] = {
        "rows": len(labels),
        "in_scope_rows": int(in_scope.sum()),
        "out_of_scope_rows": int((~in_scope).sum()),
        "threshold": fitted.calibration.threshold,
        "min_similarity": fitted.calibration.min_similarity,
    }
    ins = in_scope
    result["accuracy"] = float(correct[ins].mean()) if ins.any() else None
    ours = operating_point(d["answered"], correct, ins)
    result.update(ours)
    answered_all = d["answered"]
    result["answered_precision_all_rows"] = float(correct[answered_all].mean()) if answered_all.any() else None
    result["ece"] = expected_calibration_error(d["p"][ins], correct[ins]) if ins.any() else None
    result["baselines"], result["anchor_points"] = ({}, {})
    if with_baselines and ins.any():
        result["baselines"], result["anchor_points"] = baselines(fitted, vectors, y, texts)
    result["dominated_by"] = [
        name
        for name, point in result["anchor_points"].items()
        if name.startswith("linear head") and dominates(point, ours)
    ]
    # Curves for the plots: answered accuracy vs coverage as the confidence threshold moves.
    order = np.argsort(-d["p"][ins])
    hits = correct[ins][order]
    result["_curve"] = {
        "coverage": (np.arange(1, len(hits) + 1) / len(hits)).tolist(),
        "accuracy": (np.cumsum(hits) / np.arange(1, len(hits) + 1)).tolist(),
    }
    result["_reliability"] = {"p": d["p"][ins].tolist(), "correct": correct[ins].astype(int).tolist()}
    if ins.any() and (~ins).any():
        # Out-of-scope trade-off as the nearest-exemplar cutoff moves (confidence threshold fixed): a picture
        # of the test set, for choosing `target_out_of_scope_recall`; nothing is fitted on it.
        confident = d["p"] >= fitted.calibration.threshold
        cutoffs = np.quantile(d["nearest"], np.linspace(0.0, 0.6, 61))
        points = [operating_point(confident & (d["nearest"] >= cutoff), correct, ins) for cutoff in cutoffs]
        result["_oos_curve"] = {key: [point[key] for point in points] for key in ("coverage", "out_of_scope_recall")}
    confusion: dict[str, int] = {}
    for true, pred in zip(y[ins & ~correct], d["pred"][ins & ~correct], strict=True):
        pair = f"{fitted.labels[true]} -> {fitted.labels[pred]}"
        confusion[pair] = confusion.get(pair, 0) + 1
    result["most_confused"] = sorted(confusion.items(), key=lambda kv: -kv[1])[:12]
    return result


def markdown(name: str, m: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    rows = [
        f"### {name}",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| rows (in scope / out of scope) | {m['in_scope_rows']} / {m['out_of_scope_rows']} |",
        f"| closed-set accuracy | {pct(m['accuracy'])} |",
        f"| coverage (in-scope rows answered) | {pct(m['coverage'])} |",
        f"| answered accuracy (in scope) | {pct(m['answered_accuracy'])} |",
        f"| answered precision (all rows; out of scope answered = wrong) | {pct(m['answered_precision_all_rows'])} |",
        f"| out-of-scope recall | {pct(m['out_of_scope_recall'])} |",
        f"| ECE (15 bins, in scope) | {'n/a' if m['ece'] is None else round(m['ece'], 4)} |",
        f"| threshold / min similarity | {m['threshold']:.3f} / {m['min_similarity']:.3f} |",
    ]
    rows += [f"| baseline: {k} (closed-set) | {pct(v)} |" for k, v in m["baselines"].items()]
    if not m.get("anchor_points"):
        return "\n".join(rows)
    fit = m.get("fit", {})
    rows += [
        "",
        "| operating point (same embeddings, same run) | coverage | answered accuracy | out-of-scope recall | "
        "dominates the default |",
        "| --- | --- | --- | --- | --- |",
        f"| **default** ({fit.get('rule', 'fitted')}, threshold {m['threshold']:.3f}, min similarity "
        f"{m['min_similarity']:.3f}) | **{pct(m['coverage'])}** | **{pct(m['answered_accuracy'])}** | "
        f"**{pct(m['out_of_scope_recall'])}** | |",
    ]
    if fit.get("cv_coverage") is not None:
        rows.append(
            f"| default, cross-validated estimate on the profile's exemplars (recall: simulated) | "
            f"{pct(fit['cv_coverage'])} | {pct(fit['cv_answered_accuracy'])} | {pct(fit['cv_out_of_scope_recall'])} | |"
        )
    rows += [
        f"| {k} | {pct(v['coverage'])} | {pct(v['answered_accuracy'])} | {pct(v['out_of_scope_recall'])} | "
        f"{'**yes**' if k in m['dominated_by'] else 'no'} |"
        for k, v in m["anchor_points"].items()
    ]
    return "\n".join(rows)


def plots(m: dict[str, Any], out_dir: Path, title: str) -> list[Path]:
    """Reliability diagram, coverage-vs-answered-accuracy curve, most confused pairs (PNG); none, with a warning
    saying what to install, without matplotlib (the figures are in summary.md either way)."""
    try:
        return _plots(m, out_dir, title)
    except PlotsUnavailable as exc:
        log.warning("no plots: %s", exc)
        return []


def _plots(m: dict[str, Any], out_dir: Path, title: str) -> list[Path]:
    paths = [out_dir / "reliability.png"]
    p = np.array(m["_reliability"]["p"])
    correct = np.array(m["_reliability"]["correct"])
    edges = np.linspace(0, 1, 16)
    centres, accuracy, counts = [], [], []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (p > low) & (p <= high)
        if inside.any():
            centres.append(p[inside].mean())
            accuracy.append(correct[inside].mean())
            counts.append(inside.sum())
    with figure(paths[-1], figsize=(5, 5)) as (_, ax):
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.scatter(centres, accuracy, s=[20 + 200 * c / max(counts) for c in counts], label="bins (size = rows)")
        ax.plot(centres, accuracy)
        ax.set(xlabel="confidence p", ylabel="accuracy", title=f"{title}: reliability (ECE {m['ece']:.3f})")
        ax.legend(loc="upper left")

    paths.append(out_dir / "coverage.png")
    with figure(paths[-1], figsize=(6, 4)) as (_, ax):
        ax.plot(m["_curve"]["coverage"], m["_curve"]["accuracy"], label="ours, threshold only")
        head = [v for k, v in m.get("anchor_points", {}).items() if k.startswith("linear head")]
        if head:
            ax.plot(
                [v["coverage"] for v in head],
                [v["answered_accuracy"] for v in head],
                "s--",
                ms=3,
                color="grey",
                label="linear head alone, p >= 0.50 ... 0.95",
            )
        ax.scatter([m["coverage"]], [m["answered_accuracy"]], color="red", zorder=3, label="default point")
        ax.set(xlabel="coverage (share answered)", ylabel="answered accuracy", title=f"{title}: abstention trade-off")
        ax.set_ylim(max(0.5, min(m["_curve"]["accuracy"]) - 0.02), 1.001)
        ax.legend()

    if "_oos_curve" in m:
        paths.append(out_dir / "out_of_scope.png")
        with figure(paths[-1], figsize=(6, 4)) as (_, ax):
            ax.plot(m["_oos_curve"]["coverage"], m["_oos_curve"]["out_of_scope_recall"])
            ax.scatter([m["coverage"]], [m["out_of_scope_recall"]], color="red", zorder=3, label="fitted cutoff")
            ax.set(
                xlabel="coverage (in-scope rows answered)",
                ylabel="out-of-scope recall",
                title=f"{title}: out-of-scope trade-off",
            )
            ax.legend()

    if m["most_confused"]:
        pairs, counts = zip(*m["most_confused"], strict=True)
        paths.append(out_dir / "confusion.png")
        with figure(paths[-1], figsize=(7, 0.35 * len(pairs) + 1)) as (_, ax):
            ax.barh(range(len(pairs)), counts)
            ax.set_yticks(range(len(pairs)), pairs, fontsize=8)
            ax.invert_yaxis()
            ax.set(xlabel="test rows", title=f"{title}: most confused (true -> predicted)")
    return paths


def run_evaluation(
    settings: Settings,
    profile_name: str,
    source: Path,
    split: str | None,
    text_field: str = "text",
    label_field: str = "label",
    split_field: str | None = "split",
    out_dir: Path = Path("eval-out"),
    baselines: bool = True,
) -> dict[str, Any]:
    """Evaluate one profile on a labeled file and write summary.json, summary.md and PNG plots to out_dir."""
    from tqdm import tqdm

    from mcp_latent.service.api import LatentService

    service = LatentService(settings)
    service.start(fit_profiles=False)  # only the measured profile is fitted (below, in this thread)
    try:
        fitted = service.fitted_profile(profile_name)
        rows = [r for r in read_rows(source) if split is None or str(r.get(split_field or "")) == split]
        texts = [str(r[text_field]) for r in rows]
        labels = [str(r[label_field]) for r in rows]
        # Evaluation rows are cached by text like exemplars (several protocols share one test split).
        model = service.embedder.model_id.replace("/", "_")
        cache = ExemplarVectors(settings.data_dir / "cache" / "eval" / f"{model}.npz")
        with tqdm(total=len(texts), desc="embedding test rows", unit="text") as bar:
            vectors = cache.lookup(texts, service.embedder, bar.update)
        m = metrics(fitted, vectors, labels, texts, with_baselines=baselines)
    finally:
        service.close()
    cal = fitted.calibration
    m["fit"] = {
        "model": service.embedder.model_id,
        "rule": cal.family,
        "c": cal.c,
        "knn_weight": cal.knn_weight,
        "words_weight": cal.words_weight,
        "temperature": cal.temperature,
        "cv_accuracy": cal.cv_accuracy,
        "cv_coverage": cal.cv_coverage,
        "cv_answered_accuracy": cal.cv_answered_accuracy,
        "cv_out_of_scope_recall": cal.cv_out_of_scope_recall,
        "target_accuracy": fitted.spec.target_accuracy,
        "target_out_of_scope_recall": fitted.spec.target_out_of_scope_recall,
        "reachable": cal.reachable,
        "knee_accuracy": cal.knee_accuracy,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    m["markdown"] = markdown(f"{profile_name} on {Path(source).name} ({split or 'all rows'})", m)
    m["plots"] = [str(p) for p in plots(m, out_dir, profile_name)]
    public = {k: v for k, v in m.items() if not k.startswith("_")}
    (out_dir / "summary.json").write_text(json.dumps(public, indent=2))
    (out_dir / "summary.md").write_text(m["markdown"] + "\n")
    return public
