"""`intentloop bench serve`: HTTP inference throughput and latency against the model's own limit.

Phases, all in one run on the same adapter (a synthetic one: random non-zero LoRA and head on the
configured encoder, default all-MiniLM-L6-v2; serving cost does not depend on what it learned):

1. raw: this process loads the adapter the way a worker does (``serving.adapters``) and calls it
   directly on batches of ``batch_max_queries`` queries for ``--seconds``: ``raw_qps``, the limit;
2. batch1: one client, one query per request, one request at a time: ``batch1_p50_ms``;
3. max: ``--clients`` concurrent clients, closed loop, one query per request: ``qps``;
4. half rate: requests sent on a fixed schedule at half of ``qps`` (open loop, so a slow answer
   cannot slow the sender down and hide its own latency): ``p50_ms``, ``p99_ms``;
5. fused (``--fused``, the default): a fused version of the same encoder (adapter + TF-IDF member +
   behaviour memory + fusion, ``serving.synthetic.synthetic_fused_adapter``) is promoted on the same
   worker and phase 3 runs three more times: fused, encoder-only, fused (so drift over the run biases
   neither side): ``fused_qps``, ``fused_encoder_only_qps`` and their ratio ``fused_vs_encoder_only``
   (issue 13: >= 0.9);
6. heads (``--heads``, the default): a version of the same adapter with a second head (the intent
   type, ``serving.synthetic.synthetic_adapter(heads=...)``), every answer carrying both
   dimensions, against the single-head version, in the same multi, single, multi order:
   ``heads_qps``, ``heads_single_head_qps`` and ``heads_vs_single_head`` (issue 14: >= 0.9);
7. explain (``--explain-clients``, 2 by default; 0 skips it): phase 4 again, the same open loop at
   half rate, while that many clients ask ``/v1/explain`` back to back (the worker's default method
   and limits; a 429 is answered by waiting 50 ms, as a polite client does): ``explain_p50_ms`` /
   ``explain_p99_ms`` of the intent answers beside phase 4's, the explanations answered, refused
   (429) and their latency. Explanations queue their model calls between micro-batches, so the
   intent p99 may grow by about one explanation chunk, never by a whole explanation.

The worker is a real ``intentloop worker serve`` process. The clients speak minimal HTTP/1.1 over
keep-alive connections (a few microseconds of CPU per request instead of a general HTTP client's
hundreds): on a 2-core machine the load generator shares the cores with the worker.

Servers: configured Postgres gets a scratch database (created and dropped here) and configured
Redis a unique key prefix, so no real alias history is touched; unset URLs get embedded servers
under ``<state_dir>/bench-serve``.
"""

import asyncio
import contextlib
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from intentloop.bench.http_client import Conn, percentile
from intentloop.settings import Settings, StackPorts
from intentloop.stack import Endpoints, LocalStack
from intentloop.worker_processes import (
    WorkerProcess,
    endpoint_env,
    free_port,
    http_ready,
    served_version,
    wait_until,
)
from store.artifacts import ArtifactStore
from store.db import Database
from store.dimensions import INTENT_TYPE, INTENT_TYPES
from store.exceptions import ConfigurationError
from store.migrate import upgrade
from store.registry import RedisRegistry
from store.versions import promote, record_version
from streams.simulator import SimConfig, simulate

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ServeBenchOptions:
    clients: int = 32
    seconds: float = 10.0
    batch1_requests: int = 300
    seed: int = 5
    fused: bool = True  # phase 5: the same worker on a fused version
    heads: bool = True  # phase 6: the same worker on a version with an intent-type head
    explain_clients: int = 2  # phase 7: clients asking /v1/explain during the half-rate loop (0: skip)


