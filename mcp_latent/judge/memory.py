"""Answers from memory: a text (nearly) identical to one of the profile's exemplars gets that exemplar's label, so
a decision taught with `teach` is answered as taught from the next call, whatever the head and the threshold say.

How near is "nearly identical" is fitted from the profile's own exemplars, never guessed. Similarity alone cannot
tell a minimal pair from a copy (all-MiniLM-L6-v2: "...with a tested rollback plan and a verified backup" vs
"...without any rollback plan or backup" 0.958, a paraphrase that keeps the safeguards 0.93), so a text that is not
identical must also *read* like the exemplar to the profile's own model (the guard): the log-odds of the
exemplar's label against all the others, by the ensemble without kNN (linear head plus words expert,
`memory_evidence.Head`), may not drop from the exemplar's reading to the text's by more than a limit. Both are
read by one model: at fit time a fold model that has not counted the text asked about (as a new text is read
beside an exemplar the served model has learnt), when serving the snapshot's.

The guard and the radius are fitted together, on every pair of the profile's exemplars at least SHIFT_BAND
similar (its minimal pairs are pairs of different labels):
- the limit is the widest at which no more of the profile's minimal pairs pass than the target allows (1 - target
  of them: a minimal-pair rewrite of a taught text is answered with the taught label no more often than that);
  with fewer than MIN_PAIRS minimal pairs, the widest at which the close pairs within it agree as often as the
  target;
- the radius is the lowest similarity at which the pairs that *also* pass the guard, at least that close, agree as
  often as the target (minimal pairs the guard already rejects do not count against it), above every minimal pair
  that passes the guard, and never below SHIFT_BAND, where the evidence ends.
Without a head to read with (a cold start's first teaches) the older rule holds: the radius from each exemplar's
nearest neighbour, above the closest minimal pair, never below MIN_RADIUS, and no guard; with fewer than MIN_PAIRS
close pairs either way, only identical texts are copies.
Texts with identical vectors are the same text: of conflicting labels for one text, the latest taught wins.

Pure arithmetic on arrays (no threads, no I/O): `FittedProfile` holds a `Memory` and `LiveProfile` grows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mcp_latent.judge.memory_evidence import (
    IDENTICAL,
    SHIFT_BAND,
    Head,
    close_pairs,
    fold_shifts,
)

# The memory's evidence beside the exemplars: (vectors, texts, label ids) of a profile file's `pair_examples`.
Evidence = tuple[np.ndarray, list[str], np.ndarray]

# Without the guard's evidence the radius never goes below this: a profile with few or clean exemplars measures
# perfect agreement far down, where a paraphrase with another outcome already sits (MiniLM: 0.85-0.95).
MIN_RADIUS = 0.9
# A near copy must be this much closer than the closest minimal pair the guard lets through.
PAIR_MARGIN = 0.01
# Fewer close exemplar pairs than this: nothing measured about close texts, only identical ones are copies; fewer
# minimal pairs than this: their share passing the guard is not measured, the agreement alone sets the limit.
MIN_PAIRS = 10
# Whether a reading that corroborates the exemplar's label may pass a wider, separately fitted limit.
CORROBORATE = True


@dataclass(frozen=True)
class Memory:
    """The fitted radius and guard and the evidence they came from. Immutable; `with_rows` gives the grown one."""

    pair_sim: np.ndarray  # (n,) each exemplar's nearest other exemplar's similarity (identical texts left out)
    pair_same: np.ndarray  # (n,) whether that neighbour has the same label
    minimal_pair: float  # the closest two exemplars of different labels (guarded: that the guard lets through)
    target: float
    # The guard's evidence (None: unguarded): every ordered pair of exemplars at least SHIFT_BAND similar, (m, 4)
    # [similarity, same label, shift, corroborated: the model's best label for the first is the second's] ((m, 3)
    # when stored before corroboration: none corroborated).
    close: np.ndarray | None = None
    radius: float = 1.0
    accuracy: float = 1.0  # agreement of the exemplar pairs within the radius (and guard): the p of a memory answer
    shift_limit: float | None = None  # the guard's limit (None: unguarded)
    # The guard's limit for a corroborated reading (the model's best label is the exemplar's), never below
    # shift_limit: a paraphrase the head reads less surely but as the same label (`_corroborated_limit`).
    corroborated_limit: float | None = None
    # Fitted with the file's minimal pairs (`pair_examples`): the close pairs are mostly minimal pairs because
    # the writer wrote them so, and the share of them that passes, not the agreement of all that pass, bounds it.
    budgeted: bool = False

    @property
    def guarded(self) -> bool:
        return self.close is not None

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        y: np.ndarray,
        target: float,
        head: Head | None = None,
        texts=None,
        evidence: Evidence | None = None,
    ) -> Memory:
        """Compare every exemplar with every other (blocked: O(n^2 d), about a second for 10,000) and fit; with the
        profile's `head` (and the exemplars' `texts` when it reads words) the guard too. `evidence` (vectors, texts,
        label ids: the profile file's `pair_examples`) joins the exemplars as evidence for the guard and radius
        only; nothing is ever answered from it."""
        budgeted = evidence is not None and head is not None and len(evidence[2]) > 0
        if budgeted:
            assert evidence is not None
            vectors = np.concatenate([vectors, np.asarray(evidence[0], dtype=vectors.dtype)])
            y = np.concatenate([y, np.asarray(evidence[2], dtype=y.dtype)])
            texts = None if texts is None else list(texts) + list(evidence[1])
        nearest, nearest_sim, pairs, minimal_pair = close_pairs(vectors, y)
        same = y[nearest] == y
        if head is None or len(y) < 2:
            return cls(nearest_sim, same, minimal_pair, target).retarget(target)
        shift, agrees = fold_shifts(vectors, y, head, None if texts is None else list(texts), pairs)
        i, k = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        close = np.stack([pairs[:, 2], y[i] == y[k], shift, agrees], axis=1)
        return cls(nearest_sim, same, minimal_pair, target, close, budgeted=budgeted).retarget(target)

    def retarget(self, target: float) -> Memory:
        """The radius (and guard) for a target accuracy, from the stored evidence: no comparison is redone."""
        if self.guarded:
            return self._retarget_guarded(target)
        order = np.argsort(-self.pair_sim, kind="stable")
        sims = self.pair_sim[order]
        agreement = np.cumsum(self.pair_same[order]) / np.arange(1, len(sims) + 1)
        meets = np.nonzero(agreement >= target - 1e-12)[0]
        # The widest radius whose pairs all together still meet the target. None meets it when the closest pair
        # disagrees: then no pair at all is as close as a copy, and the minimal-pair bound decides.
        by_accuracy = float(sims[meets[-1]]) if len(meets) else -1.0
        radius = min(IDENTICAL, max(MIN_RADIUS, by_accuracy, self.minimal_pair + PAIR_MARGIN))
        if (self.pair_sim >= SHIFT_BAND).sum() < MIN_PAIRS:  # nothing measured about close texts: identical only
            radius = IDENTICAL
        within = sims >= radius
        # no exemplar pair that close: no measured agreement, claim the target's
        accuracy = float(agreement[np.nonzero(within)[0][-1]]) if within.any() else target
        return replace(self, target=target, radius=radius, accuracy=max(accuracy, target))

    def _retarget_guarded(self, target: float) -> Memory:
        assert self.close is not None
        sims, same, shift = self.close[:, 0], self.close[:, 1].astype(bool), self.close[:, 2]
        agrees = self.close[:, 3].astype(bool) if self.close.shape[1] > 3 else np.zeros(len(sims), dtype=bool)
        if len(sims) < MIN_PAIRS:  # nothing measured about close texts: identical only
            return replace(
                self, target=target, radius=IDENTICAL, accuracy=target, shift_limit=0.0, corroborated_limit=0.0
            )
        limit = _limit(shift, same, target)
        wider = _corroborated_limit(shift, same, agrees, limit, target) if CORROBORATE else limit
        passes = (shift <= limit) | (agrees & (shift <= wider))
        n_minimal = int((~same).sum())
        passing = np.sort(sims[passes & ~same])[::-1]
        # The closest minimal pair the guard lets through: a copy must be closer than that (kept when a teach
        # raised it: `with_rows`). Budgeted, with MIN_PAIRS minimal pairs or more, the 1 - target of them the limit
        # lets through are the measured cost of memory, not a bound: only those past that share (the limit stops
        # at 0) hold the radius up.
        budget = self.budgeted and n_minimal >= MIN_PAIRS
        allowed = int(np.floor((1.0 - target) * n_minimal + 1e-9)) if budget else 0
        passing_pair = float(passing[allowed]) if len(passing) > allowed else -1.0
        minimal_pair = max(passing_pair, self.minimal_pair if self.shift_limit is not None else -1.0)
        order = np.argsort(-sims[passes], kind="stable")
        ranked = sims[passes][order]
        agreement = np.cumsum(same[passes][order]) / np.arange(1, len(ranked) + 1)
        meets = np.nonzero(agreement >= target - 1e-12)[0]
        by_accuracy = float(ranked[meets[-1]]) if len(meets) else IDENTICAL
        if budget:
            # The agreement of the pairs that pass would count minimal pairs against paraphrases in whatever
            # proportion the profile's writer wrote them (most close exemplar pairs of risk and roi are minimal
            # pairs, written so): their share that passes is what the limit and the line above hold to 1 - target.
            by_accuracy = SHIFT_BAND
        radius = min(IDENTICAL, max(SHIFT_BAND, by_accuracy, minimal_pair + PAIR_MARGIN))
        within = np.nonzero(ranked >= radius)[0]
        accuracy = float(agreement[within[-1]]) if len(within) else target
        return replace(
            self,
            target=target,
            radius=radius,
            minimal_pair=minimal_pair,
            accuracy=max(accuracy, target),
            shift_limit=limit,
            corroborated_limit=wider,
        )

    def with_rows(
        self, old: np.ndarray, old_y: np.ndarray, new: np.ndarray, new_y: np.ndarray, shift_of=None
    ) -> Memory:
        """The memory once exemplars `new` (labels `new_y`) join `old`: a taught text that makes a minimal pair with
        an exemplar (close, another label, and for a guarded memory read alike by the guard: `shift_of(query rows,
        exemplar rows)` -> (shifts, corroborated) over the rows old then new, None: every such pair counts) pushes
        the radius above it at once; the agreement evidence of the new rows joins at the next fit (`fit`)."""
        closest = -1.0
        offset = len(old)
        for pool, pool_y, start in ((old, old_y, 0), (new, new_y, offset)):  # no copy of the exemplars per teach
            if not len(pool):
                continue
            sims = new @ pool.T
            if start == offset:
                np.fill_diagonal(sims, -np.inf)
            sims[sims >= IDENTICAL] = -np.inf  # the same text (relabelled: the latest wins, no pair)
            sims[pool_y[None, :] == new_y[:, None]] = -np.inf
            a, b = np.nonzero(sims >= min(self.radius, SHIFT_BAND))
            if self.guarded and shift_of is not None and len(a):
                assert self.shift_limit is not None
                # either may be the copy asked about: the pair counts when either reading passes the guard
                there, back = _reading(shift_of(a + offset, b + start)), _reading(shift_of(b + start, a + offset))
                keep = self.passes(*there) | self.passes(*back)
                a, b = a[keep], b[keep]
            if len(a):
                closest = max(closest, float(sims[a, b].max()))
        if closest <= self.minimal_pair:
            return self
        return replace(self, minimal_pair=closest).retarget(self.target)

    def recall(self, ids: np.ndarray, sims: np.ndarray, shift=None) -> np.ndarray:
        """Per query, the exemplar row to answer from (-1: none). ids/sims: its nearest exemplars, best first;
        among identical ones (the same text taught again), the latest row wins. A query within the radius that is
        not identical is a copy only when `shift(query index, row)` (the guard's shift from the row's reading and
        whether it corroborates the row's label, None without a reading) passes the guard (`passes`)."""
        out = np.full(len(ids), -1, dtype=np.int64)
        if not ids.shape[1]:
            return out
        for q in np.nonzero(sims[:, 0] >= self.radius)[0]:
            tied = sims[q] >= sims[q, 0] - (1.0 - IDENTICAL)
            row = int(ids[q][tied].max())
            if sims[q, 0] < IDENTICAL and self.guarded:  # guarded: the profile must read them alike
                moved = None if shift is None or self.shift_limit is None else shift(q, row)
                if moved is None or not self.passes(*_reading(moved)):
                    continue
            out[q] = row
        return out

    def passes(self, shift, corroborated):
        """Whether readings (shifts, corroborated: scalars or arrays) pass the guard: within its limit, or within the
        corroborated limit when the model's best label for the text is the exemplar's."""
        assert self.shift_limit is not None
        wider = self.shift_limit if self.corroborated_limit is None else self.corroborated_limit
        return (np.asarray(shift) <= self.shift_limit) | (np.asarray(corroborated) & (np.asarray(shift) <= wider))

    # --- storage beside the fit ----------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {
            "memory_pair_sim": self.pair_sim,
            "memory_pair_same": self.pair_same,
            "memory_minimal_pair": np.array(self.minimal_pair),
        }
        if self.close is not None:
            out["memory_close"] = self.close
        if self.budgeted:
            out["memory_budgeted"] = np.array(True)
        return out

    @classmethod
    def from_arrays(cls, data, target: float) -> Memory | None:
        if "memory_pair_sim" not in data:
            return None
        pair_sim, same, minimal = data["memory_pair_sim"], data["memory_pair_same"], data["memory_minimal_pair"]
        close = data["memory_close"] if "memory_close" in data else None
        budgeted = bool(data["memory_budgeted"]) if "memory_budgeted" in data else False
        return cls(pair_sim, same.astype(bool), float(minimal), target, close, budgeted=budgeted).retarget(target)


def _reading(read):
    """(shift, corroborated) from a guard's reading; a bare shift (a reader without the label check) corroborates
    nothing."""
    if isinstance(read, tuple):
        return read
    return read, np.zeros(np.shape(read), dtype=bool)


def _corroborated_limit(shift: np.ndarray, same: np.ndarray, agrees: np.ndarray, limit: float, target: float) -> float:
    """The guard's limit for corroborated readings: the widest, never below `limit`, at which the pairs passing
    either limit still meet the rule `_limit` fitted `limit` by (with MIN_PAIRS minimal pairs or more, at most
    1 - target of them pass; with fewer, the passing pairs agree as often as the target). A paraphrase read less
    surely but as the exemplar's label is what it takes; a minimal pair the model reads as the exemplar's label
    (its own label missed) is what it must not take, and the evidence counts both."""
    n_minimal = int((~same).sum())
    base = shift <= limit
    best = limit
    for candidate in np.unique(shift[agrees & ~base & np.isfinite(shift)]):
        passes = base | (agrees & (shift <= candidate))
        if n_minimal >= MIN_PAIRS:
            ok = int((passes & ~same).sum()) <= (1.0 - target) * n_minimal + 1e-9
        else:
            ok = bool(passes.any()) and float(same[passes].mean()) >= target - 1e-12
        if ok:
            best = float(candidate)
    return best


def _limit(shift: np.ndarray, same: np.ndarray, target: float) -> float:
    """The guard's limit, never below 0 (a text the profile reads at least as much as the exemplar's label is no
    other label's). With MIN_PAIRS minimal pairs or more: the widest shift at which at most 1 - target of them pass
    (a minimal-pair rewrite answered as a copy no more often than the target allows; the profile's same-label
    close pairs are other proposals, not copies, so they say nothing about how far a copy reads). With fewer: the
    widest shift at which the close pairs within it agree on their label at least as often as the target."""
    order = np.argsort(shift, kind="stable")
    shifts, agree = shift[order], same[order]
    n_minimal = int((~agree).sum())
    last_of_ties = np.append(shifts[1:] != shifts[:-1], True)
    if n_minimal >= MIN_PAIRS:
        ok = last_of_ties & (np.cumsum(~agree) <= (1.0 - target) * n_minimal + 1e-9)
    else:
        ok = last_of_ties & (np.cumsum(agree) / np.arange(1, len(shifts) + 1) >= target - 1e-12)
    meets = np.nonzero(ok & np.isfinite(shifts))[0]  # a pair stating other amounts (+inf) is never let through
    return max(0.0, float(shifts[meets[-1]])) if len(meets) else 0.0
