"""Wiring: from one Settings object to connected wrappers (the composition root of every command).

It is also the one place that readies the servers: ``ready_db`` migrates the schema and
``ready_topics`` creates the Kafka topics, each at most once per ``Runtime``, so a command states
what it needs (``rt.ready_db()``) instead of running Alembic or the Kafka admin itself.
"""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from intentloop.settings import Settings
from intentloop.stack import Endpoints, LocalStack
from store.artifacts import ArtifactStore
from store.db import Database
from store.registry import RedisRegistry
from store.settings import ArtifactSettings


@dataclass
class Runtime:
    """The services one command talks to; each connects lazily on first use."""

    settings: Settings
    endpoints: Endpoints
    _migrated: bool = field(default=False, init=False, repr=False)
    _topics_created: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, start_stack: bool = False) -> "Runtime":
        stack = LocalStack.from_settings(settings)
        endpoints = stack.up() if start_stack else stack.endpoints()
        return cls(settings, endpoints)

    @cached_property
    def db(self) -> Database:
        return Database(self.endpoints.postgres_url, pool_size=self.settings.postgres.pool_size)

    @cached_property
    def registry(self) -> RedisRegistry:
        return RedisRegistry(self.endpoints.redis_url, prefix=self.settings.redis.key_prefix)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return open_artifacts(self.settings.artifacts, self.artifact_dir)

    @property
    def artifact_dir(self) -> Path:
        return self.settings.artifacts.dir or self.settings.state_dir / "artifacts"

    def ready_db(self) -> Database:
        """The database with its schema at the newest migration: a fresh database works at once.

        Migrating is idempotent but costs an Alembic round trip, so it runs once per ``Runtime``.
        """
        if not self._migrated:
            from store.migrate import upgrade  # Alembic loads only for commands that touch tables

            upgrade(self.endpoints.postgres_url)
            self._migrated = True
        return self.db

    def ready_topics(self) -> None:
        """Create the project's topics if missing (``INTENTLOOP_KAFKA__PARTITIONS`` each), once per
        ``Runtime``; topics that exist are left as they are."""
        if self._topics_created:
            return
        from streams.kafka import ensure_topics  # the Kafka client loads only for commands that use it

        kafka = self.settings.kafka
        ensure_topics(
            self.endpoints.kafka_bootstrap,
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
        )
        self._topics_created = True

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
        if "registry" in self.__dict__:
            self.registry.close()


def open_artifacts(settings: ArtifactSettings, local_dir: Path) -> ArtifactStore:
    """The local store, or the S3-compatible one (``settings.url``) with ``local_dir`` as its cache."""
    if settings.url is None:
        return ArtifactStore(local_dir)
    from store.artifacts_s3 import S3ArtifactStore

    return S3ArtifactStore(
        settings.url, local_dir, endpoint_url=settings.endpoint_url, region=settings.region
    )