# ---------------------------------------------------------------- servers and adapters
@dataclass
class BenchEnv:
    """Servers, artifact store and worker environment of one benchmark run."""

    endpoints: Endpoints
    db: Database
    registry: RedisRegistry
    artifacts: ArtifactStore
    env: dict[str, str]
    work_dir: Path

    def record(self, version: str) -> None:
        _, manifest = self.artifacts.fetch(version)
        with self.db.session() as s:
            record_version(
                s, version=version, manifest=manifest, uri=self.artifacts.uri(version), run_id=None
            )

    def promote(self, version: str, reason: str) -> None:
        promote(self.db, self.registry, version, actor="bench", reason=reason)

    def worker(self, name: str, port: int) -> WorkerProcess:
        w = WorkerProcess(
            ["worker", "serve", "--port", str(port), "--worker-id", name],
            self.env,
            self.work_dir / f"{name}.log",
        )
        wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"), timeout_s=180, what=f"{name} up", proc=w)
        return w


@contextlib.contextmanager
def bench_env(settings: Settings, name: str, extra_env: dict[str, str] | None = None) -> Iterator[BenchEnv]:
    """Postgres (scratch database or embedded), Redis (unique prefix or embedded), fresh artifacts."""
    work = (settings.state_dir / name).resolve()
    if work.exists():
        LocalStack(work / "stack").down()
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pg_conf = settings.postgres.url.get_secret_value() if settings.postgres.url else None
    redis_conf = settings.redis.url.get_secret_value() if settings.redis.url else None
    stack = LocalStack(
        work / "stack",
        kafka_bootstrap=settings.kafka.bootstrap or "127.0.0.1:1",  # the serving benches need no Kafka
        postgres_url=pg_conf,
        redis_url=redis_conf,
        ports=StackPorts(postgres_port=free_port(), redis_port=free_port()),
    )
    eps = stack.up(timeout_s=120)
    scratch = _scratch_database(eps.postgres_url) if pg_conf else contextlib.nullcontext(eps.postgres_url)
    try:
        with scratch as pg_url:
            upgrade(pg_url)
            eps = Endpoints(eps.kafka_bootstrap, pg_url, eps.redis_url)
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            artifacts = ArtifactStore(work / "artifacts")
            env = endpoint_env(
                eps,
                {
                    "INTENTLOOP_REDIS__KEY_PREFIX": prefix,
                    "INTENTLOOP_ARTIFACTS__DIR": str(artifacts.root),
                    "INTENTLOOP_STATE_DIR": str(work / "state"),
                    **(
                        {"INTENTLOOP_MODEL__BASE_DIR": str(settings.model.base_dir)}
                        if settings.model.base_dir
                        else {}
                    ),
                    **(extra_env or {}),
                },
            )
            db = Database(pg_url)
            registry = RedisRegistry(eps.redis_url, prefix=prefix)
            try:
                yield BenchEnv(eps, db, registry, artifacts, env, work)
            finally:
                with contextlib.suppress(Exception):
                    registry.delete_keys()
                registry.close()
                db.dispose()
    finally:
        stack.down()


@contextlib.contextmanager
def _scratch_database(admin_url: str) -> Iterator[str]:
    name = f"intentloop_bench_{uuid.uuid4().hex[:8]}"
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise ConfigurationError(
            f"the benchmark needs a scratch database on the configured Postgres: {exc}"
        ) from exc
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def bench_queries(seed: int, n: int = 2000) -> list[str]:
    """Realistic search queries (the simulator's long tail), in a fixed order."""
    sim = simulate(SimConfig(seed=seed, n_searches=n))
    return sorted(sim.truth)


# ---------------------------------------------------------------- phases
def raw_phase(env: BenchEnv, version: str, queries: list[str], batch: int, seconds: float) -> float:
    """Queries/s of the adapter called directly, in batches, in this process (no HTTP)."""
    import torch

    from serving.adapters import SharedBase

    torch.set_num_threads(os.cpu_count() or 1)
    path, manifest = env.artifacts.fetch(version)
    base_dir = env.env.get("INTENTLOOP_MODEL__BASE_DIR")
    base = SharedBase(Path(base_dir) if base_dir else None)
    adapter = base.build(version, path, manifest)
    done, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        chunk = [queries[(i + j) % len(queries)] for j in range(batch)]
        base.predict_proba(adapter, chunk)
        done += batch
        i += batch
    return done / (time.perf_counter() - t0)


