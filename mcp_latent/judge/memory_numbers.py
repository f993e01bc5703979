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

# Amounts of one kind further apart than this ratio are other amounts: a paraphrase restates an amount, rounds it
# ("~$25k" / "$24,800") or converts it ("a fortnight" / "2 weeks"); a minimal pair changes it (roi's written pairs:
# 20 of 32 by a factor of 3 or more, the 40 written risk paraphrases: none by any).
AMOUNT_RATIO = 3.0

# A number as written: digits with separators and decimals, or a small number word ("a week", "three hours").
_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "fifty": 50,
    "hundred": 100, "dozen": 12, "half": 0.5, "couple": 2, "few": 3, "several": 4,
}  # fmt: skip
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mm": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9}
_HOURS = {
    "ms": 1 / 3.6e6, "millisecond": 1 / 3.6e6, "s": 1 / 3600, "sec": 1 / 3600, "second": 1 / 3600,
    "min": 1 / 60, "minute": 1 / 60, "h": 1, "hr": 1, "hour": 1, "day": 24, "week": 168, "sprint": 336,
    "month": 730, "quarter": 2190, "year": 8760,
}  # fmt: skip
_NUMBER = r"(\d[\d,]*(?:\.\d+)?|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")"
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
_COUNT = re.compile(r"(?<![$€£\w.,])(\d[\d,]*(?:\.\d+)?)\s?(k|thousand|million)?\b(?![%.,]?\d)", re.IGNORECASE)


def _value(number: str, scale: str | None = None) -> float | None:
    word = number.lower()
    value = _WORDS.get(word)
    if value is None:
        try:
            value = float(word.replace(",", ""))
        except ValueError:
            return None
    return value * _SCALE.get((scale or "").lower(), 1.0)


def _log(value: float | None) -> float | None:
    return math.log10(value) if value is not None and value > 0 else None


def amounts(text: str) -> dict[str, list[float]]:
    """The amounts a text states, by kind ("money", "duration", "percent", "count"), each as log10 of its value
    (durations in hours). A number counted as money, a duration or a percentage is not counted again."""
    out: dict[str, list[float]] = {"money": [], "duration": [], "percent": [], "count": []}
    taken: list[tuple[int, int]] = []
    for match in _MONEY.finditer(text):
        number, scale = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        value = _log(_value(number, scale))
        if value is not None:
            out["money"].append(value)
            taken.append(match.span())
    money_ends = [b for _, b in taken]
    for match in _DURATION.finditer(text):
        if any(a <= match.start() < b for a, b in taken):
            continue
        if match.group(1).lower() in ("a", "an") and any(0 <= match.start() - end <= 2 for end in money_ends):
            continue  # "$9k a month": a rate's period, not an amount of time
        value = _value(match.group(1))
        value = _log(None if value is None else value * _HOURS[match.group(2).lower()])
        if value is not None:
            out["duration"].append(value)
            taken.append(match.span())
    for match in _PERCENT.finditer(text):
        value = _log(_value(match.group(1)))
        if value is not None and not any(a <= match.start() < b for a, b in taken):
            out["percent"].append(value)
            taken.append(match.span())
    for match in _COUNT.finditer(text):
        if any(a <= match.start() < b for a, b in taken):
            continue
        value = _log(_value(match.group(1), match.group(2)))
        if value is not None:
            out["count"].append(value)
    return {kind: values for kind, values in out.items() if values}


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
