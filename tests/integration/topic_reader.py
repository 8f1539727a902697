"""Reading a whole topic back in a test: up to each partition's high watermark, not until a quiet spell."""

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from intentloop.worker_processes import wait_until


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60) -> list[ConsumerRecord]:
    """Every record of ``topic`` written so far (acknowledged writes only: call it once they are)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        out: list[ConsumerRecord] = []

        def drained() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend(batch)
            return all(
                consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                for tp in parts
            )

        wait_until(drained, timeout_s=timeout_s, what=f"{topic} to be read to its end", interval_s=0)
        return out
    finally:
        consumer.close()
