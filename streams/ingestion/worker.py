"""The ingestion worker: batches from Kafka, one Postgres transaction each, then the offsets commit.

Why not a Faust agent: Faust's per-message stream machinery (an ``Event`` object, a queue hop and
an ack per record) capped one worker at 2.9k events/s, 71% of its CPU in Faust itself (profiled
with py-spy). The hot path consumes whole fetches with aiokafka, the client Faust is built on, and
keeps Faust's guarantees by hand, in the loop it shares with the stream inference agent
(:class:`streams.batch_consumer.BatchConsumer`); this module is what ingestion does with a batch:

* at-least-once: offsets are committed only after the batch's transaction (and its dead letters)
  are durable, so a crash anywhere replays the batch; every write is idempotent by event id, so a
  replay changes nothing (Tansu has no transactions: exactly-once is never relied on);
* one batch in flight: while batch N is written (a thread: psycopg releases the GIL while
  Postgres works) batch N+1 is fetched and decoded; commits stay in order;
* rebalances: a revoked partition's in-flight batch is finished and committed before the group
  moves on; records of a partition lost meanwhile are written anyway (harmless) and not committed.

``until_caught_up`` turns the worker into a backfill job: it stops by itself, the last batch stored
and committed, once every partition it owns has been read up to the end offsets the broker reported
(:func:`streams.lag.consumer_lag` then reads zero for the group): how a shop replaying its history
knows ingestion is done without watching counts. Under live traffic that is the first moment the
worker is level with the producers.
"""

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord

from store.db import Database
from store.events import BatchCounts, expire_orphans, resolve_all_pending
from store.exceptions import StoreUnavailableError
from streams import topics
from streams.batch_consumer import BatchConsumer, ConsumerConfig
from streams.ingestion.batch import BatchIngestor, DeadLetter, DecodedBatch, decode_batch
from streams.kafka import kafka_errors
from streams.settings import IngestSettings

log = logging.getLogger(__name__)


@dataclass
class WorkerCounters:
    """What this worker process did since it started (logged on exit)."""

    batches: int = 0
    records: int = 0
    queries: int = 0
    feedback: int = 0
    dead_letters: int = 0
    orphans: int = 0
    commit_conflicts: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    caught_up: bool = False  # stopped by ``until_caught_up``, having read up to ``end_offsets``
    end_offsets: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> end it reached


@dataclass(frozen=True)
class _Fetch:
    """A fetch decoded while the one before it is written."""

    batch: DecodedBatch
    n_records: int


def consumer_config(settings: IngestSettings) -> ConsumerConfig:
    """The ingestion group's consumer: big fetches, and a session timeout that bounds a rebalance."""
    s = settings
    return ConsumerConfig(
        group_id=s.app_id,
        topics=topics.INPUT_TOPICS,
        batch_size=s.batch_size,
        options={
            "client_id": f"{s.app_id}-consumer",
            "fetch_max_wait_ms": s.fetch_max_wait_ms,
            "max_partition_fetch_bytes": s.max_partition_fetch_bytes,
            "fetch_max_bytes": s.max_partition_fetch_bytes * 8,
            "session_timeout_ms": int(s.session_timeout_s * 1000),
            "heartbeat_interval_ms": int(max(0.5, s.session_timeout_s / 5) * 1000),
            "rebalance_timeout_ms": int(s.session_timeout_s * 1000),
        },
    )


