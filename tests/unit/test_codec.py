import importlib.util
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from streams import topics
from streams.codec import (
    decode_feedback,
    decode_product,
    decode_query,
    encode,
    read_catalog_jsonl,
    read_jsonl,
    write_catalog_jsonl,
    write_jsonl,
)
from streams.events import Feedback, FeedbackType, Product, SearchQuery
from streams.exceptions import MalformedEventError, StreamsError
from streams.simulator import MALFORMED_KINDS, SimConfig, malformed_event, malformed_events, simulate

DOCS = Path(__file__).resolve().parents[2] / "docs"
DECODERS = {topics.QUERIES: decode_query, topics.FEEDBACK: decode_feedback}
MAX_BYTES = 64 * 1024

EXPECTED_REASON = {
    "invalid_json": "invalid_json",
    "invalid_utf8": "invalid_utf8",
    "not_object": "not_object",
    "empty_value": "empty_value",
    "missing_field": "schema: timestamp: missing",
    "wrong_type": "schema: position: int_parsing",
    "bad_enum": "schema: type: enum",
    "out_of_range": "schema: position: greater_than_equal",
    "bad_timestamp": "schema: timestamp: datetime_from_date_parsing",
    "nul_character": "schema: query: nul_character",
    "too_large": "too_large",
}


@pytest.fixture(scope="module")
def sim():
    return simulate(SimConfig(seed=4, n_searches=300))


def test_events_round_trip_as_compact_utc_json(sim):
    for _, _, event in sim.events():
        raw = encode(event)
        decoder = decode_query if isinstance(event, SearchQuery) else decode_feedback
        assert decoder(raw) == event
        text = raw.decode()
        assert ", " not in text and '": ' not in text
        assert json.loads(text)["timestamp"].endswith("Z")


def test_a_naive_timestamp_is_written_and_read_as_utc():
    naive = SearchQuery(query_id="q1", session_id="s1", timestamp=datetime(2025, 1, 1, 12), query="tent")
    assert json.loads(encode(naive))["timestamp"] == "2025-01-01T12:00:00Z"
    decoded = decode_query(
        b'{"query_id":"q1","session_id":"s1","timestamp":"2025-01-01T12:00:00","query":"tent"}'
    )
    assert decoded.timestamp == datetime(2025, 1, 1, 12, tzinfo=UTC)


def test_an_offset_timestamp_keeps_its_instant():
    raw = b'{"query_id":"q1","session_id":"s1","timestamp":"2025-01-01T13:00:00+01:00","query":"tent"}'
    assert decode_query(raw).timestamp == datetime(2025, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_raises_with_its_reason(kind):
    topic, key, raw = malformed_event(kind, random.Random(kind))
    assert key
    with pytest.raises(MalformedEventError) as info:
        DECODERS[topic](raw, max_bytes=MAX_BYTES)
    assert info.value.reason == EXPECTED_REASON[kind]
    assert isinstance(info.value, StreamsError)


def test_malformed_kinds_have_expected_reasons_listed():
    assert set(EXPECTED_REASON) == set(MALFORMED_KINDS)


def test_malformed_events_cycle_through_every_kind():
    events = malformed_events(random.Random(0), 2 * len(MALFORMED_KINDS))
    reasons = []
    for topic, _, raw in events:
        with pytest.raises(MalformedEventError) as info:
            DECODERS[topic](raw, max_bytes=MAX_BYTES)
        reasons.append(info.value.reason)
    assert sorted(set(reasons)) == sorted(EXPECTED_REASON.values())


def test_unknown_malformed_kind_is_refused():
    with pytest.raises(ValueError, match="unknown malformed kind"):
        malformed_event("sarcasm", random.Random(0))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xef\xbb\xbf{}", "invalid_json"),  # a byte-order mark
        (
            b'{"query_id":"q","session_id":"s","timestamp":"2025-01-01T00:00:00Z","query":"a\\ud800"}',
            "invalid_json",
        ),
        (b"null", "not_object"),
        (
            b'{"query_id":"","session_id":"s","timestamp":"2025-01-01T00:00:00Z","query":"a"}',
            "schema: query_id: string_too_short",
        ),
        (
            b'{"query_id":"q","session_id":"s","timestamp":"2025-01-01T00:00:00Z","query":"a","shown":["p1",2]}',
            "schema: shown.1: string_type",
        ),
        (
            b'{"query_id":"q","session_id":"s","timestamp":"2025-01-01T00:00:00Z","query":"a","shown":["p\\u0000"]}',
            "schema: shown: nul_character",
        ),
    ],
)
def test_edge_cases_of_query_decoding(raw, reason):
    with pytest.raises(MalformedEventError) as info:
        decode_query(raw)
    assert info.value.reason == reason


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    raw = b'{"query_id":"q","session_id":"s","timestamp":"2025-01-01T00:00:00Z","query":"C:\\\\u0000"}'
    assert decode_query(raw).query == "C:\\u0000"


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_jsonl_round_trips(sim, tmp_path, name):
    records = list(sim.events())
    path = tmp_path / name
    assert write_jsonl(path, records) == len(records)
    assert list(read_jsonl(path)) == records
    if not name.endswith(".gz"):
        first = json.loads(path.read_text().splitlines()[0])
        assert set(first) == {"topic", "key", "value"}


