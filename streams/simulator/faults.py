"""Bad input for dead-letter demos and tests: malformed raw events, and valid-but-unknown products."""

import json
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from streams import topics
from streams.events import Feedback, FeedbackType, SearchQuery

# Each kind breaks a raw event in one way the decoder must turn into a dead letter.
MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",  # truncated JSON
    "invalid_utf8",  # bytes that are not UTF-8 inside a string
    "not_object",  # a JSON array instead of an object
    "empty_value",  # zero bytes
    "missing_field",  # a required field left out
    "wrong_type",  # a string where an integer belongs
    "bad_enum",  # an unknown feedback type
    "out_of_range",  # a negative position
    "bad_timestamp",  # an unparseable timestamp
    "nul_character",  # a NUL in a text field (Postgres cannot store it)
    "too_large",  # 70 KiB, over the default 64 KiB ingest limit
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ts(rng: random.Random) -> str:
    base = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    return (base + timedelta(seconds=rng.uniform(0, 3600))).isoformat()


def _query(rng: random.Random) -> dict[str, object]:
    return {
        "query_id": _uuid(rng),
        "session_id": _uuid(rng),
        "timestamp": _ts(rng),
        "query": "running shoes",
        "locale": "en-US",
        "shown": [f"p{rng.randrange(1000):06d}" for _ in range(5)],
    }


def _feedback(rng: random.Random) -> dict[str, object]:
    return {
        "event_id": _uuid(rng),
        "query_id": _uuid(rng),
        "timestamp": _ts(rng),
        "type": "click",
        "product_id": f"p{rng.randrange(1000):06d}",
        "position": rng.randrange(10),
        "dwell_ms": 30_000,
    }


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def malformed_event(kind: str, rng: random.Random) -> tuple[str, bytes, bytes]:
    """``(topic, key, raw value)`` of one malformed event of ``kind`` (one of :data:`MALFORMED_KINDS`)."""
    q, f = _query(rng), _feedback(rng)
    qkey, fkey = str(q["query_id"]).encode(), str(f["query_id"]).encode()
    if kind == "invalid_json":
        raw = _dumps(q)
        return topics.QUERIES, qkey, raw[: rng.randrange(5, len(raw) - 1)]
    if kind == "invalid_utf8":
        return topics.QUERIES, qkey, _dumps(q).replace(b"running shoes", b"running \xff\xfe shoes")
    if kind == "not_object":
        return topics.FEEDBACK, fkey, _dumps([f])
    if kind == "empty_value":
        return topics.FEEDBACK, fkey, b""
    if kind == "missing_field":
        del q["timestamp"]
        return topics.QUERIES, qkey, _dumps(q)
    if kind == "wrong_type":
        f["position"] = "third"
        return topics.FEEDBACK, fkey, _dumps(f)
    if kind == "bad_enum":
        f["type"] = "like"
        return topics.FEEDBACK, fkey, _dumps(f)
    if kind == "out_of_range":
        f["position"] = -1
        return topics.FEEDBACK, fkey, _dumps(f)
    if kind == "bad_timestamp":
        f["timestamp"] = "yesterday at noon"
        return topics.FEEDBACK, fkey, _dumps(f)
    if kind == "nul_character":
        q["query"] = "running\x00shoes"
        return topics.QUERIES, qkey, _dumps(q)
    if kind == "too_large":
        q["padding"] = "x" * (70 * 1024)  # unknown fields are ignored; only the size is wrong
        return topics.QUERIES, qkey, _dumps(q)
    raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")


def malformed_events(rng: random.Random, n: int) -> list[tuple[str, bytes, bytes]]:
    """``n`` malformed raw events cycling through every kind (each appears once ``n >= len(kinds)``)."""
    kinds = list(MALFORMED_KINDS)
    rng.shuffle(kinds)
    return [malformed_event(kinds[i % len(kinds)], rng) for i in range(n)]


def unknown_product_feedback(rng: random.Random, queries: Sequence[SearchQuery], n: int) -> list[Feedback]:
    """Valid clicks on real queries for product ids no catalog has (7 digits; catalog ids have 6).

    Not malformed: ingestion accepts them, and the label join finds no category for them.
    """
    if not queries:
        return []
    out = []
    for _ in range(n):
        q = queries[rng.randrange(len(queries))]
        out.append(
            Feedback(
                event_id=_uuid(rng),
                query_id=q.query_id,
                timestamp=q.timestamp + timedelta(seconds=rng.uniform(1, 30)),
                type=FeedbackType.click,
                product_id=f"p{rng.randrange(1_000_000, 10_000_000)}",
                position=rng.randrange(max(1, len(q.shown))),
                dwell_ms=rng.randrange(1_000, 60_000),
            )
        )
    return out
