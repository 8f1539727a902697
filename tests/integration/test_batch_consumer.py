"""The shared batch-consume loop on a real broker: commits follow the sink, a declined batch stops
the loop with nothing after it committed, and a backfill stops by itself at the end."""

import asyncio

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.batch_consumer import BatchConsumer, ConsumerConfig
from streams.kafka import EventProducer, ensure_topics

pytestmark = pytest.mark.integration

TOPIC = "test.batches"
GROUP = "test-batch-consumer"


class Recorder:
    """Remembers every batch it is given; declines the batch numbered ``decline_at``."""

    def __init__(self, decline_at: int | None = None) -> None:
        self.processed: list[list[bytes]] = []
        self.declined: list[list[bytes]] = []
        self._decline_at = decline_at

    def prepare(self, records):
        return [r.value for r in records]

    async def process(self, batch):
        if len(self.processed) == self._decline_at:
            self.declined.append(batch)
            return False
        self.processed.append(batch)
        return True


def _produce(bootstrap: str, n: int) -> None:
    ensure_topics(bootstrap, partitions=1, names=[TOPIC])
    with EventProducer(bootstrap) as producer:
        for i in range(n):
            producer.send(TOPIC, None, str(i).encode())


def _committed(bootstrap: str) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(TOPIC, 0))
    finally:
        consumer.close()


def _consumer(bootstrap: str, recorder: Recorder, *, until_caught_up: bool = False) -> BatchConsumer:
    config = ConsumerConfig(group_id=GROUP, topics=(TOPIC,), batch_size=10)
    return BatchConsumer(bootstrap, config, recorder, until_caught_up=until_caught_up)


def test_a_backfill_processes_everything_once_and_stops_committed(kafka_bootstrap):
    _produce(kafka_bootstrap, 45)
    recorder = Recorder()
    consumer = _consumer(kafka_bootstrap, recorder, until_caught_up=True)
    asyncio.run(asyncio.wait_for(consumer.run(), 60))
    values = [v for batch in recorder.processed for v in batch]
    assert values == [str(i).encode() for i in range(45)]  # in order, none twice
    assert consumer.caught_up is not None and consumer.caught_up.end_offsets == {f"{TOPIC}/0": 45}
    assert _committed(kafka_bootstrap) == 45


def test_a_declined_batch_stops_the_loop_and_nothing_after_it_commits(kafka_bootstrap):
    _produce(kafka_bootstrap, 45)
    recorder = Recorder(decline_at=2)
    consumer = _consumer(kafka_bootstrap, recorder)
    asyncio.run(asyncio.wait_for(consumer.run(), 60))  # stops by itself: the decline stops it
    assert consumer.stopping
    done = sum(len(batch) for batch in recorder.processed)
    assert len(recorder.processed) == 2 and len(recorder.declined) == 1
    assert _committed(kafka_bootstrap) == done  # the declined batch and any fetched after it re-read
    again = Recorder()
    asyncio.run(asyncio.wait_for(_consumer(kafka_bootstrap, again, until_caught_up=True).run(), 60))
    assert [v for batch in again.processed for v in batch] == [str(i).encode() for i in range(done, 45)]
