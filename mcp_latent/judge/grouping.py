"""Cross-validation folds that hold out whole groups of exemplars (a writer, a source), so the evidence an
operating point is chosen on comes from text whose like the fit never saw.

Why (issue 24): stratified folds put a writer's other exemplars, paraphrases and minimal pairs of the held-out
one beside it in training, and on one writer's exemplars the cross-validated 90% became 70% on other writers'
proposals. Holding out a group at a time measures the profile the way foreign text meets it.

Groups come from the profile file (`LabelSpec.groups`); exemplars without one (and groups too large to hold out
without starving a fold: a profile's own main writer) are split across folds by label as before. The exemplars
held out with their whole group are the "foreign" ones: when there are enough of them, the temperature and the
operating point are chosen on them alone.
"""

from __future__ import annotations

import numpy as np

from mcp_latent.profiles.spec import ProfileSpec

# A group is held out whole only if it holds at most this share of one fold's exemplars: a larger one (the main
# writer of a profile) would leave its fold's training set without most of the profile.
MAX_GROUP_SHARE_OF_FOLD = 0.5
# The temperature and the operating point are chosen on foreign exemplars alone when at least this many in-scope
# ones exist, with at least MIN_FOREIGN_PER_LABEL of each answer label that has any: fewer would set a threshold
# on noise (the 90% quantile of 50 texts moves by several points between refits).
MIN_FOREIGN = 100
MIN_FOREIGN_PER_LABEL = 5


def spec_groups(spec: ProfileSpec, texts: list[str] | None, n: int) -> list[str] | None:
    """Each exemplar's group ("" for none), matched by text to the spec's examples (taught exemplars, appended
    after the file's, have none); None when no exemplar has one."""
    if texts is None or len(texts) != n:
        return None
    group_of: dict[str, str] = {}
    for label in spec.labels:
        group_of.update(label.group_of())
    if not group_of:
        return None
    groups = [group_of.get(text.strip(), "") for text in texts]
    return groups if any(groups) else None


def grouped_folds(
    y: np.ndarray, groups: list[str], n_folds: int, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """(held-out indexes per fold, foreign mask): groups small enough are assigned whole to folds (largest first,
    each to the fold with the fewest exemplars so far); every other exemplar is split by label. foreign: the
    exemplars held out with their whole group. None when some label has too few exemplars to hold any out."""
    counts = np.bincount(y)
    n_folds = min(n_folds, int(counts[counts > 0].min()))
    if n_folds < 2:
        return None
    names = np.array(groups, dtype=object)
    limit = MAX_GROUP_SHARE_OF_FOLD * len(y) / n_folds
    whole = {g for g in set(groups) if g and np.count_nonzero(names == g) <= limit}
    foreign = np.array([g in whole for g in groups], dtype=bool)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    ordered = sorted(whole)
    rng.shuffle(ordered)  # ties in size fall in a seeded, not alphabetical, order
    for group in sorted(ordered, key=lambda g: -np.count_nonzero(names == g)):
        members = np.nonzero(names == group)[0]
        fold = int(sizes.argmin())
        fold_of[members] = fold
        sizes[fold] += len(members)
    for label in np.unique(y):
        members = np.nonzero((y == label) & ~foreign)[0]
        rng.shuffle(members)
        # continue each label's round-robin from the emptiest fold, so folds stay balanced
        start = int(sizes.argmin())
        fold_of[members] = (start + np.arange(len(members))) % n_folds
        np.add.at(sizes, fold_of[members], 1)
    return [np.nonzero(fold_of == f)[0] for f in range(n_folds)], foreign


def enough_foreign(foreign: np.ndarray, y: np.ndarray, in_scope: np.ndarray) -> bool:
    """Whether the foreign in-scope exemplars can carry the operating point on their own."""
    chosen = foreign & in_scope
    if chosen.sum() < MIN_FOREIGN:
        return False
    per_label = np.bincount(y[chosen])
    return bool((per_label[per_label > 0] >= MIN_FOREIGN_PER_LABEL).all()) and np.count_nonzero(per_label) >= 2


def nearest_outside_group(vectors: np.ndarray, groups: list[str], nearest: np.ndarray) -> np.ndarray:
    """Similarity of each exemplar's nearest exemplar of another group (groupless exemplars keep `nearest`): how far
    a text of an unseen writer sits from the profile, for the out-of-scope cutoff."""
    names = np.array(groups, dtype=object)
    out = nearest.copy()
    grouped = np.nonzero(names != "")[0]
    if len(grouped) == 0:
        return out
    sims = vectors[grouped] @ vectors.T
    for row, i in enumerate(grouped):
        sims[row, names == names[i]] = -np.inf
    out[grouped] = sims.max(axis=1)
    return out
