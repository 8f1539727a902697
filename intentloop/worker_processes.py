"""Child worker processes for the demo and tests: real processes, started and stopped cleanly."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from intentloop.stack import Endpoints
from store.exceptions import IntentloopError


def endpoint_env(eps: Endpoints, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that pins a child to exactly these servers."""
    env = dict(os.environ)
    env.update(
        {
            "INTENTLOOP_KAFKA__BOOTSTRAP": eps.kafka_bootstrap,
            "INTENTLOOP_POSTGRES__URL": eps.postgres_url,
            "INTENTLOOP_REDIS__URL": eps.redis_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """``intentloop worker ...`` as a child process with its log in a file.

    ``netns``: a named network namespace to run it in (``ip netns exec``, which needs root and
    execs the worker in place, so :attr:`pid` is the worker's own): a worker on another "host".
    """

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, *, netns: str | None = None
    ) -> None:
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "intentloop", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 20) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: WorkerProcess | None = None,
    interval_s: float = 0.2,
) -> None:
    """Poll ``predicate``; fail with the child's log tail if it dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            raise IntentloopError(
                f"worker exited while waiting for {what}; log {proc.log_path}:\n{proc.log_tail()}"
            )
        time.sleep(interval_s)
    tail = f"; log {proc.log_path}:\n{proc.log_tail()}" if proc else ""
    raise IntentloopError(f"timed out after {timeout_s:.0f}s waiting for {what}{tail}")


def http_ready(url: str) -> Callable[[], bool]:
    def _check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return _check


def served_version(port: int) -> str | None:
    """The adapter version a local inference worker serves, or ``None`` while it is not ready."""
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0)
    except httpx.HTTPError:
        return None
    return r.json().get("version") if r.status_code == 200 else None
