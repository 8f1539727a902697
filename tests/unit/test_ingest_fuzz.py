"""Property-based fuzzing of the ingest decoder: any bytes are either a row or a dead letter."""

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import topics
from streams.codec import encode
from streams.events import SearchQuery
from streams.ingest import RawRecord, decode_batch
from streams.settings import IngestSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GOOD = encode(SearchQuery(query_id="q", session_id="s", timestamp=NOW, query="shoes"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "query_id",
        "session_id",
        "timestamp",
        "query",
        "locale",
        "shown",
        "event_id",
        "type",
        "product_id",
        "position",
        "dwell_ms",
    ]
)
# Events that look almost right: real field names with arbitrary JSON values (wrong types, missing fields).
near_events = st.dictionaries(field_names, json_values, max_size=11).map(lambda d: json.dumps(d).encode())
payloads = st.one_of(st.binary(max_size=300), near_events, st.text(max_size=200).map(str.encode))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=payloads, topic=st.sampled_from(topics.INPUT_TOPICS))
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
