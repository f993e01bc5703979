"""The amounts a text states, for the memory's guard: money, durations, percentages and counts, each as a log10
magnitude of its kind. Two texts that state the same kind of amount an order of magnitude apart ("$900 a year" /
"$90k a year", "2 hours" / "2 weeks") are a minimal pair, not a copy, however alike the encoder and the head read
them: all-MiniLM-L6-v2 embeds "$900" and "$90k" almost alike, and the linear head and the words expert have no
feature for a magnitude, so the guard's log-odds reading lets such pairs through (roi's written minimal pairs
mostly differ only in an amount).

`mismatch(a, b)`: how far apart, in log10, the two texts' amounts are: for each kind both texts state, each
amount of one text is matched to the nearest amount of that kind in the other; the mismatch is the larger
distance, from whichever text's side is smaller (a paraphrase that drops or adds one amount still matches on the
amounts it keeps). 0 when no kind is stated by both. Pure functions on strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Amounts of one kind further apart than this ratio are other amounts: a paraphrase restates an amount, rounds it
# ("~$25k" / "$24,800") or converts it ("a fortnight" / "2 weeks"); a minimal pair changes it (roi's written pairs:
# 20 of 32 by a factor of 3 or more, the 40 written risk paraphrases: none by any).
AMOUNT_RATIO = 3.0

# A number as written: digits with separators and decimals, a compound of number words ("fifteen hundred",
# "thirty-eight thousand", "two hundred and fifty": `_PHRASE`, valued by `_phrase_value`), or a small word standing
# for a number on its own ("a week", "half", "a dozen", "a few").
_UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_BIG = {"thousand": 1e3, "million": 1e6, "billion": 1e9}
_WORDS = {
    **_UNITS, **_TENS, "a": 1, "an": 1, "hundred": 100, "dozen": 12, "half": 0.5, "couple": 2, "few": 3, "several": 4,
}  # fmt: skip


def _alternatives(words) -> str:
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


# The grammar of a written-out number, so that "two three-hour windows" stays two numbers: up to ninety-nine,
# optionally hundreds of it, optionally thousands/millions/billions of that with a smaller rest.
_ONES = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_BELOW_100 = rf"(?:{_alternatives(_TENS)}(?:[\s-]{_alternatives(_ONES)})?|{_alternatives(_UNITS)})"
_BELOW_1000 = rf"{_BELOW_100}(?:[\s-]hundred(?:[\s-](?:and[\s-])?{_BELOW_100})?)?"
_PHRASE = rf"{_BELOW_1000}(?:[\s-]{_alternatives(_BIG)}(?:[\s-](?:and[\s-])?{_BELOW_1000})?)?"
_SCALE = {
    "hundred": 100,
    "dozen": 12,
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
}
_HOURS = {
    "ms": 1 / 3.6e6, "millisecond": 1 / 3.6e6, "s": 1 / 3600, "sec": 1 / 3600, "second": 1 / 3600,
    "min": 1 / 60, "minute": 1 / 60, "h": 1, "hr": 1, "hour": 1, "day": 24, "week": 168, "sprint": 336,
    "month": 730, "quarter": 2190, "year": 8760, "fortnight": 336, "µs": 1 / 3.6e9, "μs": 1 / 3.6e9,
    "microsecond": 1 / 3.6e9, "ns": 1 / 3.6e12, "nanosecond": 1 / 3.6e12,
}  # fmt: skip
# Number words read as a count on their own ("two people reviewed it" / "2 reviewers"): not "a", "one", "half" or
# the vague ones ("a few"), which stand in for an article or no figure at all far more often than for a count.
_NOT_COUNTS = ("a", "an", "one", "half", "couple", "few", "several")
_NUMBER = r"(\d[\d,]*(?:\.\d+)?|" + _PHRASE + "|" + _alternatives(_WORDS) + r")"
_MONEY = re.compile(
    r"(?:[$€£]\s?" + _NUMBER + r"\s?(k|m|mm|bn|b|thousand|million|billion)?\b)"
    r"|(?:\b" + _NUMBER + r"\s?(k|m|mm|bn|thousand|million|billion)?\s?(?:usd|eur|gbp|dollars|euros)\b)",
    re.IGNORECASE,
)
_DURATION = re.compile(
    r"\b" + _NUMBER + r"[\s-]?(?:[a-z]+-)?(" + "|".join(sorted(_HOURS, key=len, reverse=True)) + r")s?\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"\b" + _NUMBER + r"\s?(?:%|percent\b)", re.IGNORECASE)
# A multiple: "2x peak", "10x faster", "twice the load", "three times the traffic" (not "three times this quarter":
# times followed by a period is a count of events, which _COUNT reads as a count).
_MULTIPLE = re.compile(
    r"(?:\b(\d+(?:\.\d+)?)\s?x\b)|(?:\b(twice|double|triple|tenfold)\b)"
    r"|(?:\b" + _NUMBER + r"\s(?:times)\s(?=(?:the|as|more|faster|slower|bigger|larger|higher|lower)\b))",
    re.IGNORECASE,
)
_MULTIPLE_WORDS = {"twice": 2, "double": 2, "triple": 3, "tenfold": 10}
_COUNT = re.compile(
    r"(?<![$€£\w.,])(\d[\d,]*(?:\.\d+)?)\s?(k|m|bn|thousand|million|billion)?\b(?![%.,]?\d)"
    r"|\b(?:a\s)?(" + _PHRASE + "|hundred|dozen" + r")(?:[\s-](hundred|thousand|million|billion|dozen))?\b",
    re.IGNORECASE,
)
KINDS = ("money", "duration", "percent", "multiple", "count")


@dataclass(frozen=True)
class Amount:
    """One amount a text states: its kind, log10 of its value (durations in hours) and where it is written."""

    kind: str
    log: float
    start: int
    end: int


def _phrase_value(phrase: str) -> float | None:
    """The value of number words as `_PHRASE` reads them: "thirty-eight thousand" 38,000, "fifteen hundred" 1,500."""
    total, current = 0.0, 0.0
    for word in re.split(r"[\s-]+", phrase.lower()):
        if word in _UNITS or word in _TENS:
            current += _UNITS.get(word) or _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _BIG:
            total, current = total + (current or 1) * _BIG[word], 0.0
        elif word != "and":
            return None
    return total + current


def _value(number: str, scale: str | None = None) -> float | None:
    word = number.lower()
    value = _WORDS.get(word)
    if value is None:
        try:
            value = float(word.replace(",", ""))
        except ValueError:
            value = _phrase_value(word)
            if value is None:
                return None
    return value * _SCALE.get((scale or "").lower(), 1.0)


def _log(value: float | None) -> float | None:
    return math.log10(value) if value is not None and value > 0 else None


def read_amounts(text: str) -> list[Amount]:
    """The amounts a text states, in the order they are read (money, durations, percentages, multiples, counts),
    each with its span. A number counted as one kind is not counted again."""
    out: list[Amount] = []

    def free(match: re.Match) -> bool:
        return not any(a.start <= match.start() < a.end or match.start() <= a.start < match.end() for a in out)

    def add(kind: str, value: float | None, match: re.Match) -> None:
        value = _log(value)
        if value is not None:
            out.append(Amount(kind, value, match.start(), match.end()))

    for match in _MONEY.finditer(text):
        number, scale = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        add("money", _value(number, scale), match)
    money_ends = [a.end for a in out]
    for match in _DURATION.finditer(text):
        if not free(match):
            continue
        if match.group(1).lower() in ("a", "an") and any(0 <= match.start() - end <= 2 for end in money_ends):
            continue  # "$9k a month": a rate's period, not an amount of time
        value = _value(match.group(1))
        add("duration", None if value is None else value * _HOURS[match.group(2).lower()], match)
    for match in _PERCENT.finditer(text):
        if free(match):
            add("percent", _value(match.group(1)), match)
    for match in _MULTIPLE.finditer(text):
        if free(match):
            digits, word, number = match.group(1), match.group(2), match.group(3)
            value = float(digits) if digits else _MULTIPLE_WORDS[word.lower()] if word else _value(number)
            add("multiple", value, match)
    for match in _COUNT.finditer(text):
        if free(match):
            if match.group(3) and match.group(3).lower() in _NOT_COUNTS and not match.group(4):
                continue
            value = _value(*match.group(1, 2)) if match.group(1) else _value(*match.group(3, 4))
            add("count", value, match)
    return out


def amounts(text: str) -> dict[str, list[float]]:
    """The amounts a text states, by kind ("money", "duration", "percent", "multiple", "count"), each as log10 of its
    value (durations in hours)."""
    out: dict[str, list[float]] = {}
    for amount in read_amounts(text):
        out.setdefault(amount.kind, []).append(amount.log)
    return out


def amounts_differ(a: dict[str, list[float]], b: dict[str, list[float]]) -> bool:
    """Whether two texts (their `amounts`) state some kind of amount more than AMOUNT_RATIO apart."""
    return mismatch(a, b) > math.log10(AMOUNT_RATIO) + 1e-9


def mismatch(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    """How far apart (log10) the amounts of two texts (`amounts`) are; 0 when they share no kind."""
    worst = 0.0
    for kind in a.keys() & b.keys():
        ours, theirs = a[kind], b[kind]
        forward = max(min(abs(x - y) for y in theirs) for x in ours)
        backward = max(min(abs(x - y) for x in ours) for y in theirs)
        worst = max(worst, min(forward, backward))
    return worst
