"""The Faust ingestion worker: a thin shell around :class:`streams.ingest.BatchIngestor`.

Both input topics are consumed by one agent (they are co-partitioned by query id). Events are
taken in batches without auto-ack and acknowledged only after their batch is committed to
Postgres, so a crash anywhere replays the batch and idempotent writes absorb the replay. Faust's
``exactly_once`` is never used: the broker (Tansu) has no transactions.
"""

import asyncio
import json
import logging
from datetime import UTC, datetime

import faust

from store.db import Database
from store.exceptions import StoreUnavailableError
from store.ingest import expire_orphans, resolve_all_pending
from streams import topics
from streams.ingest import BatchIngestor, RawRecord, decode_batch
from streams.settings import IngestSettings, KafkaSettings

log = logging.getLogger(__name__)


def create_app(bootstrap: str, kafka: KafkaSettings, ingest: IngestSettings, db: Database) -> faust.App:
    app = faust.App(
        ingest.app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=ingest.batch_size,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, ingest.batch_size * 2),
        # A joining member waits up to the rebalance timeout for the others; short timeouts make a
        # restarted worker resume in seconds, and a dead one is noticed in ``session_timeout``.
        broker_session_timeout=ingest.session_timeout_s,
        broker_heartbeat_interval=max(0.5, ingest.session_timeout_s / 5),
        broker_rebalance_timeout=ingest.session_timeout_s,
    )
    source = app.topic(*topics.INPUT_TOPICS, key_serializer="raw", value_serializer="raw")
    dead_letter = app.topic(topics.DEAD_LETTER, key_serializer="raw", value_serializer="raw")
    ingestor = BatchIngestor(db)

    @app.agent(source, name="ingest")
    async def ingest_agent(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        # noack_take: events are acknowledged by hand, after their batch is committed (not typed in faust).
        batches = stream.noack_take(ingest.batch_size, within=ingest.batch_within_s)  # type: ignore[attr-defined]
        async for events in batches:
            records = [
                RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.value)
                for e in events
            ]
            batch = decode_batch(records, ingest, datetime.now(UTC))
            counts = await loop.run_in_executor(None, ingestor.write, batch)
            for dead in batch.dead:
                await dead_letter.send(
                    key=str(dead.record.offset).encode(),
                    value=dead.record.value or b"",
                    headers={
                        "reason": dead.reason.encode(),
                        "source_topic": dead.record.topic.encode(),
                        "source_partition": str(dead.record.partition).encode(),
                        "source_offset": str(dead.record.offset).encode(),
                    },
                )
            for event in events:
                await stream.ack(event)
            log.info(
                "batch: %d records, %d new queries, %d new feedback, %d dead letters",
                len(records),
                counts.queries,
                counts.feedback,
                len(batch.dead),
            )

    @app.timer(ingest.sweep_interval_s)
    async def sweep_pending() -> None:
        """Re-join feedback whose query arrived through another worker; dead-letter true orphans."""

        def _sweep() -> list[tuple[str, str]]:
            with db.session() as session:
                resolve_all_pending(session)
                return expire_orphans(session, older_than_s=ingest.orphan_after_s)

        try:
            orphans = await asyncio.get_running_loop().run_in_executor(None, _sweep)
        except StoreUnavailableError as exc:  # the next tick retries; batches have their own retry
            log.warning("pending sweep skipped: %s", exc)
            return
        for event_id, query_id in orphans:
            await dead_letter.send(
                key=event_id.encode(),
                value=json.dumps({"event_id": event_id, "query_id": query_id}).encode(),
                headers={"reason": b"unknown_query", "source_topic": topics.FEEDBACK.encode()},
            )
        if orphans:
            log.warning(
                "%d feedback events never met their query: dead-lettered as unknown_query", len(orphans)
            )

    return app


def run_worker(app: faust.App, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT; Faust commits acknowledged offsets on the way out."""
    from faust.worker import Worker

    Worker(app, loglevel=loglevel).execute_from_commandline()
