"""Wiring: from one Settings object to connected wrappers (the composition root of every command)."""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from intentloop.settings import Settings
from intentloop.stack import Endpoints, LocalStack
from store.artifacts import ArtifactStore
from store.db import Database
from store.registry import RedisRegistry


@dataclass
class Runtime:
    """The services one command talks to; each connects lazily on first use."""

    settings: Settings
    endpoints: Endpoints

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
        return ArtifactStore(self.artifact_dir)

    @property
    def artifact_dir(self) -> Path:
        return self.settings.artifacts.dir or self.settings.state_dir / "artifacts"

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
        if "registry" in self.__dict__:
            self.registry.close()
