"""A text that differs decisively from its taught neighbour does not take the taught label (issue 24 item 1: a
revision that adds a rollback plan is not a copy of the one without).

Why: after a teach, the taught text pulls its close rewrites towards its label from three sides: memory answers a
text it reads alike as a copy, the kNN vote weighs the nearest exemplar most (tau 0.05), and the head was nudged
and the words expert counted it. On the realistic set 8 of 20 minimal-pair rewrites of taught risk proposals came
back with the taught label, 5 of them from the ensemble at p 0.89-0.99. When the clause reader
(`clause_diff.differences`) finds a decisive difference between a text and a taught exemplar within the close
band (`BAND`):
1. memory does not answer the text from that exemplar (the ensemble's decision stands), and
2. an ensemble answer with that exemplar's label is not trusted: it escalates (reason `differs_from_taught`) and the
   calling LLM decides, whose teach then answers the rewrite itself from memory. An answer with another label
   stands (the ensemble already read the difference).

Only taught exemplars (rows at or past `FittedProfile.shipped`) are read: the profile file's own exemplars are
fitted on (their close pairs are the memory's evidence), and first-call verdicts do not move. A verdict with no
taught exemplar among its neighbours within the band costs one comparison of the neighbour ids (none at all
while nothing is taught). Pure arithmetic on the decisions (no threads, no I/O).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcp_latent.judge.clause_diff import differences, without_cues
from mcp_latent.judge.decision import DIFFERS_FROM_TAUGHT, Decisions
from mcp_latent.judge.memory import Memory
from mcp_latent.judge.memory_evidence import IDENTICAL, SHIFT_BAND, log_odds_shift
from mcp_latent.judge.words import WordsModel

# A taught exemplar at least this similar is "the same proposal" whose label a text may be pulled to: the band the
# memory's evidence is read in (below it, close texts are other proposals, and those differ in figures anyway).
BAND = SHIFT_BAND


# The cues must push away from the taught label in the profile's own words reading by more than this (log-odds),
# so a negation or a figure the profile's labels do not turn on is no difference. Fitted on train data
# (`tools/clause_pairs.py`): the largest lean of a written paraphrase pair that the cues call different (0.307),
# so no written paraphrase pair is; it keeps 75% of risk's and 52% of roi's written minimal pairs called different
# (0, which way and not how far: 86% and 67%, at 2.5% of the paraphrases).
LEAN = 0.31


def reads_facts(memory: Memory | None) -> bool:
    """Whether the profile's author showed that a small difference changes its label: the profile file carries
    written minimal pairs (`pair_examples`, which the memory is fitted on: `Memory.budgeted`) and some close pair of
    its evidence has different labels. A profile of topics has none (a rollback plan dropped does not change what a
    proposal is about), and the rule stays off for it.

    Why the written pairs, not any close pair of different labels: intent profiles have those too (two intents
    worded alike), and there a figure or a negation rarely changes the label. In the stream protocol on BANKING77
    (seeds 0-2, 6 Dec, merged main 0960acb) the rule escalated 72 verdicts of the last thirds, 69 of them right, and
    0 on HWU64: coverage lost for nothing. The shipped risk and roi carry their written pairs."""
    if memory is None or not memory.budgeted or memory.close is None:
        return False
    return bool((memory.close[:, 1] == 0).any())


def words_lean(words: WordsModel, query: str, neighbour: str, label: int) -> float:
    """How far the cues that differ push away from `label` in the words expert's reading: the query's own cues
    against it (the query read with and without them) or the neighbour's for it, whichever is larger."""
    read = words.log_probs([query, without_cues(query, neighbour), neighbour, without_cues(neighbour, query)])
    labels = np.array([label])
    return float(max(log_odds_shift(read[0:1], read[1:2], labels)[0], log_odds_shift(read[3:4], read[2:3], labels)[0]))


def taught_in_band(ids: np.ndarray, sims: np.ndarray, shipped: int | None, n: int) -> np.ndarray:
    """(q,) bool: the queries whose nearest taught exemplar (row >= shipped) within the band among their neighbours is
    not the same text (identical vectors are copies: a copy takes its label)."""
    if shipped is None or n <= shipped or not ids.shape[1]:
        return np.zeros(len(ids), dtype=bool)
    taught = (ids >= shipped) & (sims >= BAND)
    nearest = taught.argmax(axis=1)  # the first taught one in the band (neighbours come best first)
    return taught.any(axis=1) & (sims[np.arange(len(ids)), nearest] < IDENTICAL)


def apply(
    decisions: Decisions,
    before_recall: Decisions,
    ids: np.ndarray,
    sims: np.ndarray,
    texts: list[str],
    rows_text: list[str],
    rows_y: np.ndarray,
    shipped: int,
    words: WordsModel | None = None,
) -> Decisions:
    """The decisions with the rule applied to every query that `taught_in_band` marks, and `differs` set: per
    query the clauses that differ from that taught exemplar ([] for none). `before_recall`: the ensemble's
    decisions before memory answered. `words`: the profile's words expert, which reads which way the cues push
    (`words_lean`); None: the cues alone decide. No query marked: `decisions` as they are (no copies)."""
    marked = np.nonzero(taught_in_band(ids, sims, shipped, len(rows_y)))[0]
    if not len(marked):
        return decisions
    best, p, reason = decisions.best.copy(), decisions.p.copy(), decisions.reason.copy()
    recalled = None if decisions.recalled is None else decisions.recalled.copy()
    found: list[list[str]] = [[] for _ in range(len(ids))]
    for q in marked:
        # the nearest taught exemplar within the band decides (neighbours come best first): a copy or a paraphrase of
        # it takes its label whatever other taught texts hold
        row = next(r for r, s in zip(ids[q], sims[q], strict=True) if r >= shipped and s >= BAND)
        found[q] = differences(texts[q], rows_text[row]) if rows_text[row] else []
        if found[q] and words is not None and words_lean(words, texts[q], rows_text[row], rows_y[row]) <= LEAN:
            found[q] = []  # the profile's labels do not turn on these cues
        if not found[q]:
            continue
        if recalled is not None and recalled[q] == row:  # 1. not a copy of it: the ensemble's decision stands
            recalled[q] = -1
            best[q], p[q], reason[q] = before_recall.best[q], before_recall.p[q], before_recall.reason[q]
        if reason[q] is None and best[q] == rows_y[row]:  # 2. an answer pulled to its label escalates
            reason[q] = DIFFERS_FROM_TAUGHT
    return replace(decisions, best=best, p=p, reason=reason, recalled=recalled, differs=found)
