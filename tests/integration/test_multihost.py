"""Scale-out across hosts: the broker, Postgres, Redis and every worker on a machine of its own.

Each "machine" is a Linux network namespace with its own address on a bridge (tests/netns_hosts.py):
servers bind to their namespace's address, workers reach them over the bridge, and the faults are
real network faults between two of them (iptables drop rules, added latency). Counts are exact, as
in test_faults.py: every event stored once, every vote counted once, every dead letter there.

Skipped as a whole, with the reason, where the machine cannot make namespaces (not root, no
iproute2 or iptables, a kernel without network namespaces). The ``netem`` variant of the latency
test is skipped where the kernel refuses ``tc netem``; the relay variant runs everywhere.
"""

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from ingest_harness import Stream
from netns_hosts import Host, NetemUnavailableError, Network, unavailable_reason

from intentloop.server_processes import psycopg_dsn
from intentloop.settings import StackPorts
from intentloop.stack import Endpoints, LocalStack
from intentloop.worker_processes import WorkerProcess, endpoint_env, http_ready, wait_until
from serving.synthetic import synthetic_adapter
from store.artifacts import ArtifactStore
from store.catalog import load_catalog
from store.db import Database
from store.migrate import upgrade
from store.registry import RedisRegistry
from store.settings import TaxonomySettings
from store.versions import promote, record_version
from streams.kafka import EventProducer, ensure_topics
from streams.lag import consumer_lag
from streams.simulator import SimConfig, simulate
from streams.simulator.publish import traffic_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PG_PORT, REDIS_PORT, SERVE_PORT = 5432, 6379, 8000
GROUP = "intentloop-ingest"  # IngestSettings.app_id: the one consumer group every ingestion worker joins
WORKER_HOSTS = 6  # w1..w6: four at the start, one added, one for the fault tests
_PARTITION_S = 8.0
# libpq parameters in the worker's URL: a dead path noticed in ~2 s by the client, ~3 s by the server
_FAST_DETECTION = "?" + urlencode(
    {
        "connect_timeout": 2,
        "tcp_user_timeout": 2000,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": 2,
        "options": "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=2",
    }
)
_broker_ports = itertools.count(9092)
_databases = itertools.count()


# ---------------------------------------------------------------- the machines and their servers
@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    with Network() as network:
        for role, octet in (("kafka", 2), ("pg", 3), ("redis", 4)):
            network.add_host(role, octet)
        for i in range(1, WORKER_HOSTS + 1):
            network.add_host(f"w{i}", 10 + i)
        for i in (1, 2):
            network.add_host(f"s{i}", 20 + i)
        yield network


def _server_stack(root: Path, host: Host, **kwargs) -> LocalStack:
    """A stack that starts only the one server not given by ``kwargs``, on ``host``."""
    return LocalStack(root, host=host.address, netns=host.netns, **kwargs)


