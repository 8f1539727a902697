"""The one batch-consume loop of the project: poll a batch, process it, commit it after the sink.

The ingestion worker (:mod:`streams.ingestion.worker`) and the stream inference agent
(:mod:`serving.agent`) are each a :class:`BatchProcessor` run by a :class:`BatchConsumer`. Whatever the
processor, the loop guarantees:

* at-least-once: a batch's offsets are committed only after :meth:`BatchProcessor.process` returned,
  its sink durable; a crash anywhere re-delivers the batch, so processors write idempotently (or
  their readers dedupe);
* one batch in flight: while batch N is processed, batch N+1 is fetched and prepared (decoded), so
  a processor that works in a thread overlaps the two; commits stay in order;
* a batch the processor declines (``False``: it cannot make it durable while stopping) stops the
  loop, and nothing fetched after it is processed or committed;
* rebalances: a revoked partition's in-flight batch is finished and committed before the group moves
  on; records of a partition lost meanwhile are processed anyway (harmless) and not committed;
* stopping (:meth:`BatchConsumer.stop`, from a signal handler) ends the fetch at once and finishes
  the batch in flight.

``until_caught_up`` makes it a backfill: it stops by itself, the last batch committed, once every
partition it owns has been read up to the end offsets the broker reported
(:func:`streams.lag.consumer_lag` then reads zero for the group).

Kafka client errors leave :meth:`BatchConsumer.run` as they are: the process entry points translate
them, once, with :func:`streams.kafka.kafka_errors`.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
B = TypeVar("B")
_CAUGHT_UP_CHECK_S = 1.0  # how often a busy until-caught-up consumer asks the broker for end offsets


class BatchProcessor(Protocol[B]):
    """What a :class:`BatchConsumer` hands its batches to."""

    def prepare(self, records: list[ConsumerRecord]) -> B:
        """Decode a fetch, in the event loop, while the batch before it is still being processed."""
        ...

    async def process(self, batch: B) -> bool:
        """Make the batch durable in the sink; ``False`` declines it (stopping: nothing committed)."""
        ...


@dataclass(frozen=True)
class ConsumerConfig:
    """The consumer group, its topics and batch size; ``options`` tune the aiokafka client."""

    group_id: str
    topics: tuple[str, ...]
    batch_size: int
    poll_timeout_ms: int = 1000  # an idle fetch returns after this long (a stop never waits for it)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class CaughtUp:
    """Where an ``until_caught_up`` consumer stopped: "topic/partition" -> the end offset it reached."""

    end_offsets: dict[str, int]


class BatchConsumer(Generic[B]):
    """Runs ``processor`` over batches of ``config.topics`` until :meth:`stop` (or caught up)."""

    def __init__(
        self,
        bootstrap: str,
        config: ConsumerConfig,
        processor: BatchProcessor[B],
        *,
        until_caught_up: bool = False,
        on_commit_conflict: Callable[[], None] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._config = config
        self._processor = processor
        self._until_caught_up = until_caught_up
        self._on_commit_conflict = on_commit_conflict
        self._stopping = asyncio.Event()
        self._in_flight: asyncio.Task[None] | None = None
        self._declined = False
        self.caught_up: CaughtUp | None = None  # set when ``until_caught_up`` stopped it

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stopped; the batch in flight is finished (and committed) on the way out."""
        c = self._config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=c.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **c.options,
        )
        consumer.subscribe(list(c.topics), listener=_FinishBeforeRevoke(self))
        await consumer.start()
        try:
            await self._consume(consumer)
        finally:
            try:
                await self.finish_in_flight()
            finally:
                await consumer.stop()

    async def finish_in_flight(self) -> None:
        """Wait for the batch being processed, if any, and its offset commit."""
        # The loop and the rebalance listener may both wait here: both must wait for the same batch
        # (neither may start a second one early), and cancelling a waiter must not cancel the work.
        task = self._in_flight
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if self._in_flight is task and task.done():
                self._in_flight = None

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        stop_wait = asyncio.create_task(self._stopping.wait())
        next_check = 0.0  # monotonic time of the next caught-up check (until_caught_up)
        try:
            while not self._stopping.is_set():
                fetched = await self._fetch(consumer, stop_wait)
                if fetched is None:
                    break
                if fetched:
                    records = [r for recs in fetched.values() for r in recs]  # ConsumerRecords as they are
                    offsets = {tp: recs[-1].offset + 1 for tp, recs in fetched.items() if recs}
                    batch = self._processor.prepare(records)
                    await self.finish_in_flight()  # commits stay in order; at most one batch in flight
                    if self._declined:
                        break
                    self._in_flight = asyncio.create_task(self._process(consumer, batch, offsets))
                # One end-offsets request a second at most, and at once when a fetch came back empty.
                if self._until_caught_up and (not fetched or time.monotonic() >= next_check):
                    next_check = time.monotonic() + _CAUGHT_UP_CHECK_S
                    if await self._caught_up(consumer):
                        return
        finally:
            stop_wait.cancel()

    async def _fetch(
        self, consumer: AIOKafkaConsumer, stop_wait: asyncio.Task[Any]
    ) -> dict[TopicPartition, list[ConsumerRecord]] | None:
        """The next fetch (maybe empty), or ``None`` when a stop came first."""
        c = self._config
        fetch = asyncio.create_task(consumer.getmany(timeout_ms=c.poll_timeout_ms, max_records=c.batch_size))
        await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if fetch.done():
            result: dict[TopicPartition, list[ConsumerRecord]] = fetch.result()
            return result
        fetch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetch
        return None

    async def _process(self, consumer: AIOKafkaConsumer, batch: B, offsets: Offsets) -> None:
        if not await self._processor.process(batch):
            self._declined = True  # nothing after it may be committed: its offsets would cover it
            self.stop()
            return
        await self._commit(consumer, offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
        owned = consumer.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the new owner re-reads from the last commit; writes are idempotent.
            if self._on_commit_conflict is not None:
                self._on_commit_conflict()
            log.warning("offset commit skipped after a rebalance (%s); the batch will be re-read", exc)

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether every owned partition has been read up to its current end offset.

        Positions count records handed to the loop, so the batch still in flight is included:
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
        self.caught_up = CaughtUp({f"{tp.topic}/{tp.partition}": ends[tp] for tp in sorted(owned)})
        log.info("caught up with %d partitions: stopping", len(owned))
        return True


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions leave this consumer only after the batch in flight for them is processed and committed."""

    def __init__(self, consumer: BatchConsumer[Any]) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._consumer.finish_in_flight()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %d partitions", len(assigned))