@pytest.mark.parametrize("name", ["catalog.jsonl", "catalog.jsonl.gz"])
def test_catalog_jsonl_round_trips(sim, tmp_path, name):
    path = tmp_path / name
    assert write_catalog_jsonl(path, sim.catalog) == len(sim.catalog)
    assert list(read_catalog_jsonl(path)) == sim.catalog


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"topic":"search.other","key":"k","value":{}}', "unexpected_topic:search.other"),
        (b'{"topic":"search.feedback","key":"k","value":{"event_id":"e"}}', "schema: query_id: missing"),
        (b'{"topic":"search.queries",', "invalid_json"),
    ],
)
def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n" + line + b"\n")
    with pytest.raises(MalformedEventError, match=r"bad\.jsonl:2") as info:
        list(read_jsonl(path))
    assert info.value.reason == reason


def test_decode_product_rejects_a_missing_category():
    with pytest.raises(MalformedEventError) as info:
        decode_product(b'{"product_id":"p1","title":"Tent"}')
    assert info.value.reason == "schema: category_path: missing"


# --- The documented contract ------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("schema_generator", DOCS / "schemas" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_schemas_match_the_models():
    for name, text in _generator().render().items():
        committed = DOCS / "schemas" / name
        assert committed.read_text(encoding="utf-8") == text, f"{name} is stale: run docs/schemas/generate.py"


EXAMPLES = [
    ("search.queries", SearchQuery),
    ("search.feedback", Feedback),
    ("catalog", Product),
]


@pytest.mark.parametrize(("stem", "model"), EXAMPLES)
def test_examples_validate_against_schema_and_model(stem, model):
    schema = json.loads((DOCS / "schemas" / f"{stem}.schema.json").read_text())
    example = json.loads((DOCS / "examples" / f"{stem}.example.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(example, schema, cls=jsonschema.Draft202012Validator)
    model.model_validate(example)


@pytest.mark.parametrize(("stem", "model"), EXAMPLES)
def test_simulated_events_satisfy_the_published_schemas(sim, stem, model):
    validator = jsonschema.Draft202012Validator(
        json.loads((DOCS / "schemas" / f"{stem}.schema.json").read_text())
    )
    events = {SearchQuery: sim.queries, Feedback: sim.feedback, Product: sim.catalog}[model]
    for event in events[:200]:
        validator.validate(json.loads(encode(event)))


def test_feedback_types_are_documented():
    doc = (DOCS / "events.md").read_text()
    for kind in FeedbackType:
        assert f"`{kind.value}`" in doc
    for reason in {r.split(":")[0] for r in EXPECTED_REASON.values()}:
        assert reason in doc


@pytest.mark.parametrize("dwell", [2**31, 2**40 + 5])
def test_a_dwell_beyond_the_stored_int4_is_refused_not_wrapped(dwell):
    """The store keeps dwell_ms in an int4 column whose binary COPY would store 2**40 + 5 as 5."""
    raw = json.dumps(
        {"event_id": "e", "query_id": "q", "timestamp": "2025-01-01T00:00:00Z", "type": "click",
         "product_id": "p", "position": 0, "dwell_ms": dwell}
    ).encode()
    with pytest.raises(MalformedEventError) as info:
        decode_feedback(raw)
    assert info.value.reason == "schema: dwell_ms: less_than_equal"
    assert decode_feedback(raw.replace(str(dwell).encode(), str(2**31 - 1).encode())).dwell_ms == 2**31 - 1
