"""Turning a batch of raw Kafka records into stored rows: validate, label, write, dead-letter.

The ingestion worker (``streams.ingestion.worker``) is a thin shell around :class:`BatchIngestor`;
this module has no Kafka client in it so it is tested directly and reused by the replay and
benchmark paths.
"""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from store.db import Database
from store.events import BatchCounts, write_batch
from store.exceptions import StoreUnavailableError
from store.taxonomy import normalise_query
from streams import topics
from streams.codec import WireFeedback, WireQuery, decode_feedback_wire, decode_query_wire
from streams.events import Feedback, SearchQuery
from streams.exceptions import MalformedEventError
from streams.ingestion.votes import vote_weight
from streams.settings import IngestSettings

log = logging.getLogger(__name__)

_DEAD_PAYLOAD_BYTES = 4096  # what of a rejected payload is kept in Postgres for inspection
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class Record(Protocol):
    """What decoding needs of a record: aiokafka's ``ConsumerRecord`` is one, :class:`RawRecord` another."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


class RawRecord(NamedTuple):
    """One Kafka record as received, with the coordinates that identify it (tests, replays)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: str


@dataclass
class DecodedBatch:
    queries: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def decode_batch(records: Iterable[Record], settings: IngestSettings, now: datetime) -> DecodedBatch:
    """Validate every record; good ones become store rows, bad ones dead letters with a reason."""
    out = DecodedBatch()
    horizon = now + timedelta(seconds=settings.max_future_skew_s)
    for rec in records:
        try:
            event = _decode(rec, settings.max_event_bytes)
            if event.timestamp > horizon:
                raise MalformedEventError("timestamp_in_future")
        except MalformedEventError as exc:
            out.dead.append(DeadLetter(rec, exc.reason))
            continue
        if isinstance(event, WireQuery):
            out.queries.append(query_row(event))
        else:
            out.feedback.append(feedback_row(event))
    return out


def _decode(rec: Record, max_bytes: int) -> WireQuery | WireFeedback:
    if rec.topic == topics.QUERIES:
        return decode_query_wire(rec.value or b"", max_bytes=max_bytes)
    if rec.topic == topics.FEEDBACK:
        return decode_feedback_wire(rec.value or b"", max_bytes=max_bytes)
    raise MalformedEventError(f"unexpected_topic:{rec.topic}")


def query_row(q: SearchQuery | WireQuery) -> dict[str, Any]:
    return {
        "query_id": q.query_id,
        "session_id": q.session_id,
        "ts": _utc(q.timestamp),
        "text": q.query,
        "norm_text": normalise_query(q.query),
        "locale": q.locale,
        "shown": list(q.shown),
    }


def feedback_row(f: Feedback | WireFeedback) -> dict[str, Any]:
    return {
        "event_id": f.event_id,
        "query_id": f.query_id,
        "ts": _utc(f.timestamp),
        "type": str(f.type),  # a StrEnum's str() is its value, without the slow ``.value`` property
        "product_id": f.product_id,
        "position": f.position,
        "dwell_ms": f.dwell_ms,
        "weight": vote_weight(f),
    }


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


class BatchIngestor:
    """Writes decoded batches, retrying through store outages so nothing is ever skipped.

    The caller acknowledges the Kafka offsets only after :meth:`write` returns, so a crash at any
    point means redelivery, and redelivery is harmless because every write is idempotent.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, batch: DecodedBatch, *, should_stop: Any = None) -> BatchCounts:
        dead_rows = [
            {
                "topic": d.record.topic,
                "partition": d.record.partition,
                "offset": d.record.offset,
                "reason": d.reason,
                "payload": (d.record.value or b"")[:_DEAD_PAYLOAD_BYTES],
            }
            for d in batch.dead
        ]
        attempt = 0
        while True:
            try:
                with self._db.session() as session:
                    return write_batch(session, batch.queries, batch.feedback, dead_rows)
            except StoreUnavailableError as exc:
                if should_stop is not None and should_stop():
                    raise
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                log.warning("store unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                attempt += 1
