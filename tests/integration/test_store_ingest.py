from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from store.catalog import load_catalog
from store.events import _RESOLVE_SQL, ingest_stats, resolve_all_pending, write_batch
from store.labels import upsert_gold, weak_label_snapshot
from store.models import WeakLabel
from store.settings import TaxonomySettings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def catalog(db):
    with db.session() as s:
        load_catalog(
            s,
            [
                {"product_id": "shoe", "category_path": "fashion/shoes/running", "title": "Runner"},
                {"product_id": "cable", "category_path": "electronics/cables", "title": "USB-C"},
            ],
            TaxonomySettings(),
        )


def q(qid, text="Red  Shoes"):
    return {
        "query_id": qid,
        "session_id": "s",
        "ts": T0,
        "text": text,
        "norm_text": " ".join(text.lower().split()),
        "locale": "en-US",
        "shown": ["shoe", "cable"],
    }


def fb(eid, qid, product="shoe", weight=1.0, type_="click"):
    return {
        "event_id": eid,
        "query_id": qid,
        "ts": T0 + timedelta(seconds=1),
        "type": type_,
        "product_id": product,
        "position": 0,
        "dwell_ms": None,
        "weight": weight,
    }


def votes(db):
    with db.session() as s:
        return {(w.norm_text, w.label): (w.votes, w.events) for w in s.scalars(select(WeakLabel))}


def test_redelivered_batch_changes_nothing(db, catalog):
    batch = ([q("q1")], [fb("e1", "q1"), fb("e2", "q1", weight=3.0, type_="purchase")])
    with db.session() as s:
        first = write_batch(s, *batch)
    with db.session() as s:
        again = write_batch(s, *batch)
    assert (first.queries, first.feedback) == (1, 2)
    assert (again.queries, again.feedback) == (0, 0)
    assert votes(db) == {("red shoes", "fashion"): (4.0, 2)}


def test_feedback_before_its_query_waits_then_votes_once(db, catalog):
    with db.session() as s:
        write_batch(s, [], [fb("e1", "q1")])
    assert votes(db) == {}
    with db.session() as s:
        assert ingest_stats(s).feedback_by_status == {"pending": 1}
    with db.session() as s:
        write_batch(s, [q("q1")], [])
    with db.session() as s:
        resolve_all_pending(s)  # a sweep after resolution is a no-op
    assert votes(db) == {("red shoes", "fashion"): (1.0, 1)}


def test_unknown_product_and_abstentions_are_counted_not_voted(db, catalog):
    with db.session() as s:
        write_batch(
            s, [q("q1")], [fb("e1", "q1", product="nope"), fb("e2", "q1", weight=0.0, type_="impression")]
        )
    with db.session() as s:
        stats = ingest_stats(s)
    assert stats.feedback_by_status == {"unknown_product": 1, "no_vote": 1}
    assert votes(db) == {}


def test_a_help_page_click_votes_for_no_category_before_or_after_its_query(db, catalog):
    with db.session() as s:
        load_catalog(
            s,
            [{"product_id": "returns", "category_path": "help/returns", "title": "Returns", "kind": "help"}],
            TaxonomySettings(),
        )
        write_batch(s, [q("q1")], [fb("e1", "q1", product="returns")])
        write_batch(s, [], [fb("e2", "q2", product="returns")])  # before its query: pending
    with db.session() as s:
        write_batch(s, [q("q2")], [])
    with db.session() as s:
        stats = ingest_stats(s)
    assert stats.feedback_by_status == {"no_vote": 2}  # known to the catalog, no category to vote for
    assert votes(db) == {}


def test_dead_letters_are_counted_once_per_kafka_record(db):
    dead = [
        {"topic": "search.feedback", "partition": 0, "offset": 7, "reason": "invalid_json", "payload": b"{"}
    ]
    for _ in range(2):
        with db.session() as s:
            write_batch(s, [], [], dead)
    with db.session() as s:
        assert ingest_stats(s).dead_letters == 1


def test_snapshot_applies_evidence_and_confidence_thresholds(db, catalog):
    with db.session() as s:
        write_batch(
            s,
            [q("q1", "red shoes"), q("q2", "usb cable"), q("q3", "mixed")],
            [
                fb("a", "q1"),
                fb("b", "q1"),
                fb("c", "q2", product="cable"),
                fb("d", "q3"),
                fb("e", "q3", product="cable"),
                fb("f", "q3", product="cable"),
            ],
        )
    with db.session() as s:
        rows = weak_label_snapshot(s, min_votes=2, min_confidence=0.6)
    assert [(r.norm_text, r.label, round(r.confidence, 3)) for r in rows] == [
        ("mixed", "electronics", 0.667),
        ("red shoes", "fashion", 1.0),
    ]


def test_gold_labels_upsert(db):
    with db.session() as s:
        assert upsert_gold(s, [("red shoes", "fashion"), ("usb", "electronics")]) == 2
        upsert_gold(s, [("usb", "office")])
    from store.labels import gold_labels

    with db.session() as s:
        assert [(g.norm_text, g.label) for g in gold_labels(s)] == [
            ("red shoes", "fashion"),
            ("usb", "office"),
        ]


def test_pending_feedback_is_resolved_by_primary_key_whatever_the_statistics_say(db, catalog):
    """Issue 17: with statistics from a moment when nothing was pending, the planner believed the
    partial pending index held one row and compared every pending row with every row to resolve
    (8 s to a minute for one batch, seen as label latency). The UPDATE must find its rows by key."""
    with db.session() as s:
        write_batch(s, [q(f"k{i}") for i in range(2000)], [fb(f"d{i}", f"k{i}") for i in range(2000)])
    with db.session() as s:
        s.execute(text("ANALYZE feedback_events"))  # nothing pending now: the misleading estimate
    with db.session() as s:
        write_batch(s, [], [fb(f"e{i}", f"q{i}") for i in range(1000)])
    ids = [f"q{i}" for i in range(1000)]
    with db.session() as s:
        plan = [r[0] for r in s.execute(text("EXPLAIN " + _RESOLVE_SQL.text), {"query_ids": ids})]
    update = plan[next(i for i, line in enumerate(plan) if "Update on feedback_events" in line) :]
    assert any("Index Scan using pk_feedback_events" in line for line in update)
    assert not any("Join Filter" in line and "event_id" in line for line in update)
    with db.session() as s:
        write_batch(s, [q(f"q{i}") for i in range(1000)], [])
        assert ingest_stats(s).feedback_by_status == {"voted": 3000}
