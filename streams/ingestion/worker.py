"""The ingestion worker: batches from Kafka, one Postgres transaction each, then the offsets commit.

Why not a Faust agent: Faust's per-message stream machinery (an ``Event`` object, a queue hop and
an ack per record) capped one worker at 2.9k events/s, 71% of its CPU in Faust itself (profiled
with py-spy). The hot path consumes whole fetches with aiokafka, the client Faust is built on, and
keeps Faust's guarantees by hand:

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from store.db import Database
from store.events import BatchCounts, expire_orphans, resolve_all_pending
from store.exceptions import StoreUnavailableError
from streams import topics
from streams.ingestion.batch import BatchIngestor, DeadLetter, DecodedBatch, decode_batch
from streams.settings import IngestSettings

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
_CAUGHT_UP_CHECK_S = 1.0  # how often a busy until-caught-up worker asks the broker for end offsets


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


class IngestWorker:
    """Consumes ``search.queries`` + ``search.feedback`` into Postgres until :meth:`stop`."""

    def __init__(
        self, bootstrap: str, settings: IngestSettings, db: Database, *, until_caught_up: bool = False
    ) -> None:
        self._bootstrap = bootstrap
        self._settings = settings
        self._db = db
        self._until_caught_up = until_caught_up
        self._ingestor = BatchIngestor(db)
        self._stopping = asyncio.Event()
        self._in_flight: asyncio.Task[None] | None = None
        self.counters = WorkerCounters()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> WorkerCounters:
        s = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=s.app_id,
            client_id=f"{s.app_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            fetch_max_bytes=s.max_partition_fetch_bytes * 8,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(0.5, s.session_timeout_s / 5) * 1000),
            rebalance_timeout_ms=int(s.session_timeout_s * 1000),
        )
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", linger_ms=5)
        consumer.subscribe(list(topics.INPUT_TOPICS), listener=_FinishBeforeRevoke(self))
        await producer.start()
        try:
            await consumer.start()
            sweeper = asyncio.create_task(self._sweep_forever(producer))
            try:
                await self._consume(consumer, producer)
            except StoreUnavailableError:
                if not self._stopping.is_set():
                    raise
                log.warning("stopped during a Postgres outage: the unstored batch will be re-read")
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                try:
                    await self.finish_in_flight()
                except StoreUnavailableError as exc:  # stopping during an outage: nothing committed
                    log.warning("stopped with a batch unstored (%s): its offsets stay uncommitted", exc)
                await consumer.stop()
            if self.counters.caught_up:  # feedback whose query another worker stored: the sweep's job, once
                await asyncio.get_running_loop().run_in_executor(None, self._resolve_pending)
        finally:
            await producer.stop()
        log.info("ingest worker stopped: %s", self.counters)
        return self.counters

    async def finish_in_flight(self) -> None:
        """Wait for the batch being written, if any, and its offset commit."""
        # The loop and the rebalance listener may both wait here: both must wait for the same batch
        # (neither may start a second one early), and cancelling a waiter must not cancel the write.
        task = self._in_flight
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if self._in_flight is task and task.done():
                self._in_flight = None

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        s = self._settings
        stop_wait = asyncio.create_task(self._stopping.wait())
        next_check = 0.0  # monotonic time of the next caught-up check (until_caught_up)
        try:
            while not self._stopping.is_set():
                fetch = asyncio.create_task(consumer.getmany(timeout_ms=1000, max_records=s.batch_size))
                await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                fetched = fetch.result()
                if fetched:
                    records = [r for recs in fetched.values() for r in recs]  # ConsumerRecords as they are
                    offsets = {tp: recs[-1].offset + 1 for tp, recs in fetched.items() if recs}
                    batch = decode_batch(records, s, datetime.now(UTC))
                    await self.finish_in_flight()  # commits stay in order; at most one batch in flight
                    self._in_flight = asyncio.create_task(
                        self._store(consumer, producer, batch, len(records), offsets)
                    )
                # One end-offsets request a second at most, and at once when a fetch came back empty.
                if self._until_caught_up and (not fetched or time.monotonic() >= next_check):
                    next_check = time.monotonic() + _CAUGHT_UP_CHECK_S
                    if await self._caught_up(consumer):
                        return
        finally:
            stop_wait.cancel()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether every owned partition has been read up to its current end offset.

        Positions count records handed to this loop, so the batch still being written is included:
        stopping now and finishing it (as :meth:`run` does) leaves the group's lag at zero.
        """
        owned = consumer.assignment()
        if not owned or any(consumer.highwater(tp) is None for tp in owned):
            return False  # still joining the group, or a partition not fetched from yet
        try:
            listed = await consumer.end_offsets(list(owned))
            # Tansu lists the start of a partition's last record batch as its end; the high
            # watermark of the fetch responses is right on every broker (streams.lag explains).
            ends = {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in owned}
            behind = [tp for tp in owned if await consumer.position(tp) < ends[tp]]
        except IllegalStateError:  # a rebalance took a partition meanwhile: look again next time
            return False
        if behind:
            return False
        self.counters.caught_up = True
        self.counters.end_offsets = {f"{tp.topic}/{tp.partition}": ends[tp] for tp in sorted(owned)}
        log.info("caught up with %d partitions: stopping", len(owned))
        return True

    def _resolve_pending(self) -> None:
        with self._db.session() as session:
            resolve_all_pending(session)

    async def _store(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batch: DecodedBatch,
        n_records: int,
        offsets: Offsets,
    ) -> None:
        loop = asyncio.get_running_loop()
        counts: BatchCounts = await loop.run_in_executor(
            None, lambda: self._ingestor.write(batch, should_stop=self._stopping.is_set)
        )
        await _send_dead_letters(producer, batch.dead)
        await self._commit(consumer, offsets)
        self._count(counts, n_records, batch.dead)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
        owned = consumer.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the new owner re-reads from the last commit; writes are idempotent.
            self.counters.commit_conflicts += 1
            log.warning("offset commit skipped after a rebalance (%s); the batch will be re-read", exc)

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


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions leave this worker only after the batch in flight for them is stored and committed."""

    def __init__(self, worker: IngestWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._worker.finish_in_flight()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %d partitions", len(assigned))


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
    try:
        return await worker.run()
    except KafkaError as exc:
        from streams.kafka import KafkaUnavailableError

        raise KafkaUnavailableError(f"Kafka at {bootstrap}: {exc}") from exc


def _stopper(worker: IngestWorker, sig: signal.Signals) -> Callable[[], None]:
    def _stop() -> None:
        log.info("%s: finishing the batch in flight, then stopping", sig.name)
        worker.stop()

    return _stop
