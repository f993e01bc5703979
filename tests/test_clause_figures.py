"""The figure cue reads magnitudes, not spelling (issue 24, the sixth pass): `memory_numbers.read_amounts` parses
amounts with their unit and scale, and `clause_diff.changed_amounts` calls a figure changed only when both texts
state an amount of that kind and each holds one the other does not come within `FIGURE_RATIO` of. The strings are
the written train pairs' (`tools/data/exemplars/minimal_pairs.jsonl`, `pair_paraphrases.jsonl`). Pure text."""

from __future__ import annotations

import math

import pytest

from mcp_latent.judge.clause_diff import FIGURE_RATIO, changed_amounts, differences, figures, without_cues
from mcp_latent.judge.memory_numbers import read_amounts

# mp-risk-01a and its written paraphrase pp-risk-01a: "2x peak" said as "twice peak"
LOAD_TESTED = "Load-tested at 2x peak on staging."
TWICE = "Staging load test passed at twice peak."
# mp-roi-18a / b: the saving a hundred times smaller, the migration six times longer
VENDORS = "Consolidate our three monitoring vendors into one: saves $90k a year for about a month of migration."
VENDORS_CHEAP = (
    "Consolidate our three monitoring vendors into one: saves $900 a year for about six months of migration."
)
# mp-roi-10a / b: amounts in words only (the written-figure cue read none of them)
TICKETS_SLOW = "Hire a second support engineer: tickets wait three days on average."
TICKETS_FAST = "Hire a second support engineer: tickets wait two hours on average."
# mp-risk-02a / b: the rewrite leaves the 30 days out (it changes the proposal by a negation, not by a figure)
UPLOADS = "Migrate user uploads: verify checksums, and keep the old bucket read-only for 30 days before deleting it."
UPLOADS_DROPPED = "Migrate user uploads: move the objects and delete the old bucket the same night."


def read(text: str) -> list[tuple[str, float, str]]:
    return [(a.kind, round(10**a.log, 6), text[a.start : a.end].strip()) for a in read_amounts(text)]


def test_amounts_are_read_with_their_unit_and_scale():
    assert read(VENDORS) == [("money", 90000.0, "$90k"), ("duration", 730.0, "a month"), ("count", 3.0, "three")]
    assert read(LOAD_TESTED) == [("multiple", 2.0, "2x")]
    assert read(TWICE) == [("multiple", 2.0, "twice")]
    assert read("Raise the limit from 100 to 1,000 requests per second; 5% of keys, $2.5m, a dozen hosts") == [
        ("money", 2.5e6, "$2.5m"),
        ("percent", 5.0, "5%"),
        ("count", 100.0, "100"),
        ("count", 1000.0, "1,000"),
        ("count", 12.0, "a dozen"),
    ]
    assert read("two hundred users over a fortnight") == [
        ("duration", 336.0, "a fortnight"),
        ("count", 200.0, "two hundred"),
    ]
    assert read("no figures here") == []


def test_numbers_written_out_in_several_words_are_read_whole():
    # A third writer's paraphrases spelled these out; each was read as a tenth or less of the original before.
    assert read("fifteen hundred euros a month") == [("money", 1500.0, "fifteen hundred euros")]  # a rate
    assert read("about thirty-eight thousand dollars") == [("money", 38000.0, "thirty-eight thousand dollars")]
    assert read("two hundred and fifty users") == [("count", 250.0, "two hundred and fifty")]
    assert read("412 microseconds") == [("duration", round(412 / 3.6e9, 6), "412 microseconds")]
    assert changed_amounts("It costs €1,500 a month", "It costs fifteen hundred euros a month") == ([], [])
    assert changed_amounts("~$38k for the licence", "about thirty-eight thousand dollars for the licence") == ([], [])
    assert changed_amounts("p99 from 412µs to 131µs", "p99 goes from 412 microseconds to 131 microseconds") == ([], [])
    # The grammar keeps separate numbers apart and leaves the words that only look like numbers alone.
    assert read("one of us, a few people") == []
    assert [kind for kind, _, _ in read("three people for two weeks")] == ["duration", "count"]


def test_the_same_magnitude_written_otherwise_is_no_change():
    assert figures(LOAD_TESTED) != figures(TWICE)  # as written they differ: the fifth pass called this a change
    assert changed_amounts(LOAD_TESTED, TWICE) == ([], [])
    assert changed_amounts("It saves 90,000 dollars a year", "It saves $90k a year") == ([], [])
    assert changed_amounts("two reviewers signed off", "reviewed by 2 people") == ([], [])
    assert changed_amounts("a fortnight of work", "2 weeks of work") == ([], [])
    assert changed_amounts("about $25k a month", "roughly $24,800 per month") == ([], [])  # rounded
    assert differences("It saves $90k a year, a month of work.", "A month of work that saves 90,000 USD a year.") == []


def test_a_dropped_figure_is_no_change():
    assert changed_amounts(UPLOADS_DROPPED, UPLOADS) == ([], [])
    assert changed_amounts("Buy the $2k/year service; building one is six weeks.", "Buy the $2k/year service.") == (
        [],
        [],
    )


def test_a_changed_magnitude_is_named_in_its_clause():
    ours, theirs = changed_amounts(VENDORS_CHEAP, VENDORS)
    assert [VENDORS_CHEAP[a.start : a.end].strip() for a in ours] == ["$900", "six months"]
    assert [VENDORS[a.start : a.end].strip() for a in theirs] == ["$90k", "a month"]
    assert differences(VENDORS_CHEAP, VENDORS) == [
        VENDORS_CHEAP.rstrip("."),
        VENDORS.rstrip("."),
    ]
    # amounts in words: read, and the change found (the written-figure cue saw no figure in either text)
    assert figures(TICKETS_SLOW) == figures(TICKETS_FAST) == frozenset()
    assert differences(TICKETS_FAST, TICKETS_SLOW) == [
        TICKETS_FAST.rstrip("."),
        TICKETS_SLOW.rstrip("."),
    ]
    # the words expert reads the text without the changed amounts
    assert without_cues(TICKETS_FAST, TICKETS_SLOW) == "Hire a second support engineer: tickets wait   on average."


def test_the_fitted_ratio_keeps_every_written_minimal_pair_change():
    # mp-risk-29: a rate limit raised to 150 or to 1,000 requests a second, the smallest change of a written pair
    small = "Raise the API rate limit for one partner key from 100 to 150 requests a second."
    large = "Raise the API rate limit for every key from 100 to 1,000 requests a second."
    assert changed_amounts(small, large) != ([], [])
    assert 1.0 < FIGURE_RATIO < 1.5
    assert changed_amounts(small, large, ratio=10.0) == ([], [])  # within a factor of 10: no change
    assert math.isclose(FIGURE_RATIO, math.sqrt(1.5), abs_tol=0.01)


@pytest.mark.parametrize("text", ["", "   ", "$", "x", "0 incidents", "10x"])
def test_odd_strings_are_read_without_error(text):
    assert isinstance(changed_amounts(text, "$90k a year"), tuple)
