"""Choosing how a profile decides, from its own exemplars only: the ensemble's head regularization, kNN weight and
words weight, a temperature (so `p` means "probability this label is right"), and the held-out evidence
(cross-validation, plus a simulation in which labels hidden from the fit play the out-of-scope texts) from which
`operating_point` chooses the confidence threshold and the out-of-scope cutoff together. When exemplars name
their writer or source (`LabelSpec.groups`), those groups are held out whole and, with enough of them, the choice
is made on their predictions alone (`grouping`): what the profile promises then holds on writers it never saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace

import numpy as np

from mcp_latent.judge.decision import answerable_p, best_answer
from mcp_latent.judge.ensemble import (
    ensemble_logits,
    exact_neighbours,
    fit_temperature,
    nll,
    softmax,
)
from mcp_latent.judge.grouping import enough_foreign, grouped_folds, nearest_outside_group, spec_groups
from mcp_latent.judge.operating_point import MIN_THRESHOLD, Evidence, Family, Point, choose, score
from mcp_latent.judge.simulation import ensemble_on as _ensemble_on
from mcp_latent.judge.simulation import simulate_out_of_scope
from mcp_latent.judge.support import gate
from mcp_latent.judge.words import featurize
from mcp_latent.profiles.spec import ProfileSpec

log = logging.getLogger(__name__)

FIT_VERSION = "15"  # bump when fitting changes: cached fits keyed by it are then refitted
CV_FOLDS = 5
# Candidates chosen per profile by out-of-fold accuracy, near-ties by log-loss (SELECTION_TOLERANCE_SE): the
# head's inverse regularization, the kNN expert's weight (large clean profiles gain from neighbours, small noisy
# ones less), and the words expert's (proposals whose label turns on a few words gain most: risk, roi;
# paraphrased intents least).
HEAD_CS = (3.0, 10.0, 30.0)
KNN_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)
WORDS_WEIGHTS = (0.0, 0.1, 0.3, 0.6, 1.0)
# Candidates whose out-of-fold accuracy is within this many standard errors of the best count as tied, and the
# log-loss decides among them (the one-standard-error rule): accuracy alone swapped candidates a few exemplars
# apart between refits of nearly identical vectors, and log-loss alone chose less accurate ones.
SELECTION_TOLERANCE_SE = 1.0
# On evidence from held-out groups the accuracy target is raised by this many standard errors of a proportion at
# the target over that evidence (binomial, in-scope exemplars): a few hundred foreign exemplars estimate the
# answered accuracy within a point or two, and the estimate's error must fall on the side of fewer answers.
FOREIGN_MARGIN_SE = 1.0
MAX_TARGET = 0.995


def _folds(y: np.ndarray, n_folds: int, seed: int = 0) -> list[np.ndarray] | None:
    """Stratified fold assignment; None when some label has too few exemplars to hold any out."""
    counts = np.bincount(y)
    n_folds = min(n_folds, int(counts[counts > 0].min()))
    if n_folds < 2:
        return None
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        members = np.nonzero(y == label)[0]
        rng.shuffle(members)
        fold_of[members] = np.arange(len(members)) % n_folds
    return [np.nonzero(fold_of == f)[0] for f in range(n_folds)]


def _temperature_and_accuracy(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    temperature = fit_temperature(logits, y)
    return temperature, float((logits.argmax(axis=1) == y).mean()), -nll(logits / temperature, y)


def _select_head(
    oof_head: dict[float, np.ndarray],
    oof_votes: np.ndarray,
    oof_words: np.ndarray | None,
    y: np.ndarray,
    words_weights: tuple[float, ...] = WORDS_WEIGHTS,
) -> tuple[float, float, float, float, np.ndarray]:
    """(C, kNN weight, words weight, temperature, scaled logits): among the candidates whose out-of-fold accuracy
    is within SELECTION_TOLERANCE_SE standard errors of the best, the best log-loss (the temperature is fitted
    only for those: accuracy does not depend on it)."""
    if oof_words is None:
        words_weights = (0.0,)
    grid = [(c, kw, ww) for c in oof_head for kw in KNN_WEIGHTS for ww in words_weights]
    accuracy = [
        float((ensemble_logits(oof_head[c], oof_votes, kw, oof_words, ww).argmax(axis=1) == y).mean())
        for c, kw, ww in grid
    ]
    top = max(accuracy)
    tied_from = top - SELECTION_TOLERANCE_SE * np.sqrt(top * (1.0 - top) / len(y)) - 1e-12
    best = None  # only the best candidate's logits are kept: 90 copies of a large profile's would be ~500 MB
    for (c, kw, ww), acc in zip(grid, accuracy, strict=True):
        if acc < tied_from:
            continue
        logits = ensemble_logits(oof_head[c], oof_votes, kw, oof_words, ww)
        temperature, _, neg_nll = _temperature_and_accuracy(logits, y)
        if best is None or neg_nll > best[0]:
            best = (neg_nll, c, kw, ww, temperature, logits / temperature)
    _, c, knn_weight, words_weight, temperature, logits = best
    return c, knn_weight, words_weight, temperature, logits


def gather_evidence(
    vectors: np.ndarray,
    y: np.ndarray,
    n_labels: int,
    abstain: np.ndarray | None = None,
    texts: list[str] | None = None,
    groups: list[str] | None = None,
) -> tuple[float, Evidence, bool] | None:
    """Cross-validate the ensemble on the exemplars: (head C, evidence for the ensemble, for the ensemble without
    the words expert when it has one, and for the head alone; whether that evidence is the held-out groups').
    Exemplars of abstain labels (`abstain`: (L,) bool) are out-of-scope evidence: held out like the others, they
    say how often the rule abstains on such texts. texts: the exemplars' (None, or not one per exemplar: no words
    expert). groups: each exemplar's writer or source ("" for none; `grouping`): a group is held out whole, and
    when enough exemplars were, the weights, the temperature and the in-scope evidence come from them alone.
    None when some label has too few exemplars to hold any out."""
    foreign = None
    if groups is not None:
        grouped = grouped_folds(y, groups, CV_FOLDS)
        if grouped is None:
            return None
        folds, foreign = grouped
    else:
        folds = _folds(y, CV_FOLDS)
        if folds is None:
            return None
    words_of = featurize(texts) if texts is not None and len(texts) == len(y) else None
    oof_head = {c: np.zeros((len(y), n_labels), dtype=np.float32) for c in HEAD_CS}
    oof_votes = np.zeros((len(y), n_labels), dtype=np.float64)
    oof_words = None if words_of is None else np.zeros((len(y), n_labels), dtype=np.float64)
    for held_out in folds:
        train = np.setdiff1d(np.arange(len(y)), held_out)
        train_texts, held_texts = (
            (None, None) if words_of is None else (words_of.subset(train), words_of.subset(held_out))
        )
        head, oof_votes[held_out], _, words = _ensemble_on(
            vectors[train], y[train], vectors[held_out], n_labels, HEAD_CS, train_texts, held_texts
        )
        for c in HEAD_CS:
            oof_head[c][held_out] = head[c]
        if oof_words is not None:
            oof_words[held_out] = words
    off_topic = np.zeros(len(y), dtype=bool) if abstain is None else abstain[y]
    # The exemplars whose predictions choose the weights, the temperature and the operating point: every one, or
    # (with enough of them) those held out with their whole group, so `p` means what it says on an unseen writer.
    judged = np.ones(len(y), dtype=bool)
    if foreign is not None and enough_foreign(foreign, y, ~off_topic):
        judged = foreign
    sel = np.nonzero(judged)[0]
    c, knn_weight, words_weight, _, _ = _select_head(
        {c: h[sel] for c, h in oof_head.items()}, oof_votes[sel], None if oof_words is None else oof_words[sel], y[sel]
    )
    params = [_family("ensemble", oof_head[c], oof_votes, knn_weight, oof_words, words_weight, y, judged)]
    if words_weight:
        # Texts the server has no words for (a handle stored without its text) are judged from the vector alone.
        _, vector_weight, _, _, _ = _select_head({c: oof_head[c][sel]}, oof_votes[sel], None, y[sel])
        if vector_weight:
            vector_only = _family("ensemble without words", oof_head[c], oof_votes, vector_weight, None, 0.0, y, judged)
            params.append(vector_only)
    # The head alone (no kNN or words expert, its own temperature) is the plain rule the chosen point is held
    # against (`operating_point.admissible`), and the fallback when no ensemble point is admissible.
    if knn_weight or words_weight:
        params.append(_family("head alone", oof_head[c], oof_votes, 0.0, None, 0.0, y, judged))
    simulated = simulate_out_of_scope(
        vectors, y, n_labels, c, [(kw, ww, t) for _, kw, ww, t, _ in params], abstain, words_of
    )
    nearest = _nearest_other(vectors)
    if judged is foreign:
        nearest = nearest_outside_group(vectors, groups, nearest)
    simulated_nearest = None if simulated is None else simulated[1]
    if off_topic.any():  # real out-of-scope texts, beside (or instead of) the simulated ones
        parts = [nearest[off_topic]] + ([] if simulated_nearest is None else [simulated_nearest])
        simulated_nearest = np.concatenate(parts)
    families = []
    for i, (name, weight, words_weight, temp, logits) in enumerate(params):
        probs = softmax(logits)
        best, _, _ = best_answer(probs, abstain)
        p = answerable_p(probs, abstain)
        simulated_p = None if simulated is None else simulated[0][i]
        if off_topic.any():
            simulated_p = np.concatenate([p[off_topic]] + ([] if simulated_p is None else [simulated_p]))
        in_scope = ~off_topic & judged
        families.append(Family(name, weight, temp, p[in_scope], (best == y)[in_scope], simulated_p, words_weight))
    return c, Evidence(nearest[~off_topic & judged], simulated_nearest, tuple(families)), judged is foreign


def _family(
    name: str,
    head: np.ndarray,
    votes: np.ndarray,
    knn_weight: float,
    words: np.ndarray | None,
    words_weight: float,
    y: np.ndarray,
    judged: np.ndarray,
) -> tuple[str, float, float, float, np.ndarray]:
    """(name, kNN weight, words weight, temperature, scaled out-of-fold logits): the temperature fitted on the
    judged exemplars only."""
    logits = ensemble_logits(head, votes, knn_weight, words, words_weight)
    temperature = fit_temperature(logits[judged], y[judged])
    return name, knn_weight, words_weight, temperature, logits / temperature


def _nearest_other(vectors: np.ndarray) -> np.ndarray:
    """Similarity of each exemplar's nearest other exemplar (leave one out): a text the server judges is compared
    with every exemplar, so this, not the nearest in a cross-validation fold (4/5 of them), is how far in-scope
    texts sit; the fold's figure flagged in-scope texts more often than the test sets did."""
    ids, sims = exact_neighbours(vectors, vectors, 2)
    if ids.shape[1] < 2:
        return np.full(len(vectors), -1.0, dtype=np.float32)
    return np.where(ids[:, 0] == np.arange(len(vectors)), sims[:, 1], sims[:, 0]).astype(np.float32)


