"""The synchronous Kafka wrapper (kafka-python): topic administration and event producing.

Used by the simulator, replay and tooling; the ingestion worker consumes with aiokafka (asyncio) instead.
"""

import contextlib
import logging
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Self

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import TopicPartition

from streams import topics
from streams.exceptions import StreamsError

log = logging.getLogger(__name__)


_BOOTSTRAP_TIMEOUT_MS = 10_000  # how long a client tries to reach the broker before we say it is down


class KafkaUnavailableError(StreamsError):
    """Kafka cannot be reached: check INTENTLOOP_KAFKA__BOOTSTRAP or run `intentloop stack up`."""


def unreachable(bootstrap: str, why: object = None) -> KafkaUnavailableError:
    """The one wording of "Kafka is down", with what to check."""
    detail = f" ({why})" if why else ""
    return KafkaUnavailableError(
        f"Kafka is unreachable at {bootstrap}{detail}: "
        "check INTENTLOOP_KAFKA__BOOTSTRAP or `intentloop stack up`"
    )


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """While connecting, a client logs every failed attempt (kafka-python: a dozen WARNING/ERROR
    lines over its bootstrap timeout); the outcome is ours to report, once, as
    :class:`KafkaUnavailableError`, so its logger is silenced for that stretch only."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _bootstrap_config(client: Any) -> dict[str, int]:
    """A shorter bootstrap timeout where the kafka-python version has one (3.x; 2.x rejects it)."""
    return (
        {"bootstrap_timeout_ms": _BOOTSTRAP_TIMEOUT_MS}
        if "bootstrap_timeout_ms" in client.DEFAULT_CONFIG
        else {}
    )


def ensure_topics(
    bootstrap: str, *, partitions: int, replication_factor: int = 1, names: Iterable[str] = topics.ALL_TOPICS
) -> None:
    """Create the project's topics if missing (idempotent; existing topics are left as they are)."""
    try:
        with quiet_logger("kafka"):
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=10_000, **_bootstrap_config(KafkaAdminClient)
            )
    except KafkaError as exc:
        raise unreachable(bootstrap, exc) from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
            for name in names
            if name not in existing
        ]
        if missing:
            # Another process may create one between our list and create: that is success too.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    """Total records ever written to ``topic`` (sum of partition end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


class EventProducer:
    """Produces keyed raw events; connects on first send and flushes on exit."""

    def __init__(self, bootstrap: str, *, linger_ms: int = 20) -> None:
        self._bootstrap = bootstrap
        self._linger_ms = linger_ms
        self._producer: KafkaProducer | None = None

    def _client(self) -> KafkaProducer:
        if self._producer is None:
            try:
                with quiet_logger("kafka"):
                    self._producer = KafkaProducer(
                        bootstrap_servers=self._bootstrap,
                        linger_ms=self._linger_ms,
                        batch_size=256 * 1024,
                        acks="all",
                        retries=5,
                        **_bootstrap_config(KafkaProducer),
                    )
            except KafkaError as exc:
                raise unreachable(self._bootstrap, exc) from exc
        return self._producer

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        self._client().send(topic, key=key.encode() if key is not None else None, value=value)

    def flush(self, timeout_s: float = 60) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except KafkaError as exc:
                raise KafkaUnavailableError(f"events not acknowledged by Kafka: {exc}") from exc

    def close(self) -> None:
        if self._producer is not None:
            self.flush()
            self._producer.close()
            self._producer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
