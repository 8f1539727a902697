"""The ingestion hot path's msgspec decoding against the contract: the pydantic models and the JSON Schemas.

Whatever the bytes, ``decode_*_wire`` must give what ``decode_*`` (the model) gives: the same
accepted values or the same dead-letter reason. Its msgspec fast path may only accept what the
published schema accepts, and must accept the events our producers write (or it is no fast path).
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from fuzz_strategies import JSON_VALUES, PAYLOADS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import codec
from streams.codec import (
    WireFeedback,
    WireQuery,
    decode_feedback,
    decode_feedback_wire,
    decode_query,
    decode_query_wire,
    encode,
)
from streams.events import Feedback, FeedbackType, SearchQuery
from streams.exceptions import MalformedEventError

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
MAX_BYTES = 64 * 1024
CASES = {
    "query": (decode_query, decode_query_wire, WireQuery, SearchQuery, "search.queries"),
    "feedback": (decode_feedback, decode_feedback_wire, WireFeedback, Feedback, "search.feedback"),
}


def _validator(stem: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{stem}.schema.json").read_text()))


VALIDATORS = {name: _validator(case[4]) for name, case in CASES.items()}


def _outcome(decode: Any, fields: tuple[str, ...], raw: bytes) -> tuple[str, Any]:
    """("dead", reason) or ("ok", field values); a timestamp compares as its instant and its offset."""
    try:
        event = decode(raw, max_bytes=MAX_BYTES)
    except MalformedEventError as exc:
        return "dead", exc.reason
    values = {f: getattr(event, f) for f in fields}
    ts = values.pop("timestamp")
    return "ok", {**values, "shown": list(values.get("shown", [])), "ts": (ts, ts.utcoffset())}


# --- strategies: events that are valid, nearly valid, and not at all -------------------------

_DIGITS = st.integers(0, 9).map(str)
TIMESTAMPS = (
    st.builds(
        lambda date, sep, time, frac, zone: f"{date}{sep}{time}{frac}{zone}",
        st.sampled_from(["2025-01-01", "2026-02-29", "2024-02-29", "0001-01-01", "9999-12-31", "2025-1-01"]),
        st.sampled_from(["T", "t", " ", "_"]),
        st.sampled_from(["00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:30", "7:00:00"]),
        st.one_of(st.just(""), st.lists(_DIGITS, min_size=0, max_size=10).map(lambda d: "." + "".join(d))),
        st.sampled_from(
            ["Z", "z", "", "+00:00", "-00:00", "+01:00", "+23:59", "+24:00", "+0100", "+01", "UTC"]
        ),
    )
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=30)
)
_IDS = st.text(min_size=0, max_size=130) | st.sampled_from(["q1", "e1", "p1"])


def _valid_query() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "query_id": st.text(min_size=1, max_size=128),
            "session_id": st.text(min_size=1, max_size=128),
            "timestamp": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
            "query": st.text(min_size=1, max_size=512),
        },
        optional={
            "locale": st.text(min_size=2, max_size=16),
            "shown": st.lists(st.text(max_size=12), max_size=200),
        },
    )


def _valid_feedback() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": st.text(min_size=1, max_size=128),
            "query_id": st.text(min_size=1, max_size=128),
            "timestamp": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
            "type": st.sampled_from([t.value for t in FeedbackType]),
            "product_id": st.text(min_size=1, max_size=128),
            "position": st.integers(0, 10_000),
        },
        optional={"dwell_ms": st.none() | st.integers(0, 2**31 - 1)},
    )


VALID = {"query": _valid_query(), "feedback": _valid_feedback()}
_MUTATIONS = {
    "timestamp": TIMESTAMPS,
    "position": JSON_VALUES | st.integers(-5, 10_005) | st.floats(-2, 3) | st.booleans(),
    "dwell_ms": JSON_VALUES | st.integers(-(2**70), 2**70) | st.floats(),
    "type": JSON_VALUES | st.sampled_from(["Click", "click ", "return_"]),
    "shown": JSON_VALUES | st.lists(st.text(max_size=3), min_size=199, max_size=201),
    "query_id": _IDS | JSON_VALUES,
    "locale": JSON_VALUES | st.text(max_size=17),
}


@st.composite
def _nearly_valid(draw: st.DrawFn, kind: str) -> bytes:
    """A valid event with one field changed, dropped or added, or its bytes tampered with."""
    event = draw(VALID[kind])
    how = draw(st.sampled_from(["mutate", "drop", "extra", "bytes", "as_is"]))
    if how == "mutate":
        name = draw(st.sampled_from(sorted(_MUTATIONS)))
        event[name] = draw(_MUTATIONS[name])
    elif how == "drop" and event:
        event.pop(draw(st.sampled_from(sorted(event))))
    elif how == "extra":
        event[draw(st.text(max_size=10))] = draw(JSON_VALUES)
    raw = json.dumps(event, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if how == "bytes":
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=4)) + raw[cut:]
    return raw


def _payloads(kind: str) -> st.SearchStrategy[bytes]:
    return st.one_of(PAYLOADS, _nearly_valid(kind), VALID[kind].map(lambda d: json.dumps(d).encode()))


# --- properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CASES))
def test_wire_decoding_gives_what_the_model_gives(kind):
    model_decode, wire_decode, wire, _, _ = CASES[kind]
    fields = wire.__struct_fields__

    @settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(raw=_payloads(kind))
    def check(raw: bytes) -> None:
        assert _outcome(wire_decode, fields, raw) == _outcome(model_decode, fields, raw)

    check()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_fast_path_accepts_only_what_the_schema_accepts(kind):
    wire = CASES[kind][2]
    decoder = msgspec.json.Decoder(wire)

    @settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(raw=_payloads(kind))
    def check(raw: bytes) -> None:
        if codec._fast(decoder, raw, MAX_BYTES) is not None:
            VALIDATORS[kind].validate(json.loads(raw))

    check()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_fast_path_takes_every_event_the_schema_accepts_in_our_format(kind):
    """Valid events as producers write them (RFC 3339, at most microseconds) never leave the fast path."""
    wire = CASES[kind][2]
    decoder = msgspec.json.Decoder(wire)

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(event=VALID[kind])
    def check(event: dict[str, Any]) -> None:
        raw = json.dumps(event).encode()
        VALIDATORS[kind].validate(event)
        if b"\\u0000" not in raw and not codec._LONG_FRACTION.search(raw):  # the model's to check
            assert codec._fast(decoder, raw, MAX_BYTES) is not None

    check()


_Q = b'{"query_id":"q","session_id":"s","timestamp":"2025-01-01T00:00:00Z"'


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_Q + b',"query":"a","x":"\xff"}', "invalid_utf8"),
        (_Q + b',"query":"a","x":' + b"[" * 300 + b"]" * 300 + b"}", "invalid_json"),
        (_Q + b',"query":"a","x":' + b"9" * 5000 + b"}", "invalid_json"),
        (_Q + b',"query":"a\x01"}', "invalid_json"),
        (_Q + b',"query":"\xed\xa0\x80"}', "invalid_utf8"),
    ],
)
def test_what_msgspec_would_wave_through_still_gets_the_models_reason(raw, reason):
    """Unknown fields msgspec skips unchecked, control characters, encoded surrogates: the model decides."""
    with pytest.raises(MalformedEventError) as info:
        decode_query_wire(raw, max_bytes=MAX_BYTES)
    assert info.value.reason == reason
    with pytest.raises(MalformedEventError) as same:
        decode_query(raw, max_bytes=MAX_BYTES)
    assert same.value.reason == reason


def test_a_long_fraction_is_truncated_like_the_model_does():
    raw = b'{"query_id":"q","session_id":"s","timestamp":"2025-01-01T00:00:00.1234567Z","query":"a"}'
    assert decode_query_wire(raw).timestamp == datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_our_encoding_round_trips_through_the_fast_path():
    q = SearchQuery(query_id="q1", session_id="s1", timestamp=datetime(2025, 1, 1, 12), query="tent")
    assert codec._fast(codec._QUERY_WIRE, encode(q), None) == WireQuery(
        "q1", "s1", datetime(2025, 1, 1, 12, tzinfo=UTC), "tent"
    )


_NOISE = {"title", "description", "format", "default"}  # defaults: the decoding property covers them


def _constraints(schema: dict[str, Any]) -> dict[str, Any]:
    """Each property's type and limits, without the prose, with ``$ref`` enums resolved."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            out = {k: resolve(v) for k, v in node.items() if k not in _NOISE and k != "$defs"}
            return {"enum": sorted(out["enum"])} if "enum" in out else out
        if isinstance(node, list):
            return sorted((resolve(v) for v in node), key=json.dumps)
        return node

    root = resolve(schema)
    return {"properties": root["properties"], "required": root["required"]}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_msgspec_mirror_has_the_published_schemas_limits(kind):
    """A limit changed in streams/events.py (and so in docs/schemas) must change in the mirror too."""
    _, _, wire, _, stem = CASES[kind]
    published = json.loads((SCHEMAS / f"{stem}.schema.json").read_text())
    assert _constraints(msgspec.json.schema(wire)) == _constraints(published)
