"""Errors of the streaming layer."""

from store.exceptions import IntentloopError


class StreamsError(IntentloopError):
    """Base of streaming-layer errors."""


class KafkaUnavailableError(StreamsError):
    """Kafka cannot be reached: check INTENTLOOP_KAFKA__BOOTSTRAP or run `intentloop stack up`.

    Raised by :func:`streams.kafka.kafka_errors`, the one place where the Kafka clients' own errors
    (kafka-python's and aiokafka's) are translated.
    """


class MalformedEventError(StreamsError):
    """A raw event cannot be decoded; it goes to the dead-letter topic with ``reason``.

    ``reason`` is short and machine-readable (``invalid_json``, ``invalid_utf8``, ``too_large``,
    ``schema: timestamp: missing``...): it becomes the dead letter's ``reason`` header and column.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NothingToLabelError(StreamsError):
    """The aggregation window holds no searches: ingest traffic (or widen INTENTLOOP_LABELS__WINDOW_DAYS)."""


class GoldFileError(StreamsError):
    """A gold-label file cannot be read: the message names the file, the line and what is wrong."""
