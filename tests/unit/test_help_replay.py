"""Real customer-service requests replayed as help searches: events the loop labels *help*."""

from datetime import UTC, datetime

import pytest

from streams.events import FeedbackType, ItemKind
from streams.simulator.help_replay import read_requests, replay_requests
from streams.simulator.pages import HELP_TOPICS
from streams.weak.intent_types import HELP, type_votes
from streams.weak.records import records_from_events

CSV = (
    "instruction,category,intent\n"
    "I want a refund for my order,REFUND,get_refund\n"
    "where  is my package?,DELIVERY,delivery_period\n"
    "I want a refund for my order,REFUND,get_refund\n"  # a repeat: one request
    "subscribe me to the newsletter,NEWSLETTER,newsletter_subscription\n"  # no help page for it
    "I have to complain about your service,FEEDBACK,complaint\n"
)
HELP_IDS = [f"H-{i + 1:06d}" for i in range(len(HELP_TOPICS))]


def test_requests_are_read_with_their_help_topic(tmp_path) -> None:
    path = tmp_path / "requests.csv"
    path.write_text(CSV, encoding="utf-8")
    requests = read_requests(path)
    assert [(r.text, r.topic) for r in requests] == [
        ("i want a refund for my order", "returns-and-refunds"),
        ("where is my package?", "delivery"),
        ("i have to complain about your service", "contact-customer-service"),
    ]
    path.write_text("text,label\nhello,REFUND\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no column instruction, category"):
        read_requests(path)


def test_replayed_searches_open_their_topic_page_and_vote_help(tmp_path) -> None:
    path = tmp_path / "requests.csv"
    path.write_text(CSV, encoding="utf-8")
    requests = read_requests(path)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    queries, feedback = replay_requests(requests, HELP_IDS, start=start, span_s=3600, seed=3, open_rate=1.0)
    assert [q.query for q in sorted(queries, key=lambda q: q.query)] == sorted(r.text for r in requests)
    assert all(start <= q.timestamp <= start.replace(hour=1) for q in queries)
    assert all(f.type is FeedbackType.click and f.product_id in HELP_IDS for f in feedback)
    by_query = {q.query_id: q for q in queries}
    refund = next(f for f in feedback if by_query[f.query_id].query.startswith("i want a refund"))
    assert refund.product_id == HELP_IDS[0] and by_query[refund.query_id].shown[0] == HELP_IDS[0]
    kinds = dict.fromkeys(HELP_IDS, ItemKind.help)
    for record in records_from_events(queries, feedback):
        votes = type_votes(record, kinds)  # "where is my package?" is a question too
        assert max(votes, key=lambda v: v.weight).label == HELP and "opened_help" in {v.lf for v in votes}
    again = replay_requests(requests, HELP_IDS, start=start, span_s=3600, seed=3, open_rate=1.0)
    assert again == (queries, feedback)  # deterministic for a seed
