"""`intentloop bench swap`: hot swaps under steady load, two workers, several promotions.

Two ``intentloop worker serve`` processes get a steady open-loop stream of single-query requests
(``--rate`` per worker, from this process). Every ``--interval`` seconds a new synthetic adapter is
promoted through the registry (Postgres audit row, Redis alias, pub/sub hint), as
``intentloop registry promote`` does. Per promotion:

* ``swap_ms``: from the promotion call to the moment *every* worker has answered a request with the
  new version (the later worker's first such answer; resolution about 1000/rate ms);
* a worker answering the old version after it already answered the new one counts as ``flaps``.

Over the whole run: ``failed_requests`` (any non-200 or connection error) and
``mixed_version_responses`` (a response whose predictions do not all name its version, or a
version that was never promoted). Servers as in ``bench serve``.
"""

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from intentloop.bench.http_client import Conn, percentile
from intentloop.bench.serve import BenchEnv, bench_env, bench_queries
from intentloop.settings import Settings
from intentloop.worker_processes import WorkerProcess, free_port, served_version, wait_until

Echo = Callable[[str], None]


@dataclass(frozen=True)
class SwapBenchOptions:
    swaps: int = 5
    rate: float = 100.0  # requests/s per worker
    interval_s: float = 3.0
    seed: int = 21


@dataclass
class _Answer:
    worker: int
    sent: float
    received: float
    status: int
    version: str | None
    mixed: bool


class _Load:
    """Open-loop load on every port from an event loop in a thread; answers are appended in order."""

    def __init__(self, ports: list[int], rate: float, queries: list[str]) -> None:
        self.ports, self.rate, self.queries = ports, rate, queries
        self.answers: list[_Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _main(self) -> None:
        await asyncio.gather(*(self._drive(w, port) for w, port in enumerate(self.ports)))

    async def _drive(self, worker: int, port: int) -> None:
        pool: asyncio.Queue[Conn] = asyncio.Queue()
        for _ in range(16):
            pool.put_nowait(Conn(port))
        tasks: set[asyncio.Task[None]] = set()
        start, i = time.perf_counter(), 0
        while not self._stop.is_set():
            scheduled = start + i / self.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(worker, pool, self.queries[i % len(self.queries)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        while not pool.empty():
            await pool.get_nowait().close()

    async def _one(self, worker: int, pool: "asyncio.Queue[Conn]", query: str) -> None:
        conn = await pool.get()
        sent = time.perf_counter()
        status, body = await conn.post("/v1/intent", {"query": query})
        received = time.perf_counter()
        pool.put_nowait(conn)
        version = body.get("version") if status == 200 and body else None
        preds = body.get("predictions", []) if status == 200 and body else []
        mixed = status == 200 and {p.get("version") for p in preds} != {version}
        self.answers.append(_Answer(worker, sent, received, status, version, mixed))


def _serves(port: int, version: str) -> Callable[[], bool]:
    return lambda: served_version(port) == version


def run_swap_bench(settings: Settings, opts: SwapBenchOptions, echo: Echo) -> dict[str, Any]:
    """Promote ``swaps`` new adapters under load on two workers; returns the summary."""
    with bench_env(settings, "bench-swap", {"INTENTLOOP_SERVE__TORCH_THREADS": "1"}) as env:
        echo(f"bench swap: publishing {opts.swaps + 1} synthetic adapters ...")
        versions = _publish(env, settings, opts)
        ports = [free_port(), free_port()]
        answers, promoted_at = _promote_under_load(env, versions, ports, opts, echo)
    swap_ms, flaps, unfinished = _swap_times(answers, promoted_at, versions, len(ports))
    known = set(versions)
    return {
        "bench": "swap",
        "encoder": str(settings.model.base_dir or "all-MiniLM-L6-v2"),
        "cores": os.cpu_count(),
        "workers": len(ports),
        "rate_per_worker": opts.rate,
        "requests": len(answers),
        "swaps": len(swap_ms),
        "swap_p50_ms": round(percentile(swap_ms, 50), 1),
        "swap_p99_ms": round(percentile(swap_ms, 99), 1),
        "swap_max_ms": round(max(swap_ms), 1) if swap_ms else None,
        "failed_requests": sum(1 for a in answers if a.status != 200),
        "mixed_version_responses": sum(
            1 for a in answers if a.mixed or (a.status == 200 and a.version not in known)
        ),
        "flaps": flaps,
        "unfinished_swaps": unfinished,
        "request_p99_ms": round(percentile([(a.received - a.sent) * 1000 for a in answers], 99), 2),
    }


def _publish(env: BenchEnv, settings: Settings, opts: SwapBenchOptions) -> list[str]:
    """``swaps + 1`` synthetic adapters, stored and recorded (not promoted)."""
    from serving.synthetic import synthetic_adapter

    versions = [
        synthetic_adapter(
            env.artifacts,
            settings.model.base_dir,
            seed=opts.seed + i,
            max_length=settings.model.max_length,
        )
        for i in range(opts.swaps + 1)
    ]
    for v in versions:
        env.record(v)
    return versions


def _promote_under_load(
    env: BenchEnv, versions: list[str], ports: list[int], opts: SwapBenchOptions, echo: Echo
) -> tuple[list[_Answer], list[float]]:
    """Workers on ``ports`` serving the first version, then load and a promotion every interval.

    Returns every answer and each promotion's start (``perf_counter``), workers and load stopped.
    """
    workers: list[WorkerProcess] = []
    load: _Load | None = None
    promoted_at: list[float] = []
    try:
        workers = [env.worker(f"bench-swap-{k}", port) for k, port in enumerate(ports)]
        env.promote(versions[0], "bench swap: start")
        for port, proc in zip(ports, workers, strict=True):
            wait_until(_serves(port, versions[0]), timeout_s=120, what="first version", proc=proc)
        load = _Load(ports, opts.rate, bench_queries(opts.seed))
        load.start()
        time.sleep(opts.interval_s)
        for i, version in enumerate(versions[1:], 1):
            echo(f"bench swap: promotion {i}/{opts.swaps} -> {version}")
            promoted_at.append(time.perf_counter())
            env.promote(version, f"bench swap {i}")
            time.sleep(opts.interval_s)
    finally:
        if load is not None:
            load.stop()
        for w in workers:
            w.stop()
    return (load.answers if load is not None else []), promoted_at


def _swap_times(
    answers: list[_Answer], promoted_at: list[float], versions: list[str], n_workers: int
) -> tuple[list[float], int, int]:
    """Per completed promotion, ms until every worker answered with it; flaps; unfinished swaps."""
    swap_ms, flaps, unfinished = [], 0, 0
    for i, t0 in enumerate(promoted_at):
        new, old = versions[i + 1], versions[i]
        firsts = []
        for k in range(n_workers):
            mine = [a for a in answers if a.worker == k and a.sent >= t0 and a.status == 200]
            first_new = next((a.received for a in mine if a.version == new), None)
            if first_new is None:
                unfinished += 1
                continue
            firsts.append(first_new)
            flaps += sum(1 for a in mine if a.version == old and a.sent > first_new)
        if len(firsts) == n_workers:
            swap_ms.append((max(firsts) - t0) * 1000)
    return swap_ms, flaps, unfinished
