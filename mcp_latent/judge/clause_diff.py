"""What differs between a text and its taught neighbour, clause by clause: the reader behind
`judge/taught_diff.py` (a minimal-pair rewrite of a taught text is not a copy of it).

Why a reader of its own: a minimal-pair rewrite of a taught proposal (the same change, its rollback plan dropped)
is closer to the taught text than a paraphrase of it is (all-MiniLM-L6-v2: 0.958 against 0.936), and read whole by
the profile's model the two overlap too (the memory guard's log-odds drop: on the realistic set paraphrases spread
up to 7.3 apart, rewrites 2-5). The encoder barely sees the facts a rewrite changes: "no automatic rollback if the
error rate rises" is 0.98 similar to "automatic rollback if the error rate rises", and "$900 a year" to "$90k a
year" is a digit. A paraphrase says every fact again in other words but keeps its polarity and its figures; a
rewrite that drops a safeguard, skips a review or changes a cost almost always changes one of the two.

So a text *differs decisively* from its neighbour when
- **polarity**: the two texts hold a different number of negation cues ("no", "not", "without", "nobody",
  "never", "-n't", "skip..."; `NEGATIONS`), or
- **figures**: an amount changed by magnitude (`changed_amounts`): both texts state an amount of one kind (money,
  a duration, a percentage, a multiple, a count; `memory_numbers.read_amounts`, with units, scales and number
  words: "$900" / "$90k", "2 hours" / "2 weeks", "2x" / "twice") and each holds one the other has none within
  `FIGURE_RATIO` of. The same magnitude written otherwise ("2" / "two", "90,000 dollars" / "$90k") and a figure
  one text leaves out are no change: other writers' paraphrases do both (the fifth pass compared figures as
  written and lost 10 of the 80 held-out paraphrases' memory answers to them; docs/learning-sticks.md, "Sixth
  pass").
`differences` names the clauses that carry the cue (`clauses`: sentences split at commas, semicolons and
connectives), so the calling LLM sees *what* differs.

Chosen on train data only (`tools/clause_pairs.py`: the 64 written minimal pairs of
`tools/data/exemplars/minimal_pairs.jsonl` against the 40 written paraphrase pairs of `pair_paraphrases.jsonl`,
both readings of each): the two cues call 82.8% of the minimal-pair readings different (risk 84.4%, roi 81.2%;
figures as written: 87.5%, 78.1%) and 2.5% of the paraphrase readings (1 of 40 pairs, by a negation: "can't be
reached" for "unreachable"; its "2x" written "twice" is no change by magnitude).
An embedding clause diff (the clauses of either text with no match at least 0.70-0.88 similar in the other, read
by the profile's head and words) called 5-48% of the minimal pairs different at 2.5-10% of the paraphrases: a
short clause read by a head fitted on whole proposals leans far either way. Not adopted (docs/learning-sticks.md,
"Fifth pass"). Which way the cues push is read by the profile (`taught_diff.words_lean`).

One amount parser serves both readers: `memory_numbers` (the memory's guard: an amount moved by a factor of 3
makes a pair no copy, because nothing else reads its direction) and this one (a change by more than FIGURE_RATIO is
a cue, and the profile's words say which way it pushes: `taught_diff.words_lean`).

Pure text arithmetic (regular expressions; no model, no state): microseconds per pair, and called only for a text
with a taught exemplar within the close band (`taught_diff`).
"""

from __future__ import annotations

import math
import re

from mcp_latent.judge.memory_numbers import KINDS, Amount, read_amounts

# Words that negate the fact they stand in (a rewrite that drops a safeguard writes "no rollback plan", "not
# load-tested", "without checking", "nobody has reviewed", "skipping staging").
NEGATIONS = frozenset(
    {"no", "not", "never", "none", "nobody", "nothing", "without", "cannot", "untested", "unreviewed"}
)
_NEGATION_PREFIX = "skip"  # skip, skips, skipped, skipping
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NEGATION = re.compile(r"\b(?:" + "|".join(sorted(NEGATIONS)) + r"|skip\w*|\w+n['\u2019]t)\b", re.IGNORECASE)
# A figure: digits (with thousands separators or decimals) and the unit suffix that changes its size.
_FIGURE = re.compile(r"\d+(?:[.,]\d+)*\s*(?:k|m|bn|%|x)?(?![a-z])|\d+(?:[.,]\d+)*", re.IGNORECASE)
_SENTENCES = re.compile(r"[.;!?]+(?:\s+|$)|\n+|,\s+")
_CONNECTIVE = re.compile(r"\s+(?=(?:with|without|but|after|before|unless|once|because|while|then)\b)", re.IGNORECASE)
# Amounts of one kind further apart than this ratio are changed. Fitted on train data (`tools/clause_pairs.py`):
# every written paraphrase pair restates its amounts at ratio 1.0, and the smallest change of a written minimal pair
# is 1.5 (150 / 100 requests per second), so the ratio sits midway between them in log terms, sqrt(1.5): a rounding
# ("~$25k" / "$24,800") is no change, "2 hours" / "3 hours" is.
FIGURE_RATIO = 1.22
MIN_WORDS = 3  # a piece shorter than this joins its neighbour (a lone "and then" is no fact)


