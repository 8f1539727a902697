"""The review queue in Postgres (store.review): reviewers and their tokens, the queue's order and
overlap, decisions and undo, the gold rows derived from them (never over other gold), what
selection reads (the pool, the evidence), and reviewed gold reaching training and the labels report."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from intentloop.labels_report import report_lines, summary_lines
from store.catalog import load_catalog
from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.events import write_batch
from store.labels import gold_by_purpose, replace_label_distributions, upsert_gold
from store.models import GoldLabel, ReviewDecision, ReviewItem
from store.review import (
    Candidate,
    NewItem,
    ReviewError,
    add_reviewer,
    decide,
    decisions,
    double_reviewed,
    enqueue,
    next_item,
    query_evidence,
    queue_counts,
    review_pool,
    reviewer_for,
    revoke_reviewer,
    undo_last,
)
from store.settings import TaxonomySettings
from streams.labels_job import run_aggregation
from streams.weak.settings import LabelSettings
from trainer.settings import TrainSettings
from trainer.snapshot import build_snapshot, head_rows
from trainer.split import is_validation

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
LABELS = ["electronics", "fashion", "garden"]


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _item(query: str, rank: int, *, wanted: int = 1, suggestion: str | None = "electronics") -> NewItem:
    return NewItem(
        query=query,
        strategy="active",
        rank=rank,
        score=1.0 - rank / 10,
        reasons={"uncertainty": 0.5, "why": ["unsure"]},
        version="v1",
        suggestion=suggestion,
        probabilities=[("electronics", 0.6), ("garden", 0.3)],
        weak=None,
        evidence=[],
        explanation=None,
        searches=3,
        wanted=wanted,
    )


def _reviewers(db: Database, *names: str) -> None:
    with db.session() as s:
        for name in names:
            add_reviewer(s, name, _sha(f"token-{name}"))


def _queue(db: Database, *items: NewItem, dimension: str = CATEGORY) -> int:
    with db.session() as s:
        return enqueue(s, dimension, list(items))


def _next(db: Database, reviewer: str, dimension: str | None = None) -> str | None:
    with db.session() as s:
        item = next_item(s, reviewer, dimension)
    return None if item is None else item.query


def _item_id(db: Database, query: str) -> int:
    with db.session() as s:
        item_id = s.scalar(
            select(ReviewItem.id).where(ReviewItem.norm_text == query, ReviewItem.dimension == CATEGORY)
        )
    assert item_id is not None
    return item_id


def _decide(db: Database, query: str, reviewer: str, action: str = "label", label: str | None = None, **kw):
    with db.session() as s:
        return decide(s, _item_id(db, query), reviewer, action, label, 4.5, **kw)


def _gold(db: Database) -> list[tuple[str, str, str, str, str, float]]:
    with db.session() as s:
        rows = s.scalars(select(GoldLabel).order_by(GoldLabel.dimension, GoldLabel.norm_text)).all()
        return [(g.dimension, g.norm_text, g.label, g.source, g.purpose, g.weight) for g in rows]


def test_reviewers_are_found_by_token_digest_until_revoked(db) -> None:
    _reviewers(db, "alice", "bob")
    with db.session() as s:
        assert (reviewer_for(s, _sha("token-alice")), reviewer_for(s, _sha("token-bob"))) == ("alice", "bob")
        assert reviewer_for(s, _sha("nobody")) is None
        assert revoke_reviewer(s, "alice") is True
    with db.session() as s:
        assert reviewer_for(s, _sha("token-alice")) is None
        assert (revoke_reviewer(s, "alice"), revoke_reviewer(s, "carol")) == (False, False)
        add_reviewer(s, "alice", _sha("new token"))  # a new token reinstates her
    with db.session() as s:
        assert reviewer_for(s, _sha("new token")) == "alice"
        assert reviewer_for(s, _sha("token-alice")) is None
        with pytest.raises(ReviewError, match="SHA-256"):
            add_reviewer(s, "dave", "not-a-digest")


def test_queue_order_overlap_and_skips(db) -> None:
    _reviewers(db, "alice", "bob", "carol")
    assert _queue(db, _item("q1", 0, wanted=2), _item("q2", 1)) == 1
    assert _queue(db, _item("q3", 0), _item("q1", 5)) == 2  # q1 is queued already: skipped
    with db.session() as s:
        assert s.scalar(select(ReviewItem.batch).where(ReviewItem.norm_text == "q1")) == 1
        assert queue_counts(s) == {"queued": 3, "reviewed": 0, "skipped": 0, "pending": 3}
    assert _next(db, "alice") == "q1"
    _decide(db, "q1", "alice", "label", "garden")
    assert _next(db, "alice") == "q2"  # never the same item twice to one reviewer
    assert _next(db, "bob") == "q1"  # wanted twice: offered to a second reviewer
    _decide(db, "q1", "bob", "accept")
    assert _next(db, "carol") == "q2"  # q1 has its two reviews
    _decide(db, "q2", "alice", "skip")
    assert _next(db, "alice") == "q3"
    assert _next(db, "bob") == "q2"  # a skip is not a review: others still get it
    assert _next(db, "alice", INTENT_TYPE) is None
    with db.session() as s:
        assert queue_counts(s) == {"queued": 3, "reviewed": 1, "skipped": 1, "pending": 2}
        assert double_reviewed(s, CATEGORY) == [("q1", {"alice": "garden", "bob": "electronics"})]
    with db.session() as s:  # alice undoes her skip: q2 is offered to her again, first
        undone = undo_last(s, "alice")
    assert undone is not None and (undone.query, undone.action, undone.undone_at is not None) == (
        "q2",
        "skip",
        True,
    )
    assert _next(db, "alice") == "q2"


def test_decisions_derive_the_gold_row_exactly(db) -> None:
    _reviewers(db, "alice", "bob")
    _queue(db, _item("usb c charger", 0, wanted=2), _item("garden hose", 1, suggestion="garden"))
    first = _decide(db, "usb c charger", "alice", "label", "electronics")
    assert (first.reviewer, first.label, first.action, first.seconds, first.undone_at) == (
        "alice",
        "electronics",
        "label",
        4.5,
        None,
    )
    accepted = _decide(db, "garden hose", "alice", "accept")
    assert accepted.label == "garden"
    assert _gold(db) == [
        (CATEGORY, "garden hose", "garden", "review:alice", "train", 1.0),
        (CATEGORY, "usb c charger", "electronics", "review:alice", "train", 1.0),
    ]
    _decide(db, "usb c charger", "bob", "label", "fashion")  # 1-1: the latest wins, at half weight
    assert _gold(db)[1] == (CATEGORY, "usb c charger", "fashion", "review:alice,bob", "train", 0.5)
    with db.session() as s:
        assert undo_last(s, "bob") is not None
    assert _gold(db)[1] == (CATEGORY, "usb c charger", "electronics", "review:alice", "train", 1.0)
    with db.session() as s:  # alice's latest is the garden hose; then the charger: no gold left
        assert undo_last(s, "alice", purpose="eval").query == "garden hose"  # type: ignore[union-attr]
        assert undo_last(s, "alice").query == "usb c charger"  # type: ignore[union-attr]
        assert undo_last(s, "alice") is None
    assert _gold(db) == []
    with db.session() as s:
        trail = decisions(s, CATEGORY)
    assert [(d.reviewer, d.query, d.label, d.undone_at is not None) for d in trail] == [
        ("alice", "usb c charger", "electronics", True),
        ("alice", "garden hose", "garden", True),
        ("bob", "usb c charger", "fashion", True),
    ]


def test_purpose_and_gold_weight_are_the_callers(db) -> None:
    _reviewers(db, "alice", "bob")
    _queue(db, _item("q1", 0, wanted=2))
    _decide(db, "q1", "alice", "label", "garden", purpose="eval", gold_weight=2.0)
    assert _gold(db) == [(CATEGORY, "q1", "garden", "review:alice", "eval", 2.0)]
    _decide(db, "q1", "bob", "label", "fashion", purpose="eval", gold_weight=2.0)
    assert _gold(db) == [(CATEGORY, "q1", "fashion", "review:alice,bob", "eval", 1.0)]


def test_file_gold_is_never_overwritten_by_a_review(db) -> None:
    with db.session() as s:
        upsert_gold(s, [("q1", "electronics")], source="manual", purpose="eval")
    _reviewers(db, "alice")
    _queue(db, _item("q1", 0))
    _decide(db, "q1", "alice", "label", "garden")
    assert _gold(db) == [(CATEGORY, "q1", "electronics", "manual", "eval", 1.0)]
    with db.session() as s:
        undo_last(s, "alice")
    assert _gold(db) == [(CATEGORY, "q1", "electronics", "manual", "eval", 1.0)]


def test_a_repeated_or_invalid_decision_stores_nothing_new(db) -> None:
    _reviewers(db, "alice", "bob")
    _queue(db, _item("q1", 0), _item("q2", 1, suggestion=None))
    first = _decide(db, "q1", "alice", "label", "garden")
    again = _decide(db, "q1", "alice", "label", "fashion")  # the form submitted twice
    assert again == first
    with pytest.raises(ReviewError, match="no suggestion"):
        _decide(db, "q2", "alice", "accept")
    with pytest.raises(ReviewError, match="action"):
        _decide(db, "q2", "alice", "delete")
    with pytest.raises(ReviewError, match="needs a label"):
        _decide(db, "q2", "alice", "label", None)
    with pytest.raises(ReviewError, match="no review item"), db.session() as s:
        decide(s, 999, "alice", "skip", None, 1.0)
    with db.session() as s:
        revoke_reviewer(s, "bob")
    with pytest.raises(ReviewError, match="revoked"):
        _decide(db, "q2", "bob", "skip")
    with pytest.raises(ReviewError, match="no reviewer"):
        _decide(db, "q2", "mallory", "skip")
    with db.session() as s:
        assert s.scalar(select(ReviewDecision.id).where(ReviewDecision.norm_text == "q2")) is None
        assert len(decisions(s)) == 1


def _distribution(query: str, label: str | None, searches: int, *, abstained: bool = False) -> dict:
    return {
        "norm_text": query,
        "label": label,
        "confidence": 0.8 if label else 0.0,
        "evidence": 4.0 if label else 0.0,
        "distribution": {label: 0.8, "garden": 0.2} if label else {},
        "abstained": abstained,
        "reason": "no_evidence" if abstained else "",
        "method": "majority",
        "searches": searches,
        "weight": 1.0,
    }


def test_the_pool_leaves_out_gold_and_queued_queries_busiest_first(db) -> None:
    with db.session() as s:
        replace_label_distributions(
            s,
            [
                _distribution("quiet", "electronics", 5),
                _distribution("busy abstained", None, 9, abstained=True),
                _distribution("has gold", "garden", 50),
                _distribution("queued", "garden", 40),
            ],
        )
        replace_label_distributions(s, [_distribution("other dimension", "buy", 99)], INTENT_TYPE)
        upsert_gold(s, [("has gold", "garden")])
    _queue(db, _item("queued", 0))
    with db.session() as s:
        pool = review_pool(s, CATEGORY, 10)
        assert [c.query for c in review_pool(s, CATEGORY, 1)] == ["busy abstained"]
    assert pool == [
        Candidate("busy abstained", 9, None, {}, 0.0, True, "no_evidence", 0.0),
        Candidate("quiet", 5, "electronics", {"electronics": 0.8, "garden": 0.2}, 0.8, False, None, 4.0),
    ]


CATALOG = [
    {"product_id": "p1", "category_path": "electronics/chargers", "title": "20W USB-C charger"},
    {"product_id": "p2", "category_path": "electronics/cables", "title": "USB-C cable"},
    {"product_id": "p3", "category_path": "garden/hoses", "title": "Garden hose 25m"},
    {"product_id": "h1", "category_path": "help/returns", "title": "Returns and refunds", "kind": "help"},
]
SHOWN = ["p1", "p2", "p3", "h1", "zz"]
# (query, [(type, product, dwell ms)]) per search
SEARCHES: list[tuple[str, list[tuple[str, str, int | None]]]] = [
    ("usb c charger", [("click", "p1", 9_000), ("add_to_cart", "p1", None), ("purchase", "p1", None)]),
    ("usb c charger", [("impression", "p2", None), ("click", "p1", 7_000), ("click", "p2", 3_000)]),
    ("usb c charger", [("click", "zz", 2_000)]),
    ("garden hose", [("click", "p3", 8_000), ("purchase", "p3", None)]),
    ("garden hose", [("click", "p3", 8_000), ("purchase", "p3", None)]),
    ("return my charger", [("click", "h1", 20_000)]),
    ("nothing clicked", []),
]


def _seed_searches(db: Database) -> None:
    queries, feedback = [], []
    for i, (query, acts) in enumerate(SEARCHES):
        qid, ts = f"q{i}", T0 + timedelta(minutes=i)
        queries.append(
            {
                "query_id": qid,
                "session_id": f"s{i}",
                "ts": ts,
                "text": query,
                "norm_text": query,
                "locale": "en-GB",
                "shown": SHOWN,
            }
        )
        for k, (kind, pid, dwell) in enumerate(acts):
            feedback.append(
                {
                    "event_id": f"{qid}-{k}",
                    "query_id": qid,
                    "ts": ts + timedelta(seconds=5 + k),
                    "type": kind,
                    "product_id": pid,
                    "position": SHOWN.index(pid),
                    "dwell_ms": dwell,
                    "weight": 1.0,
                }
            )
    with db.session() as s:
        load_catalog(s, CATALOG, TaxonomySettings())
    with db.session() as s:
        write_batch(s, queries, feedback)


def test_query_evidence_counts_what_shoppers_did_strongest_first(db) -> None:
    _seed_searches(db)
    with db.session() as s:
        found = query_evidence(
            s, ["usb c charger", "garden hose", "return my charger", "nothing clicked", "x"]
        )
        assert query_evidence(s, []) == {}
        assert [
            e["product_id"] for e in query_evidence(s, ["usb c charger"], per_query=2)["usb c charger"]
        ] == [
            "p1",
            "p1",
        ]
    assert found == {
        "usb c charger": [
            {
                "type": "purchase",
                "product_id": "p1",
                "title": "20W USB-C charger",
                "label": "electronics",
                "n": 1,
            },
            {
                "type": "add_to_cart",
                "product_id": "p1",
                "title": "20W USB-C charger",
                "label": "electronics",
                "n": 1,
            },
            {
                "type": "click",
                "product_id": "p1",
                "title": "20W USB-C charger",
                "label": "electronics",
                "n": 2,
            },
            {"type": "click", "product_id": "p2", "title": "USB-C cable", "label": "electronics", "n": 1},
            {"type": "click", "product_id": "zz", "title": "zz", "label": None, "n": 1},
        ],
        "garden hose": [
            {"type": "purchase", "product_id": "p3", "title": "Garden hose 25m", "label": "garden", "n": 2},
            {"type": "click", "product_id": "p3", "title": "Garden hose 25m", "label": "garden", "n": 2},
        ],
        "return my charger": [
            # a help page votes for no category: no label
            {"type": "click", "product_id": "h1", "title": "Returns and refunds", "label": None, "n": 1},
        ],
    }


def _labelled_pool(db: Database, n: int) -> dict[str, str]:
    """``n`` aggregated queries (label_distributions: what training reads), labels in turn."""
    rows = {f"{LABELS[i % 3]} query {i}": LABELS[i % 3] for i in range(n)}
    with db.session() as s:
        replace_label_distributions(s, [_distribution(q, lab, 2) for q, lab in rows.items()])
        replace_label_distributions(
            s, [_distribution(q, "buy" if i % 2 else "browse", 2) for i, q in enumerate(rows)], INTENT_TYPE
        )
    return rows


def test_training_uses_the_reviewed_gold_weight(db) -> None:
    rows = _labelled_pool(db, 90)
    train_q = next(q for q in rows if not is_validation(q, 0.2))
    val_q = next(q for q in rows if is_validation(q, 0.2))
    _reviewers(db, "alice", "bob")
    _queue(db, _item(train_q, 0, wanted=2), _item(val_q, 1, wanted=2))
    _queue(db, _item(train_q, 0, wanted=2), dimension=INTENT_TYPE)
    for query in (train_q, val_q):  # alice and bob disagree: half a row, bob's label
        _decide(db, query, "alice", "label", "electronics")
        _decide(db, query, "bob", "label", "garden")
    with db.session() as s:
        item = s.scalar(select(ReviewItem.id).where(ReviewItem.dimension == INTENT_TYPE))
        decide(s, int(item), "alice", "label", "ask", 2.0, gold_weight=0.25)
        split = gold_by_purpose(s)
        assert (split.train, split.weights) == (
            {train_q: "garden", val_q: "garden"},
            {train_q: 0.5, val_q: 0.5},
        )
        assert (split.weight_of(train_q), split.weight_of("no such query")) == (0.5, 1.0)
    snap = build_snapshot(db, TrainSettings(seed=1), fresh_since=None, dimensions=(CATEGORY, INTENT_TYPE))
    train = {e.text: e for e in snap.train}
    val = {e.text: e for e in snap.val}
    assert (train[train_q].label, train[train_q].weight, train[train_q].gold) == ("garden", 0.5, True)
    assert (val[val_q].label, val[val_q].weight, val[val_q].gold) == ("garden", 0.5, True)
    assert snap.summary["counts"]["gold_train"] == 1 and snap.summary["counts"]["gold_val"] == 1
    heads = head_rows(db, TrainSettings(seed=1, min_examples_per_label=1), INTENT_TYPE)
    assert heads is not None
    typed = {e.text: e for e in heads.train}
    assert (typed[train_q].label, typed[train_q].weight, typed[train_q].gold) == ("ask", 0.25, True)


def test_gold_weight_one_keeps_snapshots_as_before(db) -> None:
    """Weight 1.0 everywhere (file gold): the rows and their hash are what they were before weights."""
    rows = _labelled_pool(db, 60)
    train_q = next(q for q in rows if not is_validation(q, 0.2))
    with db.session() as s:
        upsert_gold(s, [(train_q, "fashion")], source="file", purpose="train")
    before = build_snapshot(db, TrainSettings(seed=1), fresh_since=None)
    with db.session() as s:  # the same gold stored through the weight column explicitly
        s.execute(update(GoldLabel).values(weight=1.0))
    after = build_snapshot(db, TrainSettings(seed=1), fresh_since=None)
    assert before.summary["content_sha256"] == after.summary["content_sha256"]
    assert {e.text: e.weight for e in before.train if e.gold} == {train_q: 1.0}


def test_the_labels_report_counts_reviewed_gold_apart(db) -> None:
    _seed_searches(db)
    with db.session() as s:
        upsert_gold(s, [("garden hose", "garden")], source="file.csv", purpose="eval")
    _reviewers(db, "alice")
    _queue(db, _item("usb c charger", 0))
    _decide(db, "usb c charger", "alice", "label", "electronics")
    result = run_aggregation(db, LabelSettings(), progress=False)
    rep = result.report
    assert (rep["n_gold"], rep["n_review"], rep["review_accuracy"]) == (2, 1, 1.0)
    functions = {f["name"]: f for f in rep["labeling_functions"]}
    assert (functions["purchase"]["n_gold"], functions["purchase"]["n_review"]) == (2, 1)
    assert functions["purchase"]["review_accuracy"] == 1.0
    assert all(f["n_review"] <= f["n_gold"] for f in functions.values())
    lines = report_lines(result.report_id, T0, rep)
    assert "  gold          2 (1 reviewed), accuracy on the reviewed 100.0%" in lines
    header = next(line for line in lines if line.strip().startswith("function"))
    assert header.split()[-3:] == ["reviewed", "n", "rev"]
    assert "gold 2 (1 reviewed), accuracy on the reviewed 100.0%" in summary_lines(result.report_id, rep)
