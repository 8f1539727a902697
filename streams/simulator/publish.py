"""Simulated traffic out to Kafka or a JSONL file (the producer side of `intentloop simulate`)."""

import random
from collections.abc import Iterator
from dataclasses import dataclass

from tqdm import tqdm

from streams import topics
from streams.codec import encode
from streams.kafka import EventProducer
from streams.simulator import Simulation, malformed_events, unknown_product_feedback


@dataclass(frozen=True)
class TrafficCounts:
    """What was sent, by kind: the exact numbers ingestion must end up with."""

    queries: int
    feedback: int
    malformed: int
    unknown_product: int

    @property
    def total(self) -> int:
        return self.queries + self.feedback + self.malformed

    @property
    def valid_feedback(self) -> int:
        return self.feedback


def traffic_records(
    sim: Simulation, *, malformed: int = 0, unknown_product: int = 0, seed: int = 0
) -> tuple[list[tuple[str, str | None, bytes]], TrafficCounts]:
    """Every record to send, in time order, plus deliberately bad ones at the end."""
    rng = random.Random(f"faults-{seed}")
    records: list[tuple[str, str | None, bytes]] = [(t, k, encode(e)) for t, k, e in sim.events()]
    unknown = unknown_product_feedback(rng, sim.queries, unknown_product)
    records += [(topics.FEEDBACK, e.query_id, encode(e)) for e in unknown]
    bad = malformed_events(rng, malformed)
    records += [(topic, key.decode(errors="replace") or None, raw) for topic, key, raw in bad]
    counts = TrafficCounts(
        queries=len(sim.queries),
        feedback=len(sim.feedback) + len(unknown),
        malformed=len(bad),
        unknown_product=len(unknown),
    )
    return records, counts


def produce(bootstrap: str, records: list[tuple[str, str | None, bytes]], *, progress: bool = True) -> int:
    """Send and flush; returns once Kafka acknowledged every record."""
    with EventProducer(bootstrap) as producer:
        for topic, key, value in _bar(records, progress, "produce"):
            producer.send(topic, key, value)
    return len(records)


def _bar(
    records: list[tuple[str, str | None, bytes]], progress: bool, desc: str
) -> Iterator[tuple[str, str | None, bytes]]:
    return iter(tqdm(records, desc=desc, unit="ev", disable=not progress, leave=False, mininterval=0.5))
