"""Choosing where a profile answers and where it abstains, from held-out evidence only.

An operating point is a way of turning probabilities into probabilities (a "family": the ensemble, or the linear
head alone), a confidence threshold and an out-of-scope cutoff on the similarity of the nearest exemplar. Every
candidate is scored on three axes by the rule the server runs (`decision.answered_mask`): coverage and answered
accuracy on out-of-fold predictions of the profile's own exemplars, and out-of-scope recall on a simulation in
which labels hidden from the fit play the unseen topics. The threshold and the cutoff are chosen together.

The anchor is the plain rule: the linear head alone, thresholded, with no out-of-scope cutoff. A candidate is
admissible only if no anchor point is as good on coverage and answered accuracy and better on one: whether a
deployment will see out-of-scope texts at all is unknown to the fit, so the out-of-scope recall a cutoff buys
must never be paid for with in-scope answers the plain rule would have given right (on a set with no
out-of-scope texts that recall is worth nothing). Among admissible points `choose` takes the most coverage that
meets the targets, ties to accuracy then recall, so no candidate dominates its choice on the three axes. The
ensemble (the family cross-validation chose for its accuracy) is preferred; the head alone is chosen only
when no ensemble point is admissible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcp_latent.judge.decision import answered_mask

MIN_THRESHOLD = 0.5  # never answer with a label the model itself thinks is more likely wrong than right


# Below this cross-validated coverage a target accuracy is "out of reach": the profile would escalate most texts.
MIN_USEFUL_COVERAGE = 0.5


# The out-of-scope cutoff never goes below this: the similarity that all but this share of held-out in-scope
# exemplars reach to their nearest exemplar, minus a margin (small profiles estimate that quantile noisily).
OUT_OF_SCOPE_QUANTILE = 0.01


OUT_OF_SCOPE_MARGIN = 0.03


# ...and never above the similarity that this share of held-out in-scope exemplars falls below: an unreachable
# out-of-scope target must not silence the profile.
MAX_IN_SCOPE_FLAGGED = 0.2


NO_CUTOFF = -1.0  # the anchor's cutoff: cosine similarity is never below it


# A candidate must beat the plain rule by this many standard errors of its own cross-validated accuracy: a point
# that merely ties the plain rule on the exemplars falls on either side of it on a test set.
ADMISSIBLE_MARGIN = 1.0


CUTOFF_STEPS = 41  # candidate cutoffs between the floor and the ceiling (in-scope quantile steps of 0.5%)


THRESHOLD_STEPS = 201  # candidate thresholds per family: quantiles of its out-of-fold confidence


@dataclass(frozen=True)
class Family:
    """One way of turning the fit into probabilities, with its out-of-fold evidence."""

    name: str
    knn_weight: float
    temperature: float
    p: np.ndarray  # (n,) top probability of each exemplar, from a fit that did not see it
    correct: np.ndarray  # (n,) whether that top label was the exemplar's own
    simulated_p: np.ndarray | None  # (m,) top probability of simulated out-of-scope texts; None: no simulation
    words_weight: float = 0.0  # the words expert's weight (0: the family judges from the vector alone)


@dataclass(frozen=True)
class Evidence:
    """Everything the choice of an operating point needs; small, so fits store it and `tune` reuses it."""

    nearest: np.ndarray  # (n,) similarity of each exemplar's nearest other exemplar (leave one out)
    simulated_nearest: np.ndarray | None  # (m,) the same for the simulated out-of-scope texts
    families: tuple[Family, ...]

    @property
    def simulated(self) -> bool:
        return self.simulated_nearest is not None

    def anchor(self) -> int:
        """Index of the family without the kNN and words experts (the linear head alone): the plain rule to beat.
        The ensemble itself when cross-validation gave both experts no weight."""
        plain = (f for f, fam in enumerate(self.families) if fam.knn_weight == 0.0 and fam.words_weight == 0.0)
        return next(plain, 0)

    def from_vectors(self) -> Evidence:
        """The evidence of the families that judge from the vector alone (no words expert): the operating point
        for texts the server has no words for (a handle stored with MCP_LATENT_STORE_TEXT off)."""
        return Evidence(self.nearest, self.simulated_nearest, tuple(f for f in self.families if f.words_weight == 0.0))

    def floor(self) -> float:
        """The lowest out-of-scope cutoff: all but OUT_OF_SCOPE_QUANTILE of held-out in-scope exemplars reach it."""
        return float(np.quantile(self.nearest, OUT_OF_SCOPE_QUANTILE)) - OUT_OF_SCOPE_MARGIN

    def cutoffs(self) -> np.ndarray:
        """Candidate cutoffs: the floor, and (with a simulation to judge them) the in-scope quantiles up to the
        ceiling. Without out-of-scope evidence a higher cutoff could only be judged by what it costs."""
        floor = self.floor()
        if not self.simulated:
            return np.array([floor])
        steps = np.quantile(self.nearest, np.linspace(0.0, MAX_IN_SCOPE_FLAGGED, CUTOFF_STEPS))
        return np.unique(np.concatenate([[floor], steps[steps > floor]]))


@dataclass(frozen=True)
class Point:
    """One candidate rule and its cross-validated estimates (recall: None without a simulation)."""

    family: int
    threshold: float
    min_similarity: float
    coverage: float
    answered_accuracy: float | None
    out_of_scope_recall: float | None


@dataclass(frozen=True)
class Curve:
    """Every candidate point, as parallel arrays."""

    family: np.ndarray
    threshold: np.ndarray
    min_similarity: np.ndarray
    coverage: np.ndarray
    answered_accuracy: np.ndarray  # NaN where nothing is answered
    out_of_scope_recall: np.ndarray  # NaN without a simulation

    def point(self, i: int) -> Point:
        def value(array: np.ndarray) -> float | None:
            return None if np.isnan(array[i]) else float(array[i])

        return Point(
            int(self.family[i]),
            float(self.threshold[i]),
            float(self.min_similarity[i]),
            float(self.coverage[i]),
            value(self.answered_accuracy),
            value(self.out_of_scope_recall),
        )

    def recall(self) -> np.ndarray:
        """Out-of-scope recall for comparisons: a constant where there is no simulation."""
        return np.nan_to_num(self.out_of_scope_recall, nan=0.0)


def _thresholds(fam: Family) -> np.ndarray:
    """Candidate thresholds of a family: quantile steps of its confidence, and the corners of its accuracy curve
    (just above each wrong answer's p). Lowering a threshold onto a right answer gains coverage and accuracy at
    once, so only the corners can be best, and the plain rule is compared at all of them (`plain_rule`): on the
    quantile steps alone, a step that missed a corner was beaten by it, whether steps landed on corners decided
    which points survived, and the choice jumped between fits of nearly identical vectors (the shipped risk
    profile: thresholds 0.82 and 0.87, 28% and 21% coverage)."""
    answerable = fam.p[fam.p >= MIN_THRESHOLD]
    steps = np.quantile(answerable, np.linspace(0.0, 1.0, THRESHOLD_STEPS)) if len(answerable) else np.empty(0)
    distinct = np.unique(answerable)
    wrong = np.unique(fam.p[~fam.correct & (fam.p >= MIN_THRESHOLD)])
    above = np.searchsorted(distinct, wrong, side="right")  # the next distinct p above each wrong answer's
    corners = distinct[above[above < len(distinct)]]
    return np.unique(np.concatenate([[MIN_THRESHOLD], steps, corners]))


def score(evidence: Evidence, family: int, threshold: float, min_similarity: float) -> Point:
    """The estimates of one rule, computed the slow, obvious way (the curve's arithmetic is checked against it)."""
    fam = evidence.families[family]
    answered = answered_mask(fam.p, evidence.nearest, threshold, min_similarity)
    recall = None
    if evidence.simulated and fam.simulated_p is not None:
        flagged = ~answered_mask(fam.simulated_p, evidence.simulated_nearest, threshold, min_similarity)
        recall = float(flagged.mean())
    return Point(
        family,
        threshold,
        min_similarity,
        float(answered.mean()),
        float(fam.correct[answered].mean()) if answered.any() else None,
        recall,
    )


def curve(evidence: Evidence) -> Curve:
    """Every (family, threshold, cutoff) candidate with its estimates, the anchor (the head alone with no cutoff)
    among them; one sort per family and cutoff."""
    columns: list[list[np.ndarray]] = [[] for _ in range(6)]
    n = len(evidence.nearest)
    anchor = evidence.anchor()
    for f, fam in enumerate(evidence.families):
        thresholds = _thresholds(fam)
        order = np.argsort(-fam.p, kind="stable")
        p_desc = fam.p[order]
        # answered_mask is p >= t: the first `count` rows of the descending order
        count = np.searchsorted(-p_desc, -thresholds, side="right")
        cutoffs = evidence.cutoffs()
        if f == anchor:
            cutoffs = np.concatenate([[NO_CUTOFF], cutoffs])
        for cutoff in cutoffs:
            near = evidence.nearest[order] >= cutoff  # the same comparison as answered_mask
            answered = np.concatenate([[0], np.cumsum(near)])[count]
            hits = np.concatenate([[0], np.cumsum(near & fam.correct[order])])[count]
            with np.errstate(invalid="ignore", divide="ignore"):
                accuracy = np.where(answered > 0, hits / np.maximum(answered, 1), np.nan)
            if evidence.simulated and fam.simulated_p is not None:
                still = np.sort(fam.simulated_p[evidence.simulated_nearest >= cutoff])
                answered_oos = len(still) - np.searchsorted(still, thresholds, side="left")
                recall = (len(fam.simulated_p) - answered_oos) / len(fam.simulated_p)
            else:
                recall = np.full(len(thresholds), np.nan)
            same = np.ones(len(thresholds))
            values = (f * same, thresholds, cutoff * same, answered / n, accuracy, recall)
            for column, value in zip(columns, values, strict=True):
                column.append(np.asarray(value, dtype=np.float64))
    arrays = [np.concatenate(column) for column in columns]
    return Curve(arrays[0].astype(np.int64), *arrays[1:])


def anchor_points(evidence: Evidence, c: Curve) -> np.ndarray:
    """Indexes of the anchor's points in the curve: the head alone, thresholded, no cutoff."""
    return np.nonzero((c.family == evidence.anchor()) & (c.min_similarity == NO_CUTOFF))[0]


def plain_rule(evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, answered accuracy) of the plain rule at every threshold from MIN_THRESHOLD up (each distinct
    probability, not the curve's quantile steps: a threshold between two steps can beat a candidate too)."""
    fam = evidence.families[evidence.anchor()]
    order = np.argsort(-fam.p, kind="stable")
    p_desc = fam.p[order]
    answered = np.arange(1, len(order) + 1)
    hits = np.cumsum(fam.correct[order])
    last = np.r_[p_desc[1:] != p_desc[:-1], True] & (p_desc >= MIN_THRESHOLD)  # the last row of each distinct p
    return answered[last] / len(order), hits[last] / answered[last]


def admissible(evidence: Evidence, c: Curve, margin: float = ADMISSIBLE_MARGIN) -> np.ndarray:
    """(len(curve),) bool: the candidates no threshold of the plain rule dominates on coverage and answered
    accuracy (at least as much of each and more of one), once each candidate's accuracy is lowered by `margin`
    standard errors of its own estimate (so a candidate must beat the plain rule by more than the estimate's
    noise; the anchor's own points are judged without margin). Two envelopes over the plain rule, sorted by
    coverage: the best accuracy at each coverage or more, and at strictly more."""
    a_cov, a_acc = plain_rule(evidence)
    if len(a_cov) == 0:  # no held-out p reaches MIN_THRESHOLD (2 exemplars a label): no plain point dominates
        return np.ones(len(c.coverage), dtype=bool)
    order = np.argsort(-a_cov, kind="stable")
    a_cov, best = a_cov[order], np.maximum.accumulate(a_acc[order])  # best[i]: top accuracy at coverage >= a_cov[i]
    accuracy = np.nan_to_num(c.answered_accuracy, nan=-1.0)
    answered = np.maximum(c.coverage * len(evidence.nearest), 1.0)
    error = np.sqrt(np.clip(accuracy, 0.0, 1.0) * (1.0 - np.clip(accuracy, 0.0, 1.0)) / answered)
    is_anchor = np.zeros(len(accuracy), dtype=bool)
    is_anchor[anchor_points(evidence, c)] = True
    accuracy = np.where(is_anchor, accuracy, accuracy - margin * error)
    coverage = c.coverage

    def best_with(count: np.ndarray) -> np.ndarray:  # top accuracy among the first `count` anchors (widest first)
        return np.where(count > 0, best[np.maximum(count - 1, 0)], -np.inf)

    at_least = best_with(np.searchsorted(-a_cov, -coverage, side="right"))  # plain points with coverage >= x
    more = best_with(np.searchsorted(-a_cov, -coverage, side="left"))  # plain points with coverage > x
    with np.errstate(invalid="ignore"):
        return ~((at_least > accuracy + 1e-12) | (more >= accuracy - 1e-12))


def _best(c: Curve, pool: np.ndarray, keys: tuple[np.ndarray, ...]) -> int:
    """Index of the lexicographically largest `keys` within `pool` (the first key matters most); among exact ties
    a rule with a cutoff (the floor still catches texts far from every exemplar, which the evidence may lack), then
    the lowest threshold and cutoff, which answer the most of what the evidence has not seen."""
    keys = (*keys, c.min_similarity != NO_CUTOFF, -c.threshold, -c.min_similarity)
    candidates = np.nonzero(pool)[0]
    order = np.lexsort(tuple(np.nan_to_num(k[candidates], nan=-1.0) for k in reversed(keys)))
    return int(candidates[order[-1]])


@dataclass(frozen=True)
class Choice:
    """The chosen point, whether the target accuracy holds at useful coverage, and the knee of the curve."""

    point: Point
    reachable: bool
    knee: Point


def _choose_in(
    evidence: Evidence, c: Curve, pool: np.ndarray, target_accuracy: float, target_recall: float
) -> tuple[int, int]:
    """(index, tier) of the choice within `pool`, by the first tier that has candidates: 4, both targets met at
    useful coverage (the most coverage); 3, the accuracy target met at useful coverage (the most recall); 2 and
    1, the same below useful coverage; 0, neither (the most accurate point)."""
    accuracy = np.nan_to_num(c.answered_accuracy, nan=-1.0)
    recall = c.recall()
    accurate = pool & (accuracy >= target_accuracy - 1e-12)
    both = accurate & (recall >= target_recall - 1e-12) if evidence.simulated else accurate
    useful = c.coverage >= MIN_USEFUL_COVERAGE
    by_coverage, by_recall = (c.coverage, accuracy, recall), (recall, c.coverage, accuracy)
    for tier, candidates, keys in (
        (4, both & useful, by_coverage),
        (3, accurate & useful, by_recall),
        (2, both, by_coverage),
        (1, accurate, by_recall),
    ):
        if candidates.any():
            return _best(c, candidates, keys), tier
    return _best(c, pool, (accuracy, c.coverage, recall)), 0


def choose(
    evidence: Evidence, target_accuracy: float, target_recall: float, margin: float = ADMISSIBLE_MARGIN
) -> Choice:
    """Among admissible candidates, the most coverage that meets the target answered accuracy and (where
    simulated) out-of-scope recall; ties go to accuracy, then recall, so the choice is never dominated by another
    candidate. When the recall target cannot be met with the accuracy target, the most recall that keeps useful
    coverage; when the accuracy target cannot be met at all, the most accurate point. The ensemble's point is
    taken unless only another family's meets more of the targets (the ensemble's labels are the more accurate),
    and one that beats the plain rule by `margin` standard errors unless only a closer one meets more."""
    c = curve(evidence)
    plain = admissible(evidence, c, 0.0)
    ensemble = c.family == 0
    # In order of preference: the ensemble beating the plain rule by the margin, the ensemble at least tying it,
    # any admissible rule (the head alone, and the plain rule itself, among them). A later pool is used only when
    # it meets more of the targets, or meets as many and is better on what that tier maximizes by more than the
    # estimate's noise (one standard error): the preference must not cost a clear loss of coverage or recall.
    pools = [pool for pool in (admissible(evidence, c, margin) & ensemble, plain & ensemble, plain) if pool.any()]
    chosen = None
    for pool in pools:
        (index, tier) = _choose_in(evidence, c, pool, target_accuracy, target_recall)
        if (
            chosen is None
            or tier > chosen[1]
            or (tier == chosen[1] and _clearly_better(evidence, c, tier, index, chosen[0]))
        ):
            chosen = (index, tier, pool)
    best, tier, pool = chosen
    return Choice(c.point(best), tier >= 3, knee(c, target_recall if evidence.simulated else None, pool))


def _clearly_better(evidence: Evidence, c: Curve, tier: int, a: int, b: int) -> bool:
    """Whether point a beats point b on what `tier` maximizes (coverage, recall or accuracy) by more than one
    standard error of b's estimate."""
    if tier in (4, 2):
        values, n = c.coverage, len(evidence.nearest)
    elif tier in (3, 1) and evidence.simulated:
        values, n = c.recall(), len(evidence.simulated_nearest)
    else:
        values, n = np.nan_to_num(c.answered_accuracy, nan=-1.0), max(c.coverage[b] * len(evidence.nearest), 1.0)
    error = np.sqrt(max(values[b] * (1.0 - values[b]), 0.0) / n)
    return bool(values[a] > values[b] + error)


def front_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indexes of the points no other point beats on both x and y (higher is better), by increasing x."""
    order = np.lexsort((-y, -x))  # widest first, best y first among equals
    best_y = np.maximum.accumulate(np.concatenate([[-np.inf], y[order]]))[:-1]
    keep = order[y[order] > best_y]  # strictly better y than every wider point
    return keep[::-1]


def knee(c: Curve, target_recall: float | None, pool: np.ndarray | None = None) -> Point:
    """The knee of the accuracy-vs-coverage front (among points meeting the recall target where any do): the point
    farthest above the chord from its most accurate to its widest end (Kneedle), at no less than useful coverage.
    Suggested as the target accuracy when the asked one is out of reach. pool: the candidates to consider."""
    pool = np.ones(len(c.coverage), dtype=bool) if pool is None else pool
    if target_recall is not None and (pool & (c.recall() >= target_recall - 1e-12)).any():
        pool = pool & (c.recall() >= target_recall - 1e-12)
    accuracy = np.nan_to_num(c.answered_accuracy, nan=-1.0)
    # the upper envelope: for each coverage, the best accuracy at that coverage or more
    idx = np.nonzero(pool)[0]
    idx = idx[np.argsort(-c.coverage[idx], kind="stable")]
    envelope, best = [], -np.inf
    for i in idx:
        if accuracy[i] > best:
            best = accuracy[i]
            envelope.append(i)
    envelope = np.array(envelope[::-1])  # ascending accuracy, descending coverage... reversed: from most accurate
    x, a = c.coverage[envelope], accuracy[envelope]
    span_x, span_a = x.max() - x.min(), a.max() - a.min()
    if len(envelope) < 3 or span_x <= 0 or span_a <= 0:
        return c.point(int(envelope[0]))
    xn, an = (x - x.min()) / span_x, (a - a.min()) / span_a
    lift = an - (1.0 - xn)  # distance above the chord from (0, 1) to (1, 0) in normalized units
    useful = x >= MIN_USEFUL_COVERAGE
    lift = np.where(useful, lift, -np.inf) if useful.any() else lift
    return c.point(int(envelope[int(np.argmax(lift))]))
