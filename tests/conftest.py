"""Shared fixtures: real servers for integration tests, tiny in-process models for speed.

Postgres and Redis: the URLs in INTENTLOOP_TEST_POSTGRES_URL / INTENTLOOP_TEST_REDIS_URL when set
(CI points them at this machine's servers), else this machine's defaults. Each test session gets
its own database, each test a clean schema state and its own Redis key prefix. The Kafka-protocol
broker is a real Tansu started once per session on a free port.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from store.db import Database
from store.migrate import upgrade
from store.models import Base

_PG_ADMIN = os.environ.get("INTENTLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
_REDIS = os.environ.get("INTENTLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    name = f"intentloop_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(_psycopg_dsn(_PG_ADMIN), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"Postgres for tests is not reachable at {_PG_ADMIN}: {exc} (run .ci/run or set "
                    "INTENTLOOP_TEST_POSTGRES_URL)")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = _PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    """The session database, emptied before each test."""
    database = Database(pg_url)
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with database.session() as session:
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    database.dispose()


@pytest.fixture
def redis_url() -> str:
    return _REDIS


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix unique to the test, deleted afterwards."""
    import redis

    prefix = f"iltest:{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(_REDIS)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker for the session (memory storage), on a free port."""
    from intentloop.procs import free_port
    from intentloop.stack import LocalStack

    state = tmp_path_factory.mktemp("tansu")
    from intentloop.stack import StackPorts

    stack = LocalStack(
        state,
        postgres_url=_PG_ADMIN,
        redis_url=_REDIS,
        ports=StackPorts(kafka_port=free_port()),
    )
    eps = stack.up(timeout_s=60)
    yield eps.kafka_bootstrap
    stack.down()


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"