class IngestWorker:
    """Consumes ``search.queries`` + ``search.feedback`` into Postgres until :meth:`stop`.

    The :class:`~streams.ingestion.batch.BatchIngestor` shell that a
    :class:`~streams.batch_consumer.BatchConsumer` runs, plus the periodic sweep of pending feedback.
    """

    def __init__(
        self, bootstrap: str, settings: IngestSettings, db: Database, *, until_caught_up: bool = False
    ) -> None:
        self._bootstrap = bootstrap
        self._settings = settings
        self._db = db
        self._ingestor = BatchIngestor(db)
        self._producer: AIOKafkaProducer | None = None
        self.counters = WorkerCounters()
        self._consumer = BatchConsumer(
            bootstrap,
            consumer_config(settings),
            self,
            until_caught_up=until_caught_up,
            on_commit_conflict=self._count_commit_conflict,
        )

    def stop(self) -> None:
        self._consumer.stop()

    async def run(self) -> WorkerCounters:
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", linger_ms=5)
        await producer.start()
        self._producer = producer
        try:
            sweeper = asyncio.create_task(self._sweep_forever(producer))
            try:
                await self._consumer.run()
            except StoreUnavailableError as exc:
                if not self._consumer.stopping:
                    raise
                log.warning("stopped during a Postgres outage (%s): the unstored batch will be re-read", exc)
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if self._consumer.caught_up is not None:
                self.counters.caught_up = True
                self.counters.end_offsets = self._consumer.caught_up.end_offsets
                # feedback whose query another worker stored: the sweep's job, once
                await asyncio.get_running_loop().run_in_executor(None, self._resolve_pending)
        finally:
            self._producer = None
            await producer.stop()
        log.info("ingest worker stopped: %s", self.counters)
        return self.counters

    def prepare(self, records: list[ConsumerRecord]) -> _Fetch:
        """Decoded in the event loop while the previous batch is written in a thread."""
        return _Fetch(decode_batch(records, self._settings, datetime.now(UTC)), len(records))

    async def process(self, fetch: _Fetch) -> bool:
        """One Postgres transaction, then its dead letters acknowledged by Kafka: the batch is durable."""
        if self._producer is None:
            raise RuntimeError("IngestWorker.process runs only inside IngestWorker.run")
        loop = asyncio.get_running_loop()
        counts: BatchCounts = await loop.run_in_executor(
            None, lambda: self._ingestor.write(fetch.batch, should_stop=lambda: self._consumer.stopping)
        )
        await _send_dead_letters(self._producer, fetch.batch.dead)
        self._count(counts, fetch.n_records, fetch.batch.dead)
        return True

    def _resolve_pending(self) -> None:
        with self._db.session() as session:
            resolve_all_pending(session)

    def _count_commit_conflict(self) -> None:
        self.counters.commit_conflicts += 1

    def _count(self, counts: BatchCounts, n_records: int, dead: list[DeadLetter]) -> None:
        c = self.counters
        c.batches += 1
        c.records += n_records
        c.queries += counts.queries
        c.feedback += counts.feedback
        c.dead_letters += len(dead)
        for d in dead:
            c.by_reason[d.reason] = c.by_reason.get(d.reason, 0) + 1
        log.debug(
            "batch: %d records, %d new queries, %d new feedback, %d dead letters",
            n_records,
            counts.queries,
            counts.feedback,
            len(dead),
        )

    async def _sweep_forever(self, producer: AIOKafkaProducer) -> None:
        """Re-join feedback whose query arrived through another worker; dead-letter true orphans."""
        s = self._settings
        while True:
            await asyncio.sleep(s.sweep_interval_s)
            try:
                orphans = await asyncio.get_running_loop().run_in_executor(None, self._sweep_once)
            except StoreUnavailableError as exc:  # the next tick retries
                log.warning("pending sweep skipped: %s", exc)
                continue
            for event_id, query_id in orphans:
                value = json.dumps({"event_id": event_id, "query_id": query_id}).encode()
                headers = [("reason", b"unknown_query"), ("source_topic", topics.FEEDBACK.encode())]
                await producer.send_and_wait(
                    topics.DEAD_LETTER, value, key=event_id.encode(), headers=headers
                )
            log.info("ingest counters: %s", self.counters)  # dead letters by reason, for the log
            if orphans:
                self.counters.orphans += len(orphans)
                log.warning(
                    "%d feedback events never met their query: dead-lettered as unknown_query", len(orphans)
                )

    def _sweep_once(self) -> list[tuple[str, str]]:
        with self._db.session() as session:
            resolve_all_pending(session)
            return expire_orphans(session, older_than_s=self._settings.orphan_after_s)


async def _send_dead_letters(producer: AIOKafkaProducer, dead: Iterable[DeadLetter]) -> None:
    """Every dead letter is acknowledged by Kafka before the offsets that carried it are committed."""
    sends = []
    for d in dead:
        headers = [
            ("reason", d.reason.encode()),
            ("source_topic", d.record.topic.encode()),
            ("source_partition", str(d.record.partition).encode()),
            ("source_offset", str(d.record.offset).encode()),
        ]
        key = str(d.record.offset).encode()
        sends.append(await producer.send(topics.DEAD_LETTER, d.record.value or b"", key=key, headers=headers))
    if sends:
        await asyncio.gather(*sends)


def run_ingest_worker(
    bootstrap: str, settings: IngestSettings, db: Database, *, until_caught_up: bool = False
) -> WorkerCounters:
    """Run until SIGTERM/SIGINT (or, ``until_caught_up``, until every owned partition is read to
    its end); the batch in flight is finished and committed on the way out."""
    return asyncio.run(_main(bootstrap, settings, db, until_caught_up))


async def _main(
    bootstrap: str, settings: IngestSettings, db: Database, until_caught_up: bool = False
) -> WorkerCounters:
    worker = IngestWorker(bootstrap, settings, db, until_caught_up=until_caught_up)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stopper(worker, sig))
    with kafka_errors(bootstrap, f"Kafka at {bootstrap}"):
        return await worker.run()


def _stopper(worker: IngestWorker, sig: signal.Signals) -> Callable[[], None]:
    def _stop() -> None:
        log.info("%s: finishing the batch in flight, then stopping", sig.name)
        worker.stop()

    return _stop