async def _batch1(port: int, queries: list[str], n: int) -> list[float]:
    conn, lat = Conn(port), []
    for i in range(n):
        t = time.perf_counter()
        status, _ = await conn.post("/v1/intent", {"query": queries[i % len(queries)]})
        if status == 200:
            lat.append((time.perf_counter() - t) * 1000)
    await conn.close()
    return lat


async def _closed_loop(
    port: int, queries: list[str], clients: int, seconds: float
) -> tuple[int, int, list[float]]:
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    failed = 0

    async def client(k: int) -> None:
        nonlocal failed
        conn, i = Conn(port), k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = await conn.post("/v1/intent", {"query": queries[i % len(queries)]})
            i += clients
            if status == 200:
                lat.append((time.perf_counter() - t) * 1000)
            else:
                failed += 1
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return len(lat), failed, lat if time.perf_counter() - t0 > 0 else []


@dataclass(frozen=True)
class _Explained:
    """Phase 7: the intent answers at half rate while explanations ran, and the explanations."""

    intent_ms: list[float]
    intent_failed: int
    explain_ms: list[float]
    busy: int  # 429: every explanation slot taken
    failed: int  # any other non-200


async def _mixed(
    port: int, queries: list[str], rate: float, seconds: float, pool: int, clients: int
) -> _Explained:
    """The half-rate open loop with ``clients`` explanation clients running beside it."""
    short = [q for q in queries if len(q.split()) <= 8] or queries
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    counts = {"busy": 0, "failed": 0}

    async def explainer(k: int) -> None:
        conn, i = Conn(port), k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = await conn.post("/v1/explain", {"query": short[i % len(short)]})
            i += clients
            if status == 200:
                lat.append((time.perf_counter() - t) * 1000)
            else:  # 429: every slot busy; anything else is a failure; either way, back off a little
                counts["busy" if status == 429 else "failed"] += 1
                await asyncio.sleep(0.05)
        await conn.close()

    explaining = [asyncio.create_task(explainer(k)) for k in range(clients)]
    intent_ms, intent_failed = await _open_loop(port, queries, rate, seconds, pool)
    await asyncio.gather(*explaining)
    return _Explained(intent_ms, intent_failed, lat, counts["busy"], counts["failed"])


async def _open_loop(
    port: int, queries: list[str], rate: float, seconds: float, pool: int
) -> tuple[list[float], int]:
    """Requests sent on a fixed schedule (``rate``/s), each on a free connection of ``pool``."""
    conns: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(pool):
        conns.put_nowait(Conn(port))
    lat: list[float] = []
    failed = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal failed
        conn = await conns.get()
        status, _ = await conn.post("/v1/intent", {"query": queries[i % len(queries)]})
        conns.put_nowait(conn)
        if status == 200:
            lat.append((time.perf_counter() - scheduled) * 1000)  # from when it should have been sent
        else:
            failed += 1

    tasks = []
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    while not conns.empty():
        await conns.get_nowait().close()
    return lat, failed


def _batch_mean(port: int) -> float | None:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line.startswith("intentloop_batch_queries_sum ") or line.startswith(
            "intentloop_batch_queries_count "
        ):
            name, value = line.split(" ")
            values[name] = float(value)
    count = values.get("intentloop_batch_queries_count", 0.0)
    return round(values.get("intentloop_batch_queries_sum", 0.0) / count, 2) if count else None


@dataclass(frozen=True)
class _ServeResults:
    """What the phases measured, in the order they ran."""

    raw_qps: float
    batch1_ms: list[float]
    max_done: int
    max_failed: int
    max_latencies_ms: list[float]
    half_rate: float
    half_latencies_ms: list[float]
    half_failed: int
    mean_batch_queries: float | None
    explained: _Explained | None


