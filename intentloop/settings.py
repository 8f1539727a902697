"""The one settings object, read from ``INTENTLOOP_*`` environment variables (12-factor).

Sections nest with ``__``: ``INTENTLOOP_POSTGRES__URL``, ``INTENTLOOP_KAFKA__BOOTSTRAP``,
``INTENTLOOP_TRAIN__EPOCHS``. Built once at the entry point and passed down section by section.
"""

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from intentloop.review.settings import ReviewSettings
from serving.settings import ServeSettings
from store.settings import ArtifactSettings, PostgresSettings, RedisSettings, TaxonomySettings
from streams.drift.settings import DriftSettings
from streams.settings import IngestSettings, KafkaSettings
from streams.weak.settings import LabelSettings
from trainer.settings import ModelSettings, TrainSettings


class StackPorts(BaseModel):
    """Ports of the embedded servers (``INTENTLOOP_STACK__KAFKA_PORT`` ...): move one that is taken.

    A settings section like the others; the stack (``intentloop.stack``) reads it, it never reads
    the stack."""

    kafka_port: int = Field(
        default=19092,
        ge=1,
        le=65535,
        description="port of the embedded Tansu broker (when KAFKA__BOOTSTRAP is unset)",
    )
    postgres_port: int = Field(
        default=15432,
        ge=1,
        le=65535,
        description="port of the embedded PostgreSQL 18 (when POSTGRES__URL is unset)",
    )
    redis_port: int = Field(
        default=16379, ge=1, le=65535, description="port of the embedded Redis (when REDIS__URL is unset)"
    )


class Settings(BaseSettings):
    """Everything configurable. Unset server URLs mean "use the embedded stack under ``state_dir``"."""

    model_config = SettingsConfigDict(
        env_prefix="INTENTLOOP_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        env_parse_none_str="null",  # e.g. INTENTLOOP_LABELS__HALF_LIFE_DAYS=null: no time decay
    )

    state_dir: Path = Field(
        default=Path(".intentloop"),
        description="local state: the embedded servers' data and logs (stack/), artifacts, run directories, "
        "the demo's and benchmarks' servers and logs",
    )
    stack: StackPorts = Field(default_factory=StackPorts)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