def clauses(text: str) -> list[str]:
    """The text's clauses in order: sentences split at commas, semicolons and fact-starting connectives (the
    connective stays with its clause: "without a rollback plan"); a piece under MIN_WORDS words joins the one
    before it (or the next, when first)."""
    pieces = [
        piece.strip(" \t-()[]\"'`*:") for sentence in _SENTENCES.split(text) for piece in _CONNECTIVE.split(sentence)
    ]
    out: list[str] = []
    for piece in filter(None, pieces):
        if out and (len(_TOKEN.findall(piece.lower())) < MIN_WORDS or len(_TOKEN.findall(out[-1].lower())) < MIN_WORDS):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out or [text.strip()]


def negations(text: str) -> int:
    """How many negation cues the text holds."""
    return sum(_is_negation(t) for t in _tokens(text))


def figures(text: str) -> frozenset[str]:
    """The text's figures as written, normalised ("90,000" and "90000" are one; "$90k" is "90k"): the fifth pass's
    cue, which `tools/clause_pairs.py` still reports beside the magnitudes the server reads (`changed_amounts`)."""
    return frozenset(re.sub(r"[\s,]", "", f.lower()) for f in _FIGURE.findall(text))


def changed_amounts(query: str, neighbour: str, ratio: float | None = None) -> tuple[list[Amount], list[Amount]]:
    """The amounts of each text (query's, neighbour's) that changed: per kind both texts state
    (`memory_numbers.read_amounts`), the amounts with no amount of that kind within `ratio` (default FIGURE_RATIO)
    in the other text, when both texts hold such an amount. One text stating an amount the other leaves out is no
    change ("a count left out"), nor is the same magnitude written otherwise ("2" / "two", "90,000" / "$90k" read as
    money against money, "a fortnight" / "2 weeks")."""
    limit = math.log10(FIGURE_RATIO if ratio is None else ratio) + 1e-9
    ours, theirs = read_amounts(query), read_amounts(neighbour)
    out_q: list[Amount] = []
    out_n: list[Amount] = []
    for kind in KINDS:  # in a fixed order: the clauses named come out the same every time
        q = [a for a in ours if a.kind == kind]
        n = [a for a in theirs if a.kind == kind]
        if not q or not n:
            continue
        lone_q = [a for a in q if min(abs(a.log - b.log) for b in n) > limit]
        lone_n = [b for b in n if min(abs(a.log - b.log) for a in q) > limit]
        if lone_q and lone_n:  # each side holds an amount the other does not: changed, not added or dropped
            out_q += lone_q
            out_n += lone_n
    return out_q, out_n


def differences(query: str, neighbour: str) -> list[str]:
    """The clauses (of either text, query first) that carry a decisive difference: empty when the two texts hold
    the same number of negation cues and state no amount changed by more than FIGURE_RATIO (a paraphrase, or a
    copy)."""
    out: list[str] = []
    if negations(query) != negations(neighbour):
        more, fewer = (query, neighbour) if negations(query) > negations(neighbour) else (neighbour, query)
        present = {t for t in _tokens(fewer) if _is_negation(t)}
        # the clauses of the text with more negations whose cue the other text does not hold (all of them when
        # the other text holds the same cue words, only fewer of them)
        marked = [c for c in clauses(more) if any(_is_negation(t) and t not in present for t in _tokens(c))]
        out += marked or [c for c in clauses(more) if negations(c)]
    for text, changed in zip((query, neighbour), changed_amounts(query, neighbour), strict=True):
        if not changed:
            continue
        keys = {(a.kind, round(a.log, 6)) for a in changed}
        pieces = clauses(text)
        marked = [c for c in pieces if any((a.kind, round(a.log, 6)) in keys for a in read_amounts(c))]
        # a clause read alone may read its amount otherwise ("$9k" cut from "a month"): then the clauses it spans
        marked = marked or [c for c in pieces if any(text[a.start : a.end].strip() in c for a in changed)]
        out += [c for c in marked if c not in out]
    return out


def without_cues(text: str, other: str) -> str:
    """The text without the cues `other` lacks: its negation words (when it holds more of them) and its amounts
    that changed against `other` (`changed_amounts`). The profile reads the two to see which way the cues push
    (`taught_diff`)."""
    out = text
    for amount in sorted(changed_amounts(text, other)[0], key=lambda a: a.start, reverse=True):
        out = out[: amount.start] + " " + out[amount.end :]
    if negations(text) > negations(other):
        out = _NEGATION.sub(" ", out)
    return out


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def _is_negation(token: str) -> bool:
    return token in NEGATIONS or token.endswith("n't") or token.startswith(_NEGATION_PREFIX)
