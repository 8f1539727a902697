from datetime import UTC, datetime, timedelta

import pytest

from streams import topics
from streams.codec import encode
from streams.events import Feedback, FeedbackType, SearchQuery
from streams.ingestion.batch import RawRecord, decode_batch
from streams.ingestion.votes import vote_weight
from streams.settings import IngestSettings

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
QUERY = SearchQuery(query_id="q1", session_id="s1", timestamp=NOW, query="Red  Shoes", shown=["p1"])


def fb(type_: FeedbackType, **kw) -> Feedback:
    base = {
        "event_id": "e1",
        "query_id": "q1",
        "timestamp": NOW,
        "type": type_,
        "product_id": "p1",
        "position": 0,
    }
    return Feedback(**(base | kw))


def rec(topic: str, value: bytes | None, offset: int = 0) -> RawRecord:
    return RawRecord(topic, 0, offset, value)


@pytest.mark.parametrize(
    ("type_", "weight"),
    [
        (FeedbackType.purchase, 3.0),
        (FeedbackType.add_to_cart, 2.0),
        (FeedbackType.click, 1.0),
        (FeedbackType.impression, 0.0),
        (FeedbackType.return_, 0.0),
    ],
)
def test_vote_weight(type_, weight):
    assert vote_weight(fb(type_)) == weight


def test_good_records_become_rows():
    batch = decode_batch(
        [rec(topics.QUERIES, encode(QUERY)), rec(topics.FEEDBACK, encode(fb(FeedbackType.purchase)), 1)],
        IngestSettings(),
        NOW,
    )
    assert batch.dead == []
    assert batch.queries[0]["norm_text"] == "red shoes" and batch.queries[0]["shown"] == ["p1"]
    assert batch.feedback[0]["weight"] == 3.0 and batch.feedback[0]["type"] == "purchase"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (rec(topics.QUERIES, b"{not json"), "invalid_json"),
        (rec(topics.QUERIES, None), "empty_value"),
        (rec(topics.FEEDBACK, b"x" * 70_000), "too_large"),
        (rec(topics.FEEDBACK, encode(QUERY)), "schema"),
        (
            rec(topics.QUERIES, encode(QUERY.model_copy(update={"timestamp": NOW + timedelta(days=3)}))),
            "timestamp_in_future",
        ),
        (rec("other.topic", encode(QUERY)), "unexpected_topic"),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(record, reason):
    good = rec(topics.QUERIES, encode(QUERY), offset=99)
    batch = decode_batch([record, good], IngestSettings(), NOW)
    assert [d.reason.split(":")[0] for d in batch.dead] == [reason]
    assert len(batch.queries) == 1  # the valid neighbour is kept
