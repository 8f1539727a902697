"""The Kafka boundary: topic administration and event producing (kafka-python), and the one
translation of both clients' errors into :class:`~streams.exceptions.KafkaUnavailableError`.

The simulator, replay and tooling produce through :class:`EventProducer`; the long-running consumers
(ingestion, the stream inference agent) use aiokafka (asyncio) through :mod:`streams.batch_consumer`,
and their entry points translate its errors here too, with :func:`kafka_errors`.
"""

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Self

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from kafka.structs import TopicPartition

from streams import topics
from streams.exceptions import KafkaUnavailableError

log = logging.getLogger(__name__)


_BOOTSTRAP_TIMEOUT_MS = 10_000  # how long a client tries to reach the broker before we say it is down


def unreachable(bootstrap: str, why: object = None) -> KafkaUnavailableError:
    """The one wording of "Kafka is down", with what to check."""
    detail = f" ({why})" if why else ""
    return KafkaUnavailableError(
        f"Kafka is unreachable at {bootstrap}{detail}: "
        "check INTENTLOOP_KAFKA__BOOTSTRAP or `intentloop stack up`"
    )


@contextlib.contextmanager
def kafka_errors(bootstrap: str, doing: str | None = None) -> Iterator[None]:
    """Translate the Kafka clients' exceptions raised in the block (see :func:`translated`)."""
    try:
        yield
    except Exception as exc:
        error = translated(exc, bootstrap, doing)
        if error is exc:
            raise
        raise error from exc


def translated(exc: Exception, bootstrap: str, doing: str | None = None) -> Exception:
    """``exc`` as a :class:`KafkaUnavailableError` worded for an operator, if it is a Kafka client's error.

    The one place where kafka-python's and aiokafka's errors become the project's. ``doing`` says
    what failed ("cannot read consumer lag from Kafka at ..."); without it the failure was a
    connection attempt, so any client error means the broker is unreachable. Anything that is not a
    Kafka client error is returned as it is.
    """
    connection = _client_error(exc)
    if connection is None:
        return exc
    detail = str(exc) or type(exc).__name__
    if connection or doing is None:
        return unreachable(bootstrap, detail)
    return KafkaUnavailableError(f"{doing}: {detail}")


def _client_error(exc: BaseException) -> bool | None:
    """``None``: not a Kafka client error; otherwise whether it says the broker cannot be reached.

    aiokafka's errors are looked up only where aiokafka is loaded already (the producing tools never
    load it), so this boundary costs the sync clients nothing.
    """
    if isinstance(exc, KafkaError):
        return isinstance(exc, KafkaConnectionError)
    if "aiokafka" in sys.modules:
        from aiokafka import errors as aio

        if isinstance(exc, aio.KafkaError):
            return isinstance(exc, aio.KafkaConnectionError | aio.NoBrokersAvailable)
    return None


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
    with quiet_logger("kafka"), kafka_errors(bootstrap):
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10_000, **_bootstrap_config(KafkaAdminClient)
        )
    try:
        with kafka_errors(bootstrap, f"cannot create topics on Kafka at {bootstrap}"):
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
    with kafka_errors(bootstrap):
        consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        with kafka_errors(bootstrap, f"cannot read end offsets from Kafka at {bootstrap}"):
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
            with quiet_logger("kafka"), kafka_errors(self._bootstrap):
                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    linger_ms=self._linger_ms,
                    batch_size=256 * 1024,
                    acks="all",
                    retries=5,
                    **_bootstrap_config(KafkaProducer),
                )
        return self._producer

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        try:  # not a `with kafka_errors`: this is the simulator's hot path, and a try costs nothing
            self._client().send(topic, key=key.encode() if key is not None else None, value=value)
        except KafkaError as exc:
            raise translated(exc, self._bootstrap, f"event not sent to Kafka at {self._bootstrap}") from exc

    def flush(self, timeout_s: float = 60) -> None:
        if self._producer is not None:
            with kafka_errors(self._bootstrap, "events not acknowledged by Kafka"):
                self._producer.flush(timeout=timeout_s)

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