@pytest.fixture(scope="module")
def pg_admin(net: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``postgres`` host's server: its maintenance URL, reached over the bridge."""
    stack = _server_stack(
        tmp_path_factory.mktemp("pg-host"),
        net.hosts["pg"],
        kafka_bootstrap="unused:0",
        redis_url="redis://unused:0/0",
        ports=StackPorts(postgres_port=PG_PORT),
    )
    try:
        eps = stack.up(timeout_s=120)
        yield eps.postgres_url.rsplit("/", 1)[0] + "/postgres"
    finally:
        stack.down()


@pytest.fixture(scope="module")
def redis_host(net: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``redis`` host's server: its URL, reached over the bridge."""
    stack = _server_stack(
        tmp_path_factory.mktemp("redis-host"),
        net.hosts["redis"],
        kafka_bootstrap="unused:0",
        postgres_url="postgresql+psycopg://unused/x",
        ports=StackPorts(redis_port=REDIS_PORT),
    )
    try:
        yield stack.up(timeout_s=60).redis_url
    finally:
        stack.down()


@pytest.fixture
def database(pg_admin: str) -> Iterator[Database]:
    """A fresh, migrated database on the Postgres host for this test."""
    name = f"multihost_{next(_databases)}"
    with psycopg.connect(psycopg_dsn(pg_admin), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture
def broker(net: Network, tmp_path: Path) -> Iterator[str]:
    """A Tansu of the test's own on the ``kafka`` host (memory storage): no topic or group leaks."""
    stack = _server_stack(
        tmp_path / "kafka-host",
        net.hosts["kafka"],
        postgres_url="postgresql+psycopg://unused/x",
        redis_url="redis://unused:0/0",
        ports=StackPorts(kafka_port=next(_broker_ports)),
    )
    try:
        yield stack.up(timeout_s=60).kafka_bootstrap
    finally:
        stack.down()


# ---------------------------------------------------------------- traffic and workers
class Feeder:
    """Produces a known stream in chunks over time from the test's host, so that workers die, join
    and lose Postgres while events keep arriving, not after a backlog is already in the broker."""

    def __init__(
        self, bootstrap: str, records: list[tuple[str, str | None, bytes]], *, seconds: float
    ) -> None:
        self._bootstrap = bootstrap
        self._records = records
        self._chunks = max(1, int(seconds / 0.25))
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> "Feeder":
        self._thread.start()
        return self

    def _run(self) -> None:
        size = -(-len(self._records) // self._chunks)
        try:
            with EventProducer(self._bootstrap) as producer:
                for start in range(0, len(self._records), size):
                    for topic, key, value in self._records[start : start + size]:
                        producer.send(topic, key, value)
                    producer.flush()
                    self.sent = min(len(self._records), start + size)
                    time.sleep(0.25)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout_s: float = 120) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the feeder did not finish"
        assert self.error is None, f"producing failed: {self.error!r}"
        assert self.sent == len(self._records)


def _stream(
    db: Database,
    bootstrap: str,
    redis: str,
    tmp_path: Path,
    *,
    searches: int,
    seed: int,
    partitions: int,
    worker_pg_url: str | None = None,
):
    """Catalog loaded and topics created; the records to feed and the :class:`Stream` that checks them.
    ``worker_pg_url``: the workers' own URL of the same database (with connection parameters)."""
    sim = simulate(SimConfig(seed=seed, n_searches=searches, n_products=400))
    with db.session() as s:
        load_catalog(s, [p.model_dump() for p in sim.catalog], TaxonomySettings())
    records, sent = traffic_records(sim, malformed=12, unknown_product=5, seed=seed)
    ensure_topics(bootstrap, partitions=partitions)
    env = endpoint_env(
        Endpoints(bootstrap, worker_pg_url or db.url, redis),
        {
            "INTENTLOOP_STATE_DIR": str(tmp_path / "state"),
            "INTENTLOOP_INGEST__SESSION_TIMEOUT_S": "6",
            "INTENTLOOP_INGEST__BATCH_SIZE": "500",
        },
    )
    return records, Stream(sim, sent, env, db, tmp_path / "logs")


def _ingest(stream: Stream, host: Host) -> WorkerProcess:
    """``intentloop worker ingest`` on ``host``."""
    return WorkerProcess(
        ["worker", "ingest"], stream.env, stream.logs / f"ingest-{host.role}.log", netns=host.netns
    )


def _assigned(worker: WorkerProcess) -> int:
    """How many partitions the worker's last assignment gave it (its log), -1 before the first."""
    found = re.findall(r"assigned (\d+) partitions", worker.log_path.read_text(errors="replace"))
    return int(found[-1]) if found else -1


def _wait_level(stream: Stream, bootstrap: str, proc: WorkerProcess) -> None:
    """Every event stored and every partition's offsets committed to its end (lag zero)."""
    stream.wait_done(proc, timeout_s=120)
    wait_until(
        lambda: all(p.lag == 0 for p in consumer_lag(bootstrap, GROUP)),
        timeout_s=60,
        what="the group's lag to reach zero",
        proc=proc,
        interval_s=0.5,
    )


# ---------------------------------------------------------------- 1. scale-out of ingestion
def test_four_ingestion_hosts_one_killed_one_added_exact_counts(net, database, broker, redis_host, tmp_path):
    records, stream = _stream(database, broker, redis_host, tmp_path, searches=3000, seed=21, partitions=8)
    first = [_ingest(stream, net.hosts[f"w{i}"]) for i in range(1, 5)]
    workers = list(first)
    try:
        # All four own partitions before events flow, so the kill takes work away from a busy member.
        wait_until(
            lambda: all(_assigned(w) > 0 for w in first), timeout_s=90, what="four members with partitions"
        )
        feeder = Feeder(broker, records, seconds=20).start()
        stream.wait_processed(stream.sent.total // 5, first[0])
        victim = first[1]
        victim.kill9()
        killed_at = feeder.sent
        wait_until(
            lambda: feeder.sent >= max(len(records) // 2, killed_at + 1),
            timeout_s=60,
            what="the stream's second half to start arriving",
        )
        joined = _ingest(stream, net.hosts["w5"])
        joined_at = feeder.sent
        workers.append(joined)
        wait_until(
            lambda: _assigned(joined) > 0, timeout_s=90, what="the added worker's partitions", proc=joined
        )
        feeder.join()
        _wait_level(stream, broker, joined)
        survivors = [w for w in workers if w is not victim]
        assert all(w.alive() for w in survivors)
        # The group's final assignment: the four live members, each with partitions, all 16 covered
        # (8 per topic) — nothing owned by the dead member; the lag check above saw them committed.
        final = [_assigned(w) for w in survivors]
        assert final == [4, 4, 4, 4], final  # 2 of each topic's 8 partitions apiece: one generation
        assert killed_at < joined_at < len(records)  # both happened while events were still arriving
    finally:
        for w in workers:
            w.stop()
    stream.assert_exact()


# ---------------------------------------------------------------- 2. inference hosts follow promotions
def _intent_version(host: Host) -> str | None:
    try:
        r = httpx.post(
            f"http://{host.address}:{SERVE_PORT}/v1/intent", json={"query": "red running shoe"}, timeout=5
        )
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    body = r.json()
    assert {p["version"] for p in body["predictions"]} == {body["version"]}
    return str(body["version"])


def _answers_with(host: Host, version: str) -> Callable[[], bool]:
    return lambda: _intent_version(host) == version


def test_two_inference_hosts_follow_promotions(net, database, redis_host, tiny_encoder_dir, tmp_path):
    prefix = f"mh{next(_databases)}"
    store = ArtifactStore(tmp_path / "artifacts")  # one directory both hosts mount (S3 in production)
    versions = [
        synthetic_adapter(store, tiny_encoder_dir, seed=s, labels=["a", "b", "c"], max_length=16)
        for s in (1, 2)
    ]
    with database.session() as s:
        for v in versions:
            record_version(s, version=v, manifest=store.fetch(v)[1], uri=str(store.path(v)), run_id=None)
    hosts = [net.hosts["s1"], net.hosts["s2"]]
    servers = []
    registry = RedisRegistry(redis_host, prefix=prefix)
    try:
        for host in hosts:
            env = endpoint_env(
                Endpoints(f"{net.hosts['kafka'].address}:9092", database.url, redis_host),
                {
                    "INTENTLOOP_REDIS__KEY_PREFIX": prefix,
                    "INTENTLOOP_MODEL__BASE_DIR": str(tiny_encoder_dir),
                    "INTENTLOOP_ARTIFACTS__DIR": str(store.root),
                    "INTENTLOOP_STATE_DIR": str(tmp_path / "state" / host.role),
                    "INTENTLOOP_SERVE__HOST": host.address,
                    "INTENTLOOP_SERVE__PORT": str(SERVE_PORT),
                    "INTENTLOOP_SERVE__TORCH_THREADS": "1",
                },
            )
            servers.append(
                WorkerProcess(
                    ["worker", "serve", "--worker-id", host.role],
                    env,
                    tmp_path / f"serve-{host.role}.log",
                    netns=host.netns,
                )
            )
        for host, proc in zip(hosts, servers, strict=True):
            url = f"http://{host.address}:{SERVE_PORT}/healthz"
            wait_until(http_ready(url), timeout_s=120, what=f"{host.role} up", proc=proc)
        pids = [p.pid for p in servers]
        for version in versions:
            promote(database, registry, version, actor="test", reason="multi-host")
            for host, proc in zip(hosts, servers, strict=True):
                wait_until(
                    _answers_with(host, version),
                    timeout_s=60,
                    what=f"{host.role} to answer with {version}",
                    proc=proc,
                )
        # Both followed every promotion through Redis without a restart, and both said so there.
        assert [p.pid for p in servers] == pids and all(p.alive() for p in servers)
        assert {w for w, beat in registry.workers().items() if beat.get("version") == versions[-1]} >= {
            "s1",
            "s2",
        }
    finally:
        for proc in servers:
            proc.stop()
        registry.close()


# ---------------------------------------------------------------- 3. latency and a partition to Postgres
@pytest.mark.parametrize("fault", ["netem", "relay", "partition"])
def test_ingestion_host_survives_latency_and_a_partition_to_postgres(
    fault, net, database, broker, redis_host, tmp_path
):
    worker_host, pg = net.hosts["w6"], net.hosts["pg"]
    # The partition variant shortens the connection timeouts (store.db's defaults detect a dead path
    # in ~30 s) through the URL, as an operator would, so that the worker notices within the cut.
    url = database.url + _FAST_DETECTION if fault == "partition" else None
    records, stream = _stream(
        database, broker, redis_host, tmp_path, searches=2000, seed=31, partitions=4, worker_pg_url=url
    )
    with _latency(net, fault, worker_host, pg, tmp_path) as relay_log:
        worker = _ingest(stream, worker_host)
        try:
            pid = worker.pid
            wait_until(
                lambda: _assigned(worker) > 0, timeout_s=90, what="the worker's partitions", proc=worker
            )
            feeder = Feeder(broker, records, seconds=16).start()
            stream.wait_processed(stream.sent.total // 5, worker)
            if fault == "partition":
                with net.partition(worker_host, pg):
                    cut, fed = time.monotonic(), feeder.sent
                    time.sleep(1.0)  # a transaction already past Postgres's commit may still land
                    cut_at = stream.processed()
                    wait_until(
                        lambda: "store unavailable" in worker.log_path.read_text(errors="replace"),
                        timeout_s=15,
                        what="the worker to notice the partition",
                        proc=worker,
                    )
                    time.sleep(max(0.0, cut + _PARTITION_S - time.monotonic()))
                    assert stream.processed() == cut_at, "the worker wrote through the partition"
                    assert feeder.sent > fed  # events kept arriving during the cut
            feeder.join()
            _wait_level(stream, broker, worker)
            assert worker.alive() and worker.pid == pid  # recovered by itself, never restarted
        finally:
            worker.stop()
    stream.assert_exact()
    if relay_log is not None:  # the worker's own connections went through the delaying relay
        assert f"accepted {worker_host.address}" in relay_log.read_text()


@contextlib.contextmanager
def _latency(net: Network, fault: str, worker_host: Host, pg: Host, tmp_path: Path) -> Iterator[Path | None]:
    """The latency a variant runs under; yields the relay's log where the relay carries it.

    ``netem``: 20 ms on everything the worker's host sends (skipped where the kernel refuses it).
    ``relay``: 20 ms each way on the worker's connections to Postgres, through the relay.
    ``partition``: no added latency; the test cuts the link itself."""
    if fault == "netem":
        try:
            with net.netem_delay(worker_host, 20):
                yield None
        except NetemUnavailableError as exc:
            pytest.skip(f"{exc}; the relay variant injects the latency instead")
    elif fault == "relay":
        with net.relay_delay(worker_host, pg, PG_PORT, delay_ms=20, log_path=tmp_path / "relay.log") as log:
            yield log
    else:
        yield None
