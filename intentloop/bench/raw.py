"""The raw baseline: plain batch consume + COPY of the same events, the practical limit of this machine.

It does the work every ingest path must do (fetch from the broker, parse the JSON, pull out the
columns, write them in one transaction per batch) and none of what makes ingestion correct
(validation, dedup by event id, joins, votes, offset commits). ``events_per_s / raw_events_per_s``
says how much of the machine's limit the real worker reaches.
"""

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from store.taxonomy import normalise_query
from streams import topics

_QUERY_COLS = ("query_id", "session_id", "ts", "text", "norm_text", "locale", "shown")
_FEEDBACK_COLS = (
    "event_id",
    "query_id",
    "ts",
    "type",
    "product_id",
    "position",
    "dwell_ms",
    "weight",
    "status",
)
# Unlogged and without keys: no WAL, no index maintenance, no conflict checks; ingested_at keeps its default.
_STAGING = {"bench_raw_queries": "search_queries", "bench_raw_feedback": "feedback_events"}


@dataclass(frozen=True)
class RawResult:
    events: int
    undecodable: int
    wall_s: float  # first batch committed -> last batch committed
    events_per_s: float


def raw_baseline(bootstrap: str, conninfo: str, *, max_records: int = 10_000) -> RawResult:
    """Consume both input topics from the beginning to their current end, COPYing every batch."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, like in _STAGING.items():
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute(f"CREATE UNLOGGED TABLE {name} (LIKE {like} INCLUDING DEFAULTS)")
        try:
            return asyncio.run(_consume(bootstrap, conninfo, max_records))
        finally:
            for name in _STAGING:
                conn.execute(f"DROP TABLE IF EXISTS {name}")


async def _consume(bootstrap: str, conninfo: str, max_records: int) -> RawResult:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    loop = asyncio.get_running_loop()
    try:
        await consumer.topics()  # loads the cluster metadata that partitions_for_topic reads
        tps = [
            TopicPartition(t, p)
            for t in topics.INPUT_TOPICS
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        want = sum(end[tp] - begin[tp] for tp in tps)
        done = bad = first_n = 0
        t_first = t_last = time.monotonic()
        with psycopg.connect(conninfo) as pg, tqdm(total=want, desc="raw", unit="ev", leave=False) as bar:
            while done < want:
                batches = await consumer.getmany(timeout_ms=1000, max_records=max_records)
                values = [(r.topic, r.value) for recs in batches.values() for r in recs]
                if not values:
                    continue
                queries, feedback, undecodable = _columns(values)
                await loop.run_in_executor(None, _copy, pg, queries, feedback)
                t_last = time.monotonic()
                if not done:
                    t_first, first_n = t_last, len(values)
                done += len(values)
                bad += undecodable
                bar.update(len(values))
    finally:
        await consumer.stop()
    wall = t_last - t_first
    rate = (done - first_n) / wall if wall > 0 else 0.0
    return RawResult(events=done, undecodable=bad, wall_s=round(wall, 3), events_per_s=round(rate, 1))


Rows = list[tuple[Any, ...]]


def _columns(values: list[tuple[str, bytes | None]]) -> tuple[Rows, Rows, int]:
    """Minimal decode: JSON -> column tuples, with just the type checks COPY needs to not fail."""
    queries: Rows = []
    feedback: Rows = []
    bad = 0
    for topic, value in values:
        try:
            if b"\\u0000" in (value or b""):  # Postgres text cannot hold NUL: the real path rejects it too
                raise ValueError("nul")
            e = json.loads(value or b"")
            ts = e["timestamp"]
            datetime.fromisoformat(ts)  # a bad one would fail the whole COPY
            if topic == topics.QUERIES:
                text = e["query"]
                row = (e["query_id"], e["session_id"], ts, text, normalise_query(text))
                queries.append((*row, e.get("locale", "en-US"), e.get("shown", [])))
            else:
                dwell = e.get("dwell_ms")
                f = (e["event_id"], e["query_id"], ts, e["type"], e["product_id"], int(e["position"]))
                feedback.append((*f, None if dwell is None else int(dwell), 0.0, "raw"))
        except (ValueError, KeyError, TypeError, AttributeError):
            bad += 1
    return queries, feedback, bad


def _copy(pg: psycopg.Connection, queries: Rows, feedback: Rows) -> None:
    """One transaction per batch, like the worker."""
    with pg.transaction(), pg.cursor() as cur:
        for table, cols, rows in (
            ("bench_raw_queries", _QUERY_COLS, queries),
            ("bench_raw_feedback", _FEEDBACK_COLS, feedback),
        ):
            if rows:
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
