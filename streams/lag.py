"""Consumer-group lag: how far the ingestion workers' committed offsets are behind each partition.

What `intentloop status` shows, so an operator can tell from the CLI whether ingestion has caught
up. Committed offsets are the truth here, not the workers' own counters: a record counts as
ingested only once its batch is stored and its offset committed (see :mod:`streams.ingestion.worker`).
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import topics
from streams.exceptions import KafkaUnavailableError
from streams.kafka import kafka_errors, quiet_logger

_LAG_TIMEOUT_S = 15.0  # a broker that accepts connections but never answers is unavailable too
_HIGHWATER_WAIT_S = 3.0  # fetch responses carrying the high watermark of every partition


@dataclass(frozen=True)
class PartitionLag:
    """How far a consumer group's committed offset in one partition is behind the partition's end."""

    topic: str
    partition: int
    committed: int | None  # None: the group never committed here (it would start at ``start``)
    start: int  # the oldest offset still stored
    end: int  # the offset the next record will get

    @property
    def lag(self) -> int:
        done = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - done)


def consumer_lag(
    bootstrap: str, group_id: str, topic_names: Sequence[str] = topics.INPUT_TOPICS
) -> list[PartitionLag]:
    """Committed vs end offset of every partition of ``topic_names`` for ``group_id``.

    Read-only: partitions are assigned by hand, so this consumer never joins the group (the
    running workers are not rebalanced) and never commits. A topic that does not exist yet has no
    partitions here. Kafka being unreachable is :class:`~streams.exceptions.KafkaUnavailableError`.
    """
    doing = f"cannot read consumer lag from Kafka at {bootstrap}"
    try:
        with quiet_logger("aiokafka"), kafka_errors(bootstrap, doing):
            return asyncio.run(
                asyncio.wait_for(_consumer_lag(bootstrap, group_id, topic_names), _LAG_TIMEOUT_S)
            )
    except TimeoutError as exc:  # our own deadline, not a client error
        raise KafkaUnavailableError(f"{doing}: no answer within {_LAG_TIMEOUT_S:.0f}s") from exc


async def _consumer_lag(bootstrap: str, group_id: str, topic_names: Sequence[str]) -> list[PartitionLag]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=f"{group_id}-lag",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,  # fetches at the end of a partition come back empty: do not linger
    )
    try:
        await consumer.start()
        await consumer.topics()  # metadata of every topic, so partitions_for_topic knows them
        tps = sorted(
            TopicPartition(name, p) for name in topic_names for p in consumer.partitions_for_topic(name) or ()
        )
        if not tps:
            return []
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await _end_offsets(consumer, tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    return [PartitionLag(tp.topic, tp.partition, committed[tp], starts[tp], ends[tp]) for tp in tps]


async def _end_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's end: the offset its next record will get.

    Tansu, the embedded broker, answers a ListOffsets "latest" with the start of the partition's
    last record batch (plus one), not its end, so it under-reports by up to a producer batch; the
    high watermark in a fetch response is right on Tansu and Kafka alike. So fetch from the listed
    end (at most one batch per partition is read, and dropped) and take the larger of the two.
    """
    listed = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, listed[tp])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _HIGHWATER_WAIT_S
    while any(consumer.highwater(tp) is None for tp in tps) and loop.time() < deadline:
        await consumer.getmany(timeout_ms=100)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in tps}
