"""Graceful shutdown of an inference worker: what Kubernetes (and any load balancer) relies on.

On SIGTERM a worker must (1) withdraw readiness at once: ``/readyz`` 503, (2) finish the requests
in flight with their answers, (3) exit within a bound even if one of them never finishes, before
the kubelet's SIGKILL (deploy/k8s/base/inference.yaml: preStop + GRACEFUL_TIMEOUT_S < grace).

The worker's real HTTP stack (``create_api`` served by ``serve_http``) runs as a child process
(tests/serving_shutdown_app.py) with one extra route that holds a request until the test releases
it, so "in flight when SIGTERM arrived" is a fact, not a race. No database: nothing here reads one.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from intentloop.worker_processes import free_port, http_ready, wait_until

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
APP = TESTS / "serving_shutdown_app.py"


class Worker:
    """The child process, its base URL and a request held in flight on its ``/test/hold`` route."""

    def __init__(self, encoder: Path, work: Path, *, drain_s: float, graceful_timeout_s: int) -> None:
        self.work, self.port = work, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = [str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        args = [str(encoder), str(work), str(self.port), str(drain_s), str(graceful_timeout_s)]
        self.log = (work / "worker.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), *args], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.held: list[httpx.Response | Exception] = []
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def ready(self) -> None:
        wait_until(http_ready(f"{self.url}/readyz"), timeout_s=120, what="worker ready", interval_s=0.1)

    def hold_a_request(self) -> None:
        self._thread.start()
        wait_until((self.work / "entered").exists, timeout_s=30, what="request in flight", interval_s=0.02)

    def _hold(self) -> None:
        try:
            self.held.append(httpx.get(f"{self.url}/test/hold", timeout=120))
        except httpx.HTTPError as exc:
            self.held.append(exc)

    def release(self) -> None:
        (self.work / "release").touch()

    def answered(self) -> httpx.Response | Exception:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the held request never came back"
        return self.held[0]

    def status(self, path: str) -> int | None:
        """HTTP status of ``path``, or None when no answer comes (listener closed, connection cut)."""
        try:
            return httpx.get(f"{self.url}{path}", timeout=5).status_code
        except httpx.TransportError:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def start(tiny_encoder_dir, tmp_path):
    workers: list[Worker] = []

    def _start(drain_s: float, graceful_timeout_s: int = 60) -> Worker:
        work = tmp_path / f"w{len(workers)}"
        work.mkdir()
        w = Worker(tiny_encoder_dir, work, drain_s=drain_s, graceful_timeout_s=graceful_timeout_s)
        workers.append(w)
        w.ready()
        return w

    yield _start
    for w in workers:
        w.stop()


def _exited_by_sigterm(proc: subprocess.Popen[bytes]) -> bool:
    # uvicorn re-raises the signal it shut down for once it is done: a clean SIGTERM exit
    return proc.wait(60) in (0, -signal.SIGTERM)


def test_sigterm_withdraws_readiness_while_serving_then_drains_in_flight_requests(start):
    w = start(drain_s=5.0)
    w.hold_a_request()
    w.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: w.status("/readyz") == 503, timeout_s=10, what="/readyz 503", interval_s=0.05)
    assert w.status("/healthz") == 200  # draining, not gone: requests still arriving are answered
    wait_until(lambda: w.status("/healthz") is None, timeout_s=30, what="listener closed", interval_s=0.1)
    assert w.proc.poll() is None and not w.held  # the request in flight holds the exit
    w.release()
    answer = w.answered()
    assert isinstance(answer, httpx.Response) and answer.status_code == 200
    assert answer.json() == {"held": "released"}
    assert _exited_by_sigterm(w.proc)


def test_without_a_drain_delay_the_listener_closes_at_once_and_in_flight_requests_finish(start):
    """The Kubernetes path: the preStop sleep did the draining; SIGTERM only has to finish."""
    w = start(drain_s=0.0)
    w.hold_a_request()
    w.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: w.status("/healthz") is None, timeout_s=10, what="listener closed", interval_s=0.05)
    assert w.proc.poll() is None
    w.release()
    answer = w.answered()
    assert isinstance(answer, httpx.Response) and answer.status_code == 200
    assert _exited_by_sigterm(w.proc)


def test_a_request_that_never_finishes_cannot_hold_the_exit_past_the_graceful_timeout(start):
    w = start(drain_s=0.0, graceful_timeout_s=1)
    w.hold_a_request()
    w.proc.send_signal(signal.SIGTERM)
    assert _exited_by_sigterm(w.proc)  # never released: only the timeout can have ended it
    answer = w.answered()
    assert not (isinstance(answer, httpx.Response) and answer.status_code == 200)
