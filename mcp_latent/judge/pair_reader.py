"""A reader of what differs between a taught text and a new one: how much of a decision the words that are not
shared carry (issue 24 item 1: a taught decision sticks on paraphrases by other writers).

Why: other writers restate a proposal further than the memory's radius reaches (MiniLM median 0.85 against 0.93
for our own writers), and where the memory's guard reads them, the profile's whole-text model reads a word-level
minimal pair ("no flag", "without a dual-write week", "behind SSO") as it reads a paraphrase. What tells the two
apart is *what* differs: a paraphrase rewords many words that carry no decision, a minimal pair changes a few that
do. So for a pair (taught text, new text):

- the words of each that the other does not hold (content words, matched by a crude stem: "deploy" /
  "deployed" / "deployment" are one; figures are left to the amount reader);
- their **decision change**: how far those words, read by the profile's own words expert one by one, push the new
  text away from the taught label: each of the new text's own unmatched words against it (the text read with and
  without it), and each of the taught text's for it (the new text lacks them), summed where they push away;
- a negation or an amount changed by magnitude (`clause_diff.differences`) is a decision change of its own
  (+inf): those cues were fitted on the written pairs already.

`memory_wide.py` answers a near copy below the memory's radius (or one the guard stops) with the taught label
only when the ensemble's best label is the taught one and the decision change is under a bound fitted on train
pairs (`tools/pair_reader_fit.py`). Pure text arithmetic plus one words-expert read of four short texts.
"""

from __future__ import annotations

import math
import re

import numpy as np

from mcp_latent.judge.clause_diff import differences
from mcp_latent.judge.memory_evidence import log_odds_shift
from mcp_latent.judge.words import WordsModel

_TOKEN = re.compile(r"[a-z][a-z0-9'_-]*|[0-9][a-z0-9.,]*", re.IGNORECASE)
# Function words carry no decision by themselves; the negations among them are read by `clause_diff`.
STOPWORDS = frozenset(
    "a an the to of and or for in on at by is are was were be been being it its this that these those we our us i "
    "you your they their them he she his her as so if then than from into onto over up down out about also just "
    "will would should can could may might must shall do does did done has have had having there here which who "
    "what when where how all any each both some such more most very too again once only own same other ok let "
    "lets via per".split()
)
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ies", "ied", "ers", "er", "ed", "es", "s", "ly")
STEM = 5  # characters of a stripped word that name it: "deploy", "deployed", "deployment" are one


def stem(word: str) -> str:
    """A crude stem: the word without one common suffix, its first STEM characters."""
    w = word.lower().strip("'-_")
    for suffix in _SUFFIXES:
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return w[:STEM]


def content_words(text: str) -> list[str]:
    """The text's words in order, lower case, without function words and figures (the amount reader's)."""
    return [t for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in STOPWORDS and t[0].isalpha()]


def unmatched(query: str, neighbour: str) -> tuple[list[str], list[str]]:
    """(the query's words whose stem the neighbour lacks, the neighbour's whose stem the query lacks)."""
    q, n = content_words(query), content_words(neighbour)
    qs, ns = {stem(w) for w in q}, {stem(w) for w in n}
    return [w for w in q if stem(w) not in ns], [w for w in n if stem(w) not in qs]


def without(text: str, words: list[str]) -> str:
    """The text's words in order, those in `words` left out (both sides of a reading are rebuilt the same way)."""
    drop = set(words)
    return " ".join(t for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in drop)


def decision_change(words: WordsModel | None, query: str, neighbour: str, label: int) -> float:
    """How far the words the two texts do not share move `query` away from `neighbour`'s `label`, in the words
    expert's log-odds: the sum over those words of each one's own push away (`word_leans`, only where it pushes
    away; 0: none does); +inf when a negation or an amount changed (`clause_diff.differences`); for a profile without
    a words expert only the cues read (0 otherwise).

    Why a sum of each word's push and not one reading without them all (`tools/pair_reader_fit.py --score mass`):
    read together, a paraphrase's many reworded words push both ways and a minimal pair's few words are lost among
    them; one by one, a neutral word pushes little either way. On the train pairs (`tools/pair_reader_fit.py`) the
    sum takes 98 and 83 of risk's and roi's 120 and 99 same-label pairs the memory leaves at the same budget of
    minimal pairs, the net reading 96 and 71, the largest single push 93 and 55."""
    if differences(query, neighbour):
        return math.inf
    if words is None:
        return 0.0
    return float(np.maximum(word_leans(words, query, neighbour, label), 0.0).sum())


def word_leans(words: WordsModel, query: str, neighbour: str, label: int) -> np.ndarray:
    """Each unmatched word's own push away from `label`: the query read without it against the query (its words
    against the label), and the neighbour against the neighbour without it (its words for the label, which the
    query lacks); (k,) log-odds, the query's words first."""
    lone_q, lone_n = unmatched(query, neighbour)
    texts = [without(query, [])] + [without(query, [w]) for w in lone_q]
    texts += [without(neighbour, [])] + [without(neighbour, [w]) for w in lone_n]
    read = words.log_probs(texts)
    q, n = read[: len(lone_q) + 1], read[len(lone_q) + 1 :]
    away = log_odds_shift(q[:1].repeat(len(lone_q), 0), q[1:], np.full(len(lone_q), label))
    lost = log_odds_shift(n[1:], n[:1].repeat(len(lone_n), 0), np.full(len(lone_n), label))
    return np.concatenate([away, lost])
