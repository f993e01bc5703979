"""A wider memory for taught decisions, read by what differs (`pair_reader`): a text further from a taught text than
the memory's radius (down to WIDE_RADIUS), or within it but stopped by the guard, takes the taught label when

1. the ensemble's own best label for it is the taught one (kNN, head and words together; an out-of-scope text
   stays out), and
2. the words the two texts do not share move it away from the taught label by no more than BOUND in the
   profile's words reading, with no negation or amount changed (`pair_reader.decision_change`).

Why: other writers' paraphrases of a taught text sit at 0.72-0.85 similarity (the memory's evidence ends at 0.85)
or are read by the whole-text model further than the guard's limit; for most of them the ensemble's best label is
already the taught one, under the threshold. The ensemble alone cannot be trusted there (a word-level minimal pair
reads as the taught label as well: the kNN vote leans on the taught text), so the reader of what differs decides.

Only taught exemplars (rows at or past `FittedProfile.shipped`) are read, and only for a profile whose memory is
fitted with written minimal pairs (`taught_diff.reads_facts`: a small difference changes its labels, and the bound
was fitted on such pairs); first-call verdicts do not move. Pure arithmetic on the decisions.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcp_latent.judge.decision import OUT_OF_SCOPE, Decisions
from mcp_latent.judge.memory_evidence import IDENTICAL
from mcp_latent.judge.pair_reader import decision_change
from mcp_latent.judge.words import WordsModel

# The lowest similarity to a taught text at which it is read as a possible copy (MiniLM: other writers' paraphrases
# of a proposal sit at 0.72-0.95 from it; below, texts are mostly other proposals). Fitted is the bound, not this.
WIDE_RADIUS = 0.72
# The largest decision change (log-odds, `pair_reader.decision_change`) of a wide copy. Fitted on train pairs only
# (`tools/pair_reader_fit.py`: written minimal pairs and paraphrase pairs, and a second writer's, read after
# teaching the first text): the widest at which at most 1 - target of the minimal pairs reaching this rule pass
# and its answers are right at least as often as the target, the smaller of risk's and roi's.
BOUND = 3.40
# Whether only a text whose nearest exemplar is the taught one is read (V3): below the radius an untaught proposal
# of the same kind as a taught one is as near as another writer's paraphrase; its nearest exemplar is more often
# another. Added after V2's held-out run (untaught risk proposals: 5 more answered, 1 of them right).
NEAREST_ONLY = True
# Whether the rule runs at all (a switch for measuring it against the memory alone).
ENABLED = True


def apply(
    decisions: Decisions,
    ensemble: Decisions,
    probs: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    texts: list[str],
    rows: tuple[list[str], np.ndarray],
    shipped: int | None,
    words: WordsModel | None,
    p_floor: float,
) -> Decisions:
    """The decisions with wide copies answered from their taught text (`recalled` set to its row, p the larger of
    the ensemble's for the label and `p_floor`, the memory's). `ensemble`: the decisions before memory answered;
    rows: (texts, label ids) of the exemplar rows."""
    rows_text, rows_y = rows
    if not ENABLED or shipped is None or len(rows_y) <= shipped or not ids.shape[1]:
        return decisions
    taught = (ids >= shipped) & (sims >= WIDE_RADIUS) & (sims < IDENTICAL)
    if NEAREST_ONLY:  # the taught text must be the nearest exemplar: a restatement of it, not another proposal
        taught[:, 1:] = False
    # memory leaves `recalled` None when it answered none of the batch
    before = np.full(len(ids), -1, dtype=np.int64) if decisions.recalled is None else decisions.recalled
    candidates = np.nonzero(taught.any(axis=1) & (before < 0))[0]
    if not len(candidates):
        return decisions
    best, p, reason, recalled = decisions.best.copy(), decisions.p.copy(), decisions.reason.copy(), None
    for q in candidates:
        row = int(ids[q][taught[q].argmax()])  # the nearest taught text in the band (neighbours come best first)
        label = int(rows_y[row])
        if ensemble.reason[q] == OUT_OF_SCOPE or int(ensemble.best[q]) != label or not rows_text[row]:
            continue
        if decision_change(words, texts[q], rows_text[row], label) > BOUND:
            continue
        recalled = before.copy() if recalled is None else recalled
        recalled[q] = row
        best[q], p[q], reason[q] = label, max(float(probs[q, label]), p_floor), None
    if recalled is None:
        return decisions
    return replace(decisions, best=best, p=p, reason=reason, recalled=recalled)
