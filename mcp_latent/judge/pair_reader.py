"""A reader of what differs between a taught text and a new one: how much of a decision the words that are not
shared carry (issue 24 item 1: a taught decision sticks on paraphrases by other writers).

Why: other writers restate a proposal further than the memory's radius reaches (MiniLM median 0.85 against 0.93
for our own writers), and where the memory's guard reads them, the profile's whole-text model reads a word-level
minimal pair ("no flag", "without a dual-write week", "behind SSO") as it reads a paraphrase. What tells the two
apart is *what* differs: a paraphrase rewords many words that carry no decision, a minimal pair changes a few that
do. So for a pair (taught text, new text):

- the words of each that the other does not hold (content words, matched by a crude stem: "deploy" /
  "deployed" / "deployment" are one; figures are left to the amount reader);
- their **decision change**: how far those words, read by the profile's own words expert, push the new text away
  from the taught label: the new text's own unmatched words against it (the text read with and without them),
  plus the taught text's unmatched words for it (the new text lacks them), each only when it pushes away;
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


def _without(text: str, words: list[str]) -> str:
    """The text's words in order, those in `words` left out (both sides of a reading are rebuilt the same way)."""
    drop = set(words)
    return " ".join(t for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in drop)


def decision_change(words: WordsModel | None, query: str, neighbour: str, label: int) -> float:
    """How far the words the two texts do not share move `query` away from `neighbour`'s `label`, in the words
    expert's log-odds (0: not at all); +inf when a negation or an amount changed (`clause_diff.differences`), and
    for a profile without a words expert only the cues read (0 otherwise)."""
    if differences(query, neighbour):
        return math.inf
    if words is None:
        return 0.0
    lone_q, lone_n = unmatched(query, neighbour)
    texts = [_without(query, []), _without(query, lone_q), _without(neighbour, []), _without(neighbour, lone_n)]
    read = words.log_probs(texts)
    labels = np.array([label])
    away = float(log_odds_shift(read[0:1], read[1:2], labels)[0])  # the query's own words against the label
    lost = float(log_odds_shift(read[3:4], read[2:3], labels)[0])  # the neighbour's words for it, which it lacks
    return max(0.0, away) + max(0.0, lost)
