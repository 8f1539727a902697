"""Replaying recorded logs (JSONL in the documented schema, or CSV with a column mapping) into Kafka.

Values are forwarded as they are: validation is ingestion's job, so a bad record in a shop's
history ends up in the dead-letter topic with its reason instead of silently vanishing here.
Pacing follows the records' own timestamps (``speed`` 1 = real time, 60 = an hour a minute) or
none at all (``speed`` 0, the default: a backfill as fast as the broker takes it).
"""

import csv
import gzip
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from streams import topics
from streams.events import Feedback, SearchQuery
from streams.exceptions import StreamsError
from streams.kafka import EventProducer

_INT_FIELDS = {"position", "dwell_ms"}
_LIST_FIELDS = {"shown"}


@dataclass(frozen=True)
class ReplayRecord:
    topic: str
    key: str | None
    value: bytes
    timestamp: datetime | None


@dataclass
class ReplayReport:
    sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    unreadable_lines: list[int] = field(default_factory=list)


def _open(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def read_jsonl(path: Path, report: ReplayReport) -> Iterator[ReplayRecord]:
    """Lines of ``{"topic": ..., "key": ..., "value": {...}}``; unreadable lines are reported, not sent."""
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                topic, value = rec["topic"], rec["value"]
            except (json.JSONDecodeError, KeyError, TypeError):
                report.unreadable_lines.append(lineno)
                continue
            if topic not in topics.INPUT_TOPICS:
                report.unreadable_lines.append(lineno)
                continue
            raw = json.dumps(value, separators=(",", ":")).encode()
            ts = _ts(value.get("timestamp")) if isinstance(value, dict) else None
            yield ReplayRecord(topic, rec.get("key"), raw, ts)


def read_csv(path: Path, topic: str, mapping: Mapping[str, str]) -> Iterator[ReplayRecord]:
    """Rows of a CSV export of ``topic``.

    ``mapping`` (field -> column) names the columns whose header differs from the event field; any
    other field is read from a column of its own name when the header has one.
    """
    models: dict[str, type[SearchQuery] | type[Feedback]] = {
        topics.QUERIES: SearchQuery,
        topics.FEEDBACK: Feedback,
    }
    model = models.get(topic)
    if model is None:
        raise StreamsError(f"the CSV topic must be one of {topics.INPUT_TOPICS}, not {topic!r}")
    unknown = sorted(set(mapping) - set(model.model_fields))
    if unknown:
        raise StreamsError(f"{unknown} are not fields of {topic}; fields: {list(model.model_fields)}")
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        missing = [col for col in mapping.values() if col not in header]
        if missing:
            raise StreamsError(f"{path}: columns {missing} not in the header {header}")
        mapping = {**{f: f for f in model.model_fields if f in header}, **mapping}
        for row in reader:
            value = {name: _convert(name, row[col]) for name, col in mapping.items() if row[col] != ""}
            yield ReplayRecord(
                topic,
                str(value.get("query_id") or "") or None,
                json.dumps(value, separators=(",", ":")).encode(),
                _ts(value.get("timestamp")),
            )


def _convert(name: str, raw: str) -> Any:
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            return raw  # ingestion dead-letters it with a schema reason
    if name in _LIST_FIELDS:
        return [p for p in raw.replace(";", "|").split("|") if p]
    return raw


def replay(
    records: Iterator[ReplayRecord], producer: EventProducer, report: ReplayReport, *, speed: float = 0.0
) -> ReplayReport:
    """Send every record, pacing by timestamps when ``speed`` > 0."""
    first_event: datetime | None = None
    started = time.monotonic()
    for rec in records:
        if speed > 0 and rec.timestamp is not None:
            first_event = first_event or rec.timestamp
            due = (rec.timestamp - first_event).total_seconds() / speed
            delay = due - (time.monotonic() - started)
            if delay > 0:
                producer.flush()
                time.sleep(delay)
        producer.send(rec.topic, rec.key, rec.value)
        report.sent += 1
        report.by_topic[rec.topic] = report.by_topic.get(rec.topic, 0) + 1
    producer.flush()
    return report


def require_sent(report: ReplayReport, path: Path) -> None:
    """Raise :class:`StreamsError` when nothing was sent: replaying a file with nothing replayable
    (the wrong file, a CSV without ``--csv-topic``) is a failed backfill, not an empty success."""
    if report.sent:
        return
    bad = report.unreadable_lines
    if bad:
        lines = ", ".join(str(n) for n in bad[:5]) + (", ..." if len(bad) > 5 else "")
        wanted = " or ".join(topics.INPUT_TOPICS)
        why = f"none of its {len(bad)} line(s) is a record of {wanted} (lines {lines})"
    else:
        why = "it holds no records"
    raise StreamsError(
        f'{path}: nothing replayed: {why}; expected JSONL lines {{"topic": ..., "value": {{...}}}} '
        "(as `intentloop simulate --out` writes) or a CSV export with --csv-topic"
    )
