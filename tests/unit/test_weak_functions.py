from datetime import UTC, datetime

import pytest

from streams.events import FeedbackType
from streams.weak.functions import (
    DEFAULT_LFS,
    ClickBelowSkips,
    ClickDwell,
    Conversion,
    Reformulation,
    Returned,
    Vote,
)
from streams.weak.propensity import Propensity
from streams.weak.records import Interaction, SearchRecord

T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)
SHOWN = ("p0", "p1", "p2", "p3", "p4")
PROPENSITY = Propensity((1.0, 0.5, 0.25))  # IPS weights 1, 2, 4 (4 below rank 2 too)
C, CART, BUY, RET = FeedbackType.click, FeedbackType.add_to_cart, FeedbackType.purchase, FeedbackType.return_


def record(*events, text="q", next_text=None, gap=None):
    """A search over SHOWN; ``events`` are (type, rank) or (type, rank, dwell_ms)."""
    interactions = tuple(
        Interaction(e[0], SHOWN[e[1]], e[1], e[2] if len(e) > 2 else 30_000, T0) for e in events
    )
    return SearchRecord("qid", "sid", T0, text, SHOWN, interactions, next_text, gap)


def as_tuples(votes: list[Vote]) -> list[tuple[str, float]]:
    return sorted((v.product_id, round(v.weight, 6)) for v in votes)


PURCHASE = Conversion("purchase", BUY, 3.0)


@pytest.mark.parametrize(
    ("lf", "events", "propensity", "expected"),
    [
        (PURCHASE, [(BUY, 2), (BUY, 2), (C, 1)], None, [("p2", 3.0)]),  # one vote per product
        (PURCHASE, [(BUY, 2)], PROPENSITY, [("p2", 3.0)]),  # conversions are not IPS-weighted
        (Conversion("purchase", BUY, 3.0, ips=True), [(BUY, 2)], PROPENSITY, [("p2", 12.0)]),
        (Conversion("add_to_cart", CART, 2.0), [(CART, 0), (BUY, 0)], None, [("p0", 2.0)]),
        (ClickDwell(), [(C, 0, 30_000), (C, 1, 2_000)], None, [("p0", 1.0)]),  # a bounce does not count
        (ClickDwell(), [(C, 1, None)], None, [("p1", 1.0)]),  # no dwell logged: counts
        (ClickDwell(), [(C, 1), (C, 4)], PROPENSITY, [("p1", 2.0), ("p4", 4.0)]),  # IPS, clipped tail
        (ClickDwell(ips=False), [(C, 4)], PROPENSITY, [("p4", 1.0)]),
        (Returned(), [(BUY, 1), (RET, 1)], None, [("p1", -2.0)]),
    ],
)
def test_single_event_functions(lf, events, propensity, expected):
    assert as_tuples(lf.votes(record(*events), propensity)) == expected


@pytest.mark.parametrize(
    ("events", "propensity", "expected"),
    [
        ([(C, 0)], None, []),  # nothing above was skipped
        ([(C, 0), (C, 1)], None, []),
        ([(C, 2)], None, [("p0", -0.15), ("p1", -0.15), ("p2", 0.5)]),
        ([(C, 0), (C, 2)], None, [("p1", -0.15), ("p2", 0.5)]),  # a clicked product is not skipped
        ([(C, 1), (C, 3)], None, [("p0", -0.15), ("p1", 0.5), ("p2", -0.15), ("p3", 0.5)]),
        ([(C, 3, 1_000)], None, []),  # a bounce is not a choice
        # IPS for the click, examination probability for each skip
        ([(C, 2)], PROPENSITY, [("p0", -0.15), ("p1", -0.075), ("p2", 2.0)]),
    ],
)
def test_click_below_skips(events, propensity, expected):
    assert as_tuples(ClickBelowSkips().votes(record(*events), propensity)) == expected


@pytest.mark.parametrize(
    ("events", "next_text", "gap", "fires"),
    [
        ([], "trail shoes", 12.0, True),
        ([(C, 3)], "trail shoes", 12.0, False),  # a click: not a failed search
        ([], None, None, False),  # the session's last search
        ([], "q", 12.0, False),  # the same text again is a repeat, not a reformulation
        ([], "trail shoes", 600.0, False),  # too late to be about this result page
    ],
)
def test_reformulation(events, next_text, gap, fires):
    votes = Reformulation().votes(record(*events, next_text=next_text, gap=gap), None)
    assert as_tuples(votes) == ([("p0", -0.3), ("p1", -0.3), ("p2", -0.3)] if fires else [])


def test_reformulation_weighs_each_shown_product_by_its_examination():
    votes = Reformulation().votes(record(next_text="x", gap=1.0), PROPENSITY)
    assert as_tuples(votes) == [("p0", -0.3), ("p1", -0.15), ("p2", -0.075)]


def test_default_functions_are_distinct_and_documented():
    names = [lf.name for lf in DEFAULT_LFS]
    assert len(set(names)) == len(names)
    assert {lf.polarity for lf in DEFAULT_LFS} == {1, -1}
    assert all(type(lf).__doc__ for lf in DEFAULT_LFS)
    assert all(v.lf == lf.name for lf in DEFAULT_LFS for v in lf.votes(record((C, 2), (BUY, 2)), None))
