"""Settings sections owned by the streaming layer."""

from pydantic import BaseModel, Field


class KafkaSettings(BaseModel):
    """Kafka connection. ``bootstrap`` ``None`` means: use the local Tansu broker of the stack."""

    bootstrap: str | None = None
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)


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
    max_partition_fetch_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    max_future_skew_s: float = Field(default=24 * 3600, ge=0)
    session_timeout_s: float = Field(default=10.0, ge=1.0)
    sweep_interval_s: float = Field(default=30.0, gt=0, description="how often pending feedback is re-joined")
    orphan_after_s: float = Field(
        default=3600.0, gt=0, description="pending this long without its query -> dead letter 'unknown_query'"
    )
