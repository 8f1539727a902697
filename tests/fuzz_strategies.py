"""Hypothesis strategies for bad input, shared by the unit and the broker-level fuzz tests."""

import json

from hypothesis import strategies as st

FIELD_NAMES = st.sampled_from(
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
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Events that look almost right: real field names with arbitrary JSON values (wrong types, missing fields).
NEAR_EVENTS = st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=11).map(lambda d: json.dumps(d).encode())
PAYLOADS = st.one_of(st.binary(max_size=300), NEAR_EVENTS, st.text(max_size=200).map(str.encode))
