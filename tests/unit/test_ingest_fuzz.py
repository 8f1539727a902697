"""Property-based fuzzing of the ingest decoder: any bytes are either a row or a dead letter."""

from datetime import UTC, datetime

from fuzz_strategies import PAYLOADS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import topics
from streams.codec import encode
from streams.events import SearchQuery
from streams.ingestion.batch import RawRecord, decode_batch
from streams.settings import IngestSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GOOD = encode(SearchQuery(query_id="q", session_id="s", timestamp=NOW, query="shoes"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=PAYLOADS, topic=st.sampled_from(topics.INPUT_TOPICS))
def test_any_payload_is_a_row_or_a_dead_letter_with_a_reason(raw, topic):
    batch = decode_batch(
        [RawRecord(topic, 0, 1, raw), RawRecord(topics.QUERIES, 0, 2, GOOD)], IngestSettings(), NOW
    )
    rows = len(batch.queries) + len(batch.feedback)
    assert rows + len(batch.dead) == 2
    assert batch.queries[-1]["query_id"] == "q"  # the valid neighbour always survives
    for dead in batch.dead:
        assert dead.reason and dead.record.offset == 1
    for row in batch.queries + batch.feedback:
        assert all("\x00" not in v for v in row.values() if isinstance(v, str))
