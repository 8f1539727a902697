"""The local stack starts real servers from wheels, reuses them, and stops them from another process."""

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from intentloop.exceptions import StackError
from intentloop.server_processes import psycopg_dsn
from intentloop.settings import StackPorts
from intentloop.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_PG_ADMIN = os.environ.get(
    "INTENTLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ports() -> StackPorts:
    return StackPorts(kafka_port=_free_port(), postgres_port=_free_port(), redis_port=_free_port())


@pytest.fixture
def stack(tmp_path: Path, ports: StackPorts):
    local = LocalStack(tmp_path, ports=ports)
    yield local
    local.down()


def _kafka_roundtrip(bootstrap: str) -> bytes:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=15000
    )
    try:
        return next(iter(consumer)).value
    finally:
        consumer.close()


def _down_in_another_process(state_dir: Path, ports: StackPorts) -> None:
    code = (
        "import sys; from pathlib import Path; from intentloop.settings import StackPorts; "
        "from intentloop.stack import LocalStack; "
        "LocalStack(Path(sys.argv[1]), ports=StackPorts.model_validate_json(sys.argv[2])).down()"
    )
    args = [sys.executable, "-c", code, str(state_dir), ports.model_dump_json()]
    subprocess.run(args, check=True, timeout=60)


def test_up_serves_reuses_and_down_stops(stack: LocalStack, ports: StackPorts, tmp_path: Path) -> None:
    eps = stack.up(timeout_s=60)
    assert eps.kafka_bootstrap == f"127.0.0.1:{ports.kafka_port}"
    assert eps.postgres_url.startswith("postgresql+psycopg://")

    rows = stack.status()
    assert [r.name for r in rows] == ["kafka", "postgres", "redis"]
    assert all(r.embedded and r.healthy and r.pid for r in rows), rows
    assert all(r.log_path and r.log_path.is_file() for r in rows)

    with psycopg.connect(psycopg_dsn(eps.postgres_url)) as conn:
        assert conn.execute("SELECT current_database(), 1").fetchone() == ("intentloop", 1)
    client = redis.Redis.from_url(eps.redis_url)
    assert client.ping()
    client.close()
    assert _kafka_roundtrip(eps.kafka_bootstrap) == b"hello"

    pids = {r.name: r.pid for r in rows}
    assert stack.up(timeout_s=60) == eps
    assert {r.name: r.pid for r in stack.status()} == pids

    _down_in_another_process(tmp_path, ports)
    after = stack.status()
    assert not any(r.healthy or r.pid for r in after), after
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists()
    assert not list((tmp_path / "stack").glob("*/*.pid"))


def test_taken_port_names_port_and_setting(stack: LocalStack, ports: StackPorts, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.redis_port))
        squatter.listen()
        with pytest.raises(StackError) as err:
            stack.up(timeout_s=30)
    assert str(ports.redis_port) in str(err.value)
    assert "INTENTLOOP_STACK__REDIS_PORT" in str(err.value)
    assert not list((tmp_path / "stack").glob("*/*.pid")), "nothing may start when a port is taken"


def test_configured_url_is_used_not_started(tmp_path: Path, ports: StackPorts) -> None:
    local = LocalStack(tmp_path, postgres_url=_PG_ADMIN, ports=ports)
    try:
        eps = local.up(timeout_s=60)
        assert eps.postgres_url == _PG_ADMIN
        postgres = next(r for r in local.status() if r.name == "postgres")
        assert postgres.healthy and not postgres.embedded and postgres.pid is None
        assert not (tmp_path / "stack" / "postgres").exists()
    finally:
        local.down()


def test_server_failing_to_start_reports_its_log(tmp_path: Path, ports: StackPorts) -> None:
    data = tmp_path / "stack" / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("18\n")  # looks initialised, but is not: postgres must fail
    local = LocalStack(
        tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0", ports=ports
    )
    with pytest.raises(StackError) as err:
        local.up(timeout_s=30)
    message = str(err.value)
    assert "postgres.log" in message and "exited during startup" in message
    assert "postgresql.conf" in message, message  # the tail of the server's own log
    assert not (tmp_path / "stack" / "postgres" / "postgres.pid").exists()


def test_stale_pid_file_is_cleaned(tmp_path: Path, ports: StackPorts) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    pidfile = tmp_path / "stack" / "redis" / "redis.pid"
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(f"{gone.pid}\n{ports.redis_port}\n")
    local = LocalStack(tmp_path, ports=ports)
    redis_row = next(r for r in local.status() if r.name == "redis")
    assert redis_row.pid is None and not redis_row.healthy
    assert not pidfile.exists()
