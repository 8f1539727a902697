"""Settings sections owned by the streaming layer."""

from pydantic import BaseModel, Field


class KafkaSettings(BaseModel):
    """Kafka connection. ``bootstrap`` ``None`` means: use the local Tansu broker of the stack."""

    bootstrap: str | None = None
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class IngestSettings(BaseModel):
    """How the ingestion agent batches: one Postgres transaction per batch, then the offsets commit."""

    app_id: str = "intentloop-ingest"
    batch_size: int = Field(default=2000, ge=1)
    batch_within_s: float = Field(default=0.25, gt=0)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    max_future_skew_s: float = Field(default=24 * 3600, ge=0)
    session_timeout_s: float = Field(default=10.0, ge=1.0)
    sweep_interval_s: float = Field(default=30.0, gt=0, description="how often pending feedback is re-joined")
    orphan_after_s: float = Field(
        default=3600.0, gt=0, description="pending this long without its query -> dead letter 'unknown_query'"
    )
