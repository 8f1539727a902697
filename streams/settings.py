"""Settings sections owned by the streaming layer."""

from pydantic import BaseModel, Field


class KafkaSettings(BaseModel):
    """Kafka connection. ``bootstrap`` ``None`` means: use the local Tansu broker of the stack."""

    bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap host:port; None: the embedded Tansu broker on "
        "127.0.0.1:<STACK__KAFKA_PORT>",
    )
    partitions: int = Field(
        default=4,
        ge=1,
        description="partitions of each topic intentloop creates (topics that exist are left as they are)",
    )
    replication_factor: int = Field(
        default=1, ge=1, description="replication factor of the topics intentloop creates"
    )


class IngestSettings(BaseModel):
    """How the ingestion worker batches: one Postgres transaction per batch, then the offsets commit."""

    app_id: str = Field(
        default="intentloop-ingest", description="consumer group: workers sharing it split the work"
    )
    batch_size: int = Field(default=5000, ge=1, description="most records one transaction takes")
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="how long the broker may hold a fetch to fill it (latency floor)",
    )
    max_partition_fetch_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="most bytes one fetch returns per partition (per fetch in all: 8x this)",
    )
    max_event_bytes: int = Field(
        default=64 * 1024, ge=256, description="larger events are dead-lettered ('too_large'), in bytes"
    )
    max_future_skew_s: float = Field(
        default=24 * 3600,
        ge=0,
        description="events timestamped further than this in the future are dead-lettered "
        "('timestamp_in_future'), in seconds",
    )
    session_timeout_s: float = Field(
        default=10.0,
        ge=1.0,
        description="consumer-group session timeout: how soon a dead worker's partitions move to the others",
    )
    sweep_interval_s: float = Field(default=30.0, gt=0, description="how often pending feedback is re-joined")
    orphan_after_s: float = Field(
        default=3600.0, gt=0, description="pending this long without its query -> dead letter 'unknown_query'"
    )
