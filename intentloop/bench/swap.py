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

The workers run on ``--backend`` (``onnx`` by default, int8 graphs unless ``--no-int8``; ``torch``
for PyTorch eager), one model thread each. The adapters are fitted synthetic ones published with
their ONNX graphs as ``bench serve``'s (``intentloop.bench.backends.labelled_queries``), so int8
passes its export check and a swap loads and checks a graph, as it would in production.
``backend`` is what was asked for, ``served_by`` what the workers' ``/readyz`` said serves each
version (``onnx-int8``, ``onnx-fp32`` or ``torch``; a version the export gave no int8 graph falls
back to fp32), ``int8_published`` how many versions got one. ``targets`` (issue 18): swap p99
under 1 s, no failed request, no mixed response.
"""

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from intentloop.bench.backends import backend_env, backend_name, fitted_versions
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
    backend: str = "onnx"  # serve.backend of the workers: onnx or torch
    int8: bool = True  # serve.int8 of the workers (onnx only)
    max_int8_f1_loss: float | None = None  # the export's int8 budget (None: train.export's default)


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


_MAX_SWAP_P99_MS = 1000.0  # issue 18


def run_swap_bench(settings: Settings, opts: SwapBenchOptions, echo: Echo) -> dict[str, Any]:
    """Promote ``swaps`` new adapters under load on two workers; returns the summary."""
    worker_env = {
        "INTENTLOOP_SERVE__TORCH_THREADS": "1",
        "INTENTLOOP_SERVE__ONNX_THREADS": "1",
        **backend_env(backend_name(opts.backend, opts.int8)),
    }
    with bench_env(settings, "bench-swap", worker_env) as env:
        echo(f"bench swap: publishing {opts.swaps + 1} fitted synthetic adapters with ONNX graphs ...")
        versions, int8_published = _publish(env, settings, opts)
        ports = [free_port(), free_port()]
        answers, promoted_at, served_by = _promote_under_load(env, versions, ports, opts, echo)
    swap_ms, flaps, unfinished = _swap_times(answers, promoted_at, versions, len(ports))
    known = set(versions)
    failed = sum(1 for a in answers if a.status != 200)
    mixed = sum(1 for a in answers if a.mixed or (a.status == 200 and a.version not in known))
    swap_p99 = percentile(swap_ms, 99)
    return {
        "bench": "swap",
        "encoder": str(settings.model.base_dir or "all-MiniLM-L6-v2"),
        "cores": os.cpu_count(),
        "backend": backend_name(opts.backend, opts.int8),
        "served_by": served_by,
        "int8_published": int8_published,
        "workers": len(ports),
        "rate_per_worker": opts.rate,
        "requests": len(answers),
        "swaps": len(swap_ms),
        "swap_p50_ms": round(percentile(swap_ms, 50), 1),
        "swap_p99_ms": round(swap_p99, 1),
        "swap_max_ms": round(max(swap_ms), 1) if swap_ms else None,
        "failed_requests": failed,
        "mixed_version_responses": mixed,
        "flaps": flaps,
        "unfinished_swaps": unfinished,
        "request_p99_ms": round(percentile([(a.received - a.sent) * 1000 for a in answers], 99), 2),
        "targets": {
            "swap_p99_under_1s": bool(swap_ms) and not unfinished and swap_p99 < _MAX_SWAP_P99_MS,
            "zero_failed_requests": failed == 0,
            "zero_mixed_responses": mixed == 0,
        },
    }


def _publish(env: BenchEnv, settings: Settings, opts: SwapBenchOptions) -> tuple[list[str], int]:
    """``swaps + 1`` fitted synthetic adapters with their graphs, stored and recorded (not
    promoted); and how many of them the export gave an int8 graph."""
    from trainer.onnx_graph import SECTION

    versions = fitted_versions(env.artifacts, settings, opts.seed, opts.swaps + 1, opts.max_int8_f1_loss)
    int8 = 0
    for v in versions:
        env.record(v)
        _, manifest = env.artifacts.fetch(v)
        int8 += bool(((manifest.get(SECTION) or {}).get("int8") or {}).get("published"))
    return versions, int8


def _served_by(ports: list[int], seen: dict[str, set[str]]) -> None:
    """Add what each worker's ``/readyz`` says serves each of its loaded versions to ``seen``."""
    import httpx

    for port in ports:
        try:
            backends = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json().get("backends") or {}
        except (httpx.HTTPError, ValueError):
            continue  # a worker busy or between states: the next look will see the same versions
        for version, backend in backends.items():
            seen.setdefault(version, set()).add(str(backend))


def _promote_under_load(
    env: BenchEnv, versions: list[str], ports: list[int], opts: SwapBenchOptions, echo: Echo
) -> tuple[list[_Answer], list[float], dict[str, str]]:
    """Workers on ``ports`` serving the first version, then load and a promotion every interval.

    Returns every answer, each promotion's start (``perf_counter``) and what served each version
    (backends joined by ``/`` where the workers disagreed), workers and load stopped.
    """
    workers: list[WorkerProcess] = []
    load: _Load | None = None
    promoted_at: list[float] = []
    seen: dict[str, set[str]] = {}
    try:
        for k, port in enumerate(ports):  # one by one: a later failure still stops the earlier ones
            workers.append(env.worker(f"bench-swap-{k}", port))
        env.promote(versions[0], "bench swap: start")
        for port, proc in zip(ports, workers, strict=True):
            wait_until(_serves(port, versions[0]), timeout_s=120, what="first version", proc=proc)
        load = _Load(ports, opts.rate, bench_queries(opts.seed))
        load.start()
        time.sleep(opts.interval_s)
        _served_by(ports, seen)
        for i, version in enumerate(versions[1:], 1):
            echo(f"bench swap: promotion {i}/{opts.swaps} -> {version}")
            promoted_at.append(time.perf_counter())
            env.promote(version, f"bench swap {i}")
            time.sleep(opts.interval_s)
            _served_by(ports, seen)
    finally:
        if load is not None:
            load.stop()
        for w in workers:
            w.stop()
    served = {v: "/".join(sorted(seen[v])) for v in versions if v in seen}
    return (load.answers if load is not None else []), promoted_at, served


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