def run_serve_bench(settings: Settings, opts: ServeBenchOptions, echo: Echo) -> dict[str, Any]:
    """Every phase against one worker process; returns the summary (the CLI prints it as JSON)."""
    from serving.synthetic import synthetic_adapter, synthetic_fused_adapter

    with bench_env(settings, "bench-serve") as env:
        version = synthetic_adapter(
            env.artifacts, settings.model.base_dir, seed=opts.seed, max_length=settings.model.max_length
        )
        env.record(version)
        queries = bench_queries(opts.seed)
        port = free_port()
        echo(f"bench serve: adapter {version}; starting a worker on :{port} ...")
        worker = env.worker("bench-serve", port)
        try:
            env.promote(version, "bench serve")
            wait_until(
                lambda: served_version(port) == version, timeout_s=120, what="adapter loaded", proc=worker
            )
            m = _phases(env, settings, opts, version, queries, port, echo)
            fused = None
            if opts.fused:
                fused_version = synthetic_fused_adapter(
                    env.artifacts,
                    settings.model.base_dir,
                    seed=opts.seed,
                    max_length=settings.model.max_length,
                )
                env.record(fused_version)
                pair = (version, fused_version)
                fused = _paired_phase(env, opts, queries, port, worker, pair, echo)
            heads = None
            if opts.heads:
                multi = synthetic_adapter(
                    env.artifacts,
                    settings.model.base_dir,
                    seed=opts.seed,
                    max_length=settings.model.max_length,
                    heads={INTENT_TYPE: list(INTENT_TYPES)},
                )
                env.record(multi)
                heads = _paired_phase(env, opts, queries, port, worker, (version, multi), echo)
        finally:
            worker.stop()
    qps = m.max_done / opts.seconds
    return {
        "bench": "serve",
        "encoder": str(settings.model.base_dir or "all-MiniLM-L6-v2"),
        "cores": os.cpu_count(),
        "clients": opts.clients,
        "seconds": opts.seconds,
        "qps": round(qps, 1),
        "p50_ms": round(percentile(m.half_latencies_ms, 50), 2),
        "p99_ms": round(percentile(m.half_latencies_ms, 99), 2),
        "half_rate_qps": round(m.half_rate, 1),
        "max_p50_ms": round(percentile(m.max_latencies_ms, 50), 2),
        "max_p99_ms": round(percentile(m.max_latencies_ms, 99), 2),
        "raw_qps": round(m.raw_qps, 1),
        "ratio_vs_raw": round(qps / m.raw_qps, 3) if m.raw_qps else None,
        "batch1_p50_ms": round(statistics.median(m.batch1_ms), 2) if m.batch1_ms else None,
        "mean_batch_queries": m.mean_batch_queries,
        "failed_requests": m.max_failed + m.half_failed + (opts.batch1_requests - len(m.batch1_ms)),
        "version": version,
        **_pair_summary("fused", "encoder_only", fused),
        **_pair_summary("heads", "single_head", heads),
        **_explain_summary(m.explained, percentile(m.half_latencies_ms, 99), opts.seconds),
    }


def _paired_phase(
    env: BenchEnv,
    opts: ServeBenchOptions,
    queries: list[str],
    port: int,
    worker: WorkerProcess,
    versions: tuple[str, str],
    echo: Echo,
) -> "_PairResults":
    """Phases 5 and 6: closed loops on the second version, the first, the second again (the fused
    version against the encoder-only one; the two-head version against the single-head one).

    Second, first, second: both have their centre at the same moment, so a machine that warms
    up or slows down over the run (turbo, page cache, another process) biases neither side of the
    ratio. ``versions``: (the reference, the measured one), both already recorded.
    """
    reference, measured = versions
    answered: dict[str, list[int]] = {reference: [], measured: []}
    failed = 0
    for version in (measured, reference, measured):
        env.promote(version, "bench serve: paired phase")
        _serving(port, version, worker)
        echo(f"bench serve: {version}, {opts.clients} concurrent clients, {opts.seconds:.0f}s ...")
        done, n_failed, _ = asyncio.run(_closed_loop(port, queries, opts.clients, opts.seconds))
        answered[version].append(done)
        failed += n_failed
    qps = statistics.mean(answered[measured]) / opts.seconds
    reference_qps = statistics.mean(answered[reference]) / opts.seconds
    return _PairResults(measured, qps, reference_qps, failed)