@dataclass
class Calibration:
    """What the fit decided (the operating point among them), and the held-out evidence it decided on."""

    c: float
    knn_weight: float
    temperature: float
    threshold: float
    min_similarity: float
    cv_accuracy: float | None
    cv_coverage: float | None
    cv_answered_accuracy: float | None
    cv_out_of_scope_recall: float | None = None  # on the simulation; None when the profile has too few labels
    # False when the target accuracy is met only below MIN_USEFUL_COVERAGE (or not at all); then `knee_accuracy`
    # is the target to suggest: the knee of the cross-validated accuracy-vs-coverage curve.
    reachable: bool = True
    knee_accuracy: float | None = None
    words_weight: float = 0.0  # the words expert's (0: verdicts come from the vector alone)
    family: str = "ensemble"
    evidence: Evidence | None = field(default=None, repr=False, compare=False)
    # How texts without words (a handle stored with MCP_LATENT_STORE_TEXT off) are judged when the chosen family
    # uses the words expert: the operating point chosen among the families that judge from the vector alone.
    textless: Calibration | None = field(default=None, repr=False, compare=False)
    # 1.0 when the evidence is that of exemplars held out with their whole group (`grouping`): the target is then
    # met with a margin of FOREIGN_MARGIN_SE standard errors (a float, so it is stored with the other scalars).
    held_out_groups: float = 0.0

    def for_text(self, has_text: bool) -> Calibration:
        """The calibration that judges a text with (or without) its words."""
        return self if has_text or self.textless is None else self.textless

    def retarget(self, spec: ProfileSpec) -> Calibration:
        """The operating point for the spec's targets and fixed settings, chosen from the stored evidence: moving
        a profile's target accuracy never refits it."""
        if self.evidence is None:
            return gate(replace(self, **_fixed_or_default(spec)), spec)
        return _operate(self.c, self.evidence, spec, bool(self.held_out_groups))

    def estimate(self, family: int, threshold: float, min_similarity: float) -> Point:
        """Cross-validated estimates of any rule (for the build's curve and the harness)."""
        assert self.evidence is not None
        return score(self.evidence, family, threshold, min_similarity)

    # --- storage: flat arrays, so a fit file stays one .npz --------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        scalars = [getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SCALARS]
        out = {"calibration": np.array([np.nan if v is None else float(v) for v in scalars], dtype=np.float64)}
        out["calibration_family"] = np.array(self.family)
        if self.evidence is not None:
            ev = self.evidence
            out["evidence_nearest"] = ev.nearest
            if ev.simulated_nearest is not None:
                out["evidence_simulated_nearest"] = ev.simulated_nearest
            for i, fam in enumerate(ev.families):
                out[f"evidence_family{i}"] = np.array([fam.knn_weight, fam.temperature, fam.words_weight])
                out[f"evidence_family{i}_name"] = np.array(fam.name)
                out[f"evidence_family{i}_p"] = fam.p
                out[f"evidence_family{i}_correct"] = fam.correct
                if fam.simulated_p is not None:
                    out[f"evidence_family{i}_simulated_p"] = fam.simulated_p
        return out

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> Calibration:
        names = [f.name for f in fields(cls) if f.name not in _NOT_SCALARS]
        values = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, data["calibration"], strict=True)}
        values["reachable"] = bool(values["reachable"])
        evidence = None
        if "evidence_nearest" in data:
            families = []
            i = 0
            while f"evidence_family{i}" in data:
                weight, temperature, words_weight = data[f"evidence_family{i}"]
                simulated_key = f"evidence_family{i}_simulated_p"
                families.append(
                    Family(
                        str(data[f"evidence_family{i}_name"]),
                        float(weight),
                        float(temperature),
                        data[f"evidence_family{i}_p"],
                        data[f"evidence_family{i}_correct"],
                        data[simulated_key] if simulated_key in data else None,
                        float(words_weight),
                    )
                )
                i += 1
            simulated = data["evidence_simulated_nearest"] if "evidence_simulated_nearest" in data else None
            evidence = Evidence(data["evidence_nearest"], simulated, tuple(families))
        return cls(**values, family=str(data["calibration_family"]), evidence=evidence)


