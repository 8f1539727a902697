from datetime import UTC, datetime, timedelta

import pytest

from streams.events import Feedback, FeedbackType, SearchQuery
from streams.simulator import SimConfig, simulate
from streams.weak.records import Interaction, SearchRecord, records_from_events, records_from_simulation

T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)


def _query(qid, session, seconds, text="Running  Shoes", shown=("a", "b", "c")):
    return SearchQuery(
        query_id=qid,
        session_id=session,
        timestamp=T0 + timedelta(seconds=seconds),
        query=text,
        shown=list(shown),
    )


def _feedback(eid, qid, kind, position, seconds=5, product=None):
    return Feedback(
        event_id=eid,
        query_id=qid,
        timestamp=T0 + timedelta(seconds=seconds),
        type=kind,
        product_id=product or "abc"[position],
        position=position,
        dwell_ms=20_000 if kind is FeedbackType.click else None,
    )


def test_records_join_feedback_link_sessions_and_drop_duplicates():
    queries = [
        _query("q2", "s1", 30, "trail shoes"),
        _query("q1", "s1", 0),
        _query("q3", "s2", 10),
    ]
    click = _feedback("e1", "q1", FeedbackType.click, 1, seconds=4)
    feedback = [
        _feedback("e2", "q1", FeedbackType.add_to_cart, 1, seconds=9),
        click,
        click,  # redelivered
        _feedback("e3", "unknown", FeedbackType.click, 0),
    ]
    records = records_from_events(queries, feedback)
    assert [r.query_id for r in records] == ["q1", "q3", "q2"]  # time order
    first = records[0]
    assert first.norm_text == "running shoes"
    assert first.shown == ("a", "b", "c")
    assert [i.type for i in first.interactions] == [FeedbackType.click, FeedbackType.add_to_cart]
    assert (first.next_norm_text, first.next_gap_s) == ("trail shoes", 30.0)
    assert records[1].next_norm_text is None and records[1].next_gap_s is None  # last of its session
    assert records[2].interactions == ()


def _record(*interactions: tuple[FeedbackType, int]) -> SearchRecord:
    return SearchRecord(
        "q",
        "s",
        T0,
        "q",
        tuple("abcdefgh"),
        tuple(Interaction(kind, "abcdefgh"[pos], pos, None, T0) for kind, pos in interactions),
    )


@pytest.mark.parametrize(
    ("interactions", "depth"),
    [
        ((), 4),  # no log of what was viewed: the fold
        (((FeedbackType.click, 6),), 7),  # a click below the fold: scrolled down to it
        (((FeedbackType.impression, 0), (FeedbackType.impression, 1)), 2),  # impressions are the truth
        (((FeedbackType.impression, 0), (FeedbackType.click, 5)), 6),
    ],
)
def test_viewed_depth(interactions, depth):
    assert _record(*interactions).viewed_depth(fold=4) == depth


def test_records_from_simulation_keep_every_search_and_event():
    sim = simulate(SimConfig(seed=3, n_searches=300))
    records = records_from_simulation(sim)
    assert len(records) == len(sim.queries)
    assert sum(len(r.interactions) for r in records) == len(sim.feedback)
    clicked = next(r for r in records if r.clicked_positions())
    assert all(clicked.shown[i.position] == i.product_id for i in clicked.interactions)