def _serving(port: int, version: str, worker: WorkerProcess) -> None:
    wait_until(lambda: served_version(port) == version, timeout_s=120, what=version, proc=worker)


@dataclass(frozen=True)
class _PairResults:
    version: str
    qps: float
    reference_qps: float  # measured between the two loops of the measured version
    failed: int


def _pair_summary(prefix: str, other: str, result: _PairResults | None) -> dict[str, Any]:
    """A paired phase's figures: ``<prefix>_qps`` against ``<prefix>_<other>_qps`` measured between
    its two loops, their ratio ``<prefix>_vs_<other>`` (nulls when the phase did not run)."""
    keys = ("version", "qps", f"{other}_qps", f"vs_{other}", "failed")
    if result is None:
        return {f"{prefix}_{k}": None for k in keys}
    ratio = round(result.qps / result.reference_qps, 3) if result.reference_qps else None
    values = (result.version, round(result.qps, 1), round(result.reference_qps, 1), ratio, result.failed)
    return {f"{prefix}_{k}": v for k, v in zip(keys, values, strict=True)}


def _phases(
    env: BenchEnv,
    settings: Settings,
    opts: ServeBenchOptions,
    version: str,
    queries: list[str],
    port: int,
    echo: Echo,
) -> _ServeResults:
    """Raw model, batch-1 latency, closed-loop maximum, open loop at half of it: in that order."""
    batch = settings.serve.batch_max_queries
    echo(f"bench serve: raw model, batches of {batch}, {opts.seconds:.0f}s ...")
    raw_qps = raw_phase(env, version, queries, batch, opts.seconds)
    echo(f"bench serve: raw {raw_qps:,.0f} queries/s; batch-1 latency, {opts.batch1_requests} requests")
    b1 = asyncio.run(_batch1(port, queries, opts.batch1_requests))
    echo(f"bench serve: {opts.clients} concurrent clients, {opts.seconds:.0f}s ...")
    done, failed_max, lat_max = asyncio.run(_closed_loop(port, queries, opts.clients, opts.seconds))
    qps = done / opts.seconds
    half = qps / 2
    echo(f"bench serve: max {qps:,.0f} queries/s; open loop at {half:,.0f}/s, {opts.seconds:.0f}s ...")
    lat_half, failed_half = asyncio.run(_open_loop(port, queries, half, opts.seconds, pool=opts.clients))
    batch_mean = _batch_mean(port)
    explained = None
    if opts.explain_clients:
        echo(f"bench serve: open loop at {half:,.0f}/s with {opts.explain_clients} explanation clients ...")
        explained = asyncio.run(_mixed(port, queries, half, opts.seconds, opts.clients, opts.explain_clients))
    return _ServeResults(
        raw_qps, b1, done, failed_max, lat_max, half, lat_half, failed_half, batch_mean, explained
    )


def _explain_summary(e: _Explained | None, half_p99: float, seconds: float) -> dict[str, Any]:
    """Phase 7's figures (nulls when it did not run)."""
    keys = (
        "p50_ms",
        "p99_ms",
        "p99_vs_half_rate",
        "answered",
        "per_s",
        "busy",
        "failed",
        "latency_p50_ms",
        "latency_p99_ms",
    )
    if e is None:
        return {f"explain_{k}": None for k in keys}
    p99 = percentile(e.intent_ms, 99)
    values = (
        round(percentile(e.intent_ms, 50), 2),
        round(p99, 2),
        round(p99 / half_p99, 3) if half_p99 else None,
        len(e.explain_ms),
        round(len(e.explain_ms) / seconds, 2),
        e.busy,
        e.failed + e.intent_failed,
        round(percentile(e.explain_ms, 50), 1) if e.explain_ms else None,
        round(percentile(e.explain_ms, 99), 1) if e.explain_ms else None,
    )
    return {f"explain_{k}": v for k, v in zip(keys, values, strict=True)}