_NOT_SCALARS = ("family", "evidence", "textless")


def _fixed_or_default(spec: ProfileSpec) -> dict[str, float]:
    """Threshold and cutoff without evidence to choose them: the spec's fixed values, else the loosest."""
    return {
        "threshold": MIN_THRESHOLD if spec.threshold is None else spec.threshold,  # 0.0 is a valid setting
        "min_similarity": -1.0 if spec.min_similarity is None else spec.min_similarity,
    }


def _operate(c: float, evidence: Evidence, spec: ProfileSpec, held_out_groups: bool = False) -> Calibration:
    """The calibration at the operating point for the spec: its targets, or its fixed threshold/cutoff. On held-out
    groups' evidence (a few hundred exemplars) the accuracy target is met with a margin of its standard error."""
    target = spec.target_accuracy
    if held_out_groups:
        n = len(evidence.families[0].p)
        target = min(MAX_TARGET, target + FOREIGN_MARGIN_SE * np.sqrt(target * (1.0 - target) / max(n, 1)))
    choice = choose(evidence, target, spec.target_out_of_scope_recall)
    point = choice.point
    if spec.threshold is not None or spec.min_similarity is not None:
        # A fixed setting replaces the chosen value; the estimates are those of the rule as it will run.
        point = score(
            evidence,
            point.family,
            point.threshold if spec.threshold is None else spec.threshold,
            point.min_similarity if spec.min_similarity is None else spec.min_similarity,
        )
    fam = evidence.families[point.family]
    calibration = Calibration(
        c=c,
        knn_weight=fam.knn_weight,
        temperature=fam.temperature,
        threshold=point.threshold,
        min_similarity=point.min_similarity,
        cv_accuracy=float(fam.correct.mean()),
        cv_coverage=point.coverage,
        cv_answered_accuracy=point.answered_accuracy,
        cv_out_of_scope_recall=point.out_of_scope_recall,
        reachable=choice.reachable,
        knee_accuracy=choice.knee.answered_accuracy,
        words_weight=fam.words_weight,
        family=fam.name,
        evidence=evidence,
        textless=_operate(c, evidence.from_vectors(), spec, held_out_groups) if fam.words_weight else None,
        held_out_groups=float(held_out_groups),
    )
    return gate(calibration, spec)


def fit_calibration(
    vectors: np.ndarray, y: np.ndarray, n_labels: int, spec: ProfileSpec, texts: list[str] | None = None
) -> Calibration:
    """Cross-validate the ensemble on the exemplars (and their texts, for the words expert) and choose the
    operating point for the spec's targets."""
    abstain = np.array([label.abstain for label in spec.labels], dtype=bool)
    groups = spec_groups(spec, texts, len(y))
    gathered = gather_evidence(vectors, y, n_labels, abstain if abstain.any() else None, texts, groups)
    if gathered is None:
        log.info("profile %s: too few exemplars per label to cross-validate; default calibration", spec.name)
        default = Calibration(
            HEAD_CS[1],
            0.0,
            1.0,
            **_fixed_or_default(spec),
            cv_accuracy=None,
            cv_coverage=None,
            cv_answered_accuracy=None,
        )
        return gate(default, spec)
    c, evidence, held_out_groups = gathered
    return _operate(c, evidence, spec, held_out_groups)
