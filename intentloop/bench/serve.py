"""`intentloop bench serve`: HTTP inference throughput and latency per serving backend, against
each backend's own model limit and against raw eager PyTorch (issue 18).

The adapter is a *fitted* synthetic one (``serving.synthetic.synthetic_adapter(fit=...)``: seeded
random LoRA on the configured encoder, default all-MiniLM-L6-v2, its category head fitted to half
of the simulator's labelled queries), published with its ONNX graphs: fp32, and int8 when the
export's F1 check on a quarter of the queries passes it; every backend's macro-F1 is reported on
the last quarter, rows the export never saw (``backends.labelled_queries``: split by a hash of
the query). Load queries are the simulator's (``bench_queries``).

Per backend (``--backends``, default ``torch,onnx_fp32,onnx_int8``, one after another, never two
at once; ``onnx_int8`` reports nulls and the manifest's reason when int8 was not published):

1. raw, in a fresh child process in the worker's environment (``intentloop.bench.backends``): the
   worker's own ``SharedBase`` and threads, called directly on batches of ``batch_max_queries``
   queries for ``--seconds``: ``raw_qps`` (for ``torch`` this is "raw eager PyTorch",
   ``raw_eager_qps``, measured at PyTorch's own defaults, OpenMP threads spinning rather than the
   workers' passive ones: the strongest eager baseline, against which the torch backend's ratio
   and the ONNX speed-up are judged), ``macro_f1`` on the report rows and its loss in points against raw
   eager PyTorch (``f1_loss_pt``), and ``rss_per_extra_version_mb`` (two more versions loaded);
2. a real ``intentloop worker serve`` process with ``INTENTLOOP_SERVE__BACKEND`` /
   ``INTENTLOOP_SERVE__INT8`` set (``served_by``: what its ``/readyz`` says serves the version):
   batch1: one client, one query per request, one request at a time: ``batch1_p50_ms``;
3. max: ``--clients`` concurrent clients, closed loop, one query per request: ``qps`` and
   ``ratio_vs_raw`` (``qps / raw_qps`` of the same backend);
4. half rate: requests sent on a fixed schedule at half of ``qps`` (open loop, so a slow answer
   cannot slow the sender down and hide its own latency): ``p50_ms``, ``p99_ms``.

On the main backend's worker (the configured ``serve.backend``/``serve.int8``, onnx + int8 by
default, else the first one asked for) three more phases run; every version in them is exported
too, so they run on ONNX:

5. fused (``--fused``, the default): a fused version (adapter + TF-IDF member + behaviour memory +
   fusion, ``serving.synthetic.synthetic_fused_adapter``) and its encoder-only twin (same seed:
   same weights, so the same graphs pass the export's checks and one backend serves both); phase 3
   runs three more times: fused, encoder-only, fused (so drift over the run biases neither side):
   ``fused_qps``, ``fused_encoder_only_qps`` and their ratio ``fused_vs_encoder_only`` (issue 13:
   >= 0.9), with what served each side (``fused_served_by``, ``fused_encoder_only_served_by``);
6. heads (``--heads``, the default): the measured version with a second head (the intent type,
   ``synthetic_adapter(heads=...)``), every answer carrying both dimensions, against the
   single-head version, in the same multi, single, multi order: ``heads_qps``,
   ``heads_single_head_qps`` and ``heads_vs_single_head`` (issue 14: >= 0.9);
7. explain (``--explain-clients``, 2 by default; 0 skips it): phase 4 again, the same open loop at
   half rate, while that many clients ask ``/v1/explain`` back to back (the worker's default method
   and limits; a 429 is answered by waiting 50 ms, as a polite client does): ``explain_p50_ms`` /
   ``explain_p99_ms`` of the intent answers beside phase 4's, the explanations answered, refused
   (429) and their latency. Explanations queue their model calls between micro-batches, so the
   intent p99 may grow by about one explanation chunk, never by a whole explanation.

The summary keeps the main backend's figures under the bench's old keys (``qps``, ``p50_ms``,
``p99_ms``, ``raw_qps``, ``ratio_vs_raw``, ``batch1_p50_ms``, ..., ``backend`` names it), every
backend's under ``backends``, and issue 18's targets under ``targets``: ``best_onnx`` (the fastest
served ONNX backend within 0.5 point of eager macro-F1, else the fastest) >= 2x ``raw_eager_qps``
within 0.5 point; every backend's ``ratio_vs_raw`` >= 0.8 and half-rate ``p99_ms`` < 50 (the swap
targets are `bench swap`'s).

The clients speak minimal HTTP/1.1 over keep-alive connections (a few microseconds of CPU per
request instead of a general HTTP client's hundreds): on a 2-core machine the load generator
shares the cores with the worker.

Servers: configured Postgres gets a scratch database (created and dropped here) and configured
Redis a unique key prefix, so no real alias history is touched; unset URLs get embedded servers
under ``<state_dir>/bench-serve``.
"""

import asyncio
import contextlib
import os
import shutil
import statistics
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from intentloop.bench.backends import (
    BACKEND_KEYS,
    BACKENDS,
    RawRequest,
    RawResult,
    backend_env,
    backend_name,
    compare,
    export_settings,
    fitted_versions,
    labelled_queries,
    measure_raw,
)
from intentloop.bench.http_client import percentile
from intentloop.bench.load import Explained, batch1, batch_mean, closed_loop, mixed, open_loop
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
    backends: tuple[str, ...] = tuple(BACKENDS)  # measured one after another, in this order
    max_int8_f1_loss: float | None = None  # the export's int8 budget (None: train.export's default)


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

    def worker(self, name: str, port: int, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        w = WorkerProcess(
            ["worker", "serve", "--port", str(port), "--worker-id", name],
            {**self.env, **(extra_env or {})},
            self.work_dir / f"{name}.log",
        )
        try:
            wait_until(
                http_ready(f"http://127.0.0.1:{port}/healthz"), timeout_s=180, what=f"{name} up", proc=w
            )
        except BaseException:
            w.stop()  # never leave a worker holding its port behind a failed run
            raise
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
@dataclass(frozen=True)
class _ServeResults:
    """What one worker's phases measured, in the order they ran."""

    batch1_ms: list[float]
    max_done: int
    max_failed: int
    max_latencies_ms: list[float]
    half_rate: float
    half_latencies_ms: list[float]
    half_failed: int
    mean_batch_queries: float | None
    explained: Explained | None
    served_by: str | None  # Adapter.backend as the worker's /readyz reports it


@dataclass(frozen=True)
class _Versions:
    """The measured version (fitted head, ONNX graphs), the two loaded only for RSS, and the rows
    every backend's macro-F1 is reported on (never the export's)."""

    version: str
    extra: list[str]
    report: list[tuple[str, str]]
    int8_reason: str | None  # why the int8 graph was not published (None: it was)


def run_serve_bench(settings: Settings, opts: ServeBenchOptions, echo: Echo) -> dict[str, Any]:
    """Every backend's raw and worker phases, one worker at a time, then the fused, heads and
    explain phases on the main backend's worker; returns the summary (the CLI prints it as JSON)."""
    per_backend: dict[str, dict[str, Any]] = {}
    main_results: tuple[_ServeResults, Any, Any] | None = None
    with bench_env(settings, "bench-serve") as env:
        echo(f"bench serve: publishing fitted synthetic adapters with ONNX graphs (seed {opts.seed}) ...")
        v = _publish(env, settings, opts)
        queries = bench_queries(opts.seed)
        skipped = {"onnx_int8"} if v.int8_reason is not None else set()
        main = _main_backend(settings, [b for b in opts.backends if b not in skipped])
        for name in opts.backends:
            if name == "onnx_int8" and v.int8_reason is not None:
                echo(f"bench serve: onnx_int8 skipped, no int8 graph: {v.int8_reason}")
                per_backend[name] = {**dict.fromkeys(BACKEND_KEYS), "reason": v.int8_reason}
                continue
            echo(f"bench serve: {name}: raw model, batches of {settings.serve.batch_max_queries} ...")
            raw = measure_raw(
                RawRequest(
                    str(env.artifacts.root),
                    v.version,
                    v.extra,
                    queries,
                    v.report,
                    settings.serve.batch_max_queries,
                    opts.seconds,
                ),
                {**env.env, **backend_env(name)},
                # Raw eager PyTorch at its own defaults (OpenMP threads spinning): the strongest
                # eager baseline (523 against 431 queries/s with the workers' passive threads, 2026-12-04).
                settings.serve.omp_passive and name != "torch",
            )
            echo(f"bench serve: {name}: raw {raw.raw_qps:,.0f} queries/s, macro-F1 {raw.macro_f1:.4f}")
            results, fused, heads = _on_worker(
                env, settings, opts, v.version, queries, name, name == main, echo
            )
            per_backend[name] = _backend_summary(raw, results, opts)
            if name == main:
                main_results = (results, fused, heads)
    summary = _summary(settings, opts, v.version, main, per_backend)
    if main_results is None:
        return summary
    m, fused, heads = main_results
    return {
        **summary,
        "max_p50_ms": round(percentile(m.max_latencies_ms, 50), 2),
        "max_p99_ms": round(percentile(m.max_latencies_ms, 99), 2),
        "mean_batch_queries": m.mean_batch_queries,
        **_pair_summary("fused", "encoder_only", fused),
        **_pair_summary("heads", "single_head", heads),
        **_explain_summary(m.explained, percentile(m.half_latencies_ms, 99), opts.seconds),
    }


def _main_backend(settings: Settings, runnable: list[str]) -> str | None:
    """The backend the top-level figures and the fused/heads/explain phases are measured on: the
    configured one (``serve.backend`` / ``serve.int8``) when it runs; for int8 without an int8
    graph, fp32 (what such a worker serves instead); else the first that runs."""
    configured = backend_name(settings.serve.backend, settings.serve.int8)
    if configured in runnable:
        return configured
    if configured == "onnx_int8" and "onnx_fp32" in runnable:
        return "onnx_fp32"
    return runnable[0] if runnable else None


def _publish(env: BenchEnv, settings: Settings, opts: ServeBenchOptions) -> _Versions:
    """The measured version and two more (other seeds, for RSS), each with a category head fitted
    to half the simulator's labelled queries, so that int8 has decisive answers to keep."""
    from trainer.onnx_graph import SECTION

    data = labelled_queries(opts.seed)
    versions = fitted_versions(env.artifacts, settings, opts.seed, 3, opts.max_int8_f1_loss)
    env.record(versions[0])
    _, manifest = env.artifacts.fetch(versions[0])
    int8 = (manifest.get(SECTION) or {}).get("int8") or {"reason": "the export wrote no int8 record"}
    reason = None if int8.get("published") else str(int8.get("reason"))
    return _Versions(versions[0], versions[1:], data.report, reason)


def _on_worker(
    env: BenchEnv,
    settings: Settings,
    opts: ServeBenchOptions,
    version: str,
    queries: list[str],
    name: str,
    main: bool,
    echo: Echo,
) -> tuple[_ServeResults, "_PairResults | None", "_PairResults | None"]:
    """One worker on backend ``name``: its phases, and on the main backend the paired ones."""
    port = free_port()
    echo(f"bench serve: {name}: starting a worker on :{port} ...")
    worker = env.worker(f"bench-serve-{name}", port, backend_env(name))
    fused = heads = None
    try:
        env.promote(version, f"bench serve: {name}")
        _serving(port, version, worker)
        results = _phases(opts, queries, port, opts.explain_clients if main else 0, echo)
        if main and opts.fused:
            fused = _paired_phase(env, opts, queries, port, worker, _fused_pair(env, settings, opts), echo)
        if main and opts.heads:
            heads = _paired_phase(
                env, opts, queries, port, worker, _heads_pair(env, settings, opts, version), echo
            )
    finally:
        worker.stop()
    return results, fused, heads


def _fused_pair(env: BenchEnv, settings: Settings, opts: ServeBenchOptions) -> tuple[str, str]:
    """A fused version and its encoder-only twin (same seed: the same encoder and head weights, so
    the same graphs pass the same export checks and both are served by the same backend)."""
    from serving.synthetic import synthetic_adapter, synthetic_fused_adapter

    kw: dict[str, Any] = {"seed": opts.seed, "max_length": settings.model.max_length}
    twin = synthetic_adapter(
        env.artifacts, settings.model.base_dir, export=export_settings(opts.max_int8_f1_loss), **kw
    )
    fused = synthetic_fused_adapter(
        env.artifacts, settings.model.base_dir, export=export_settings(opts.max_int8_f1_loss), **kw
    )
    env.record(twin)
    env.record(fused)
    return twin, fused


def _heads_pair(env: BenchEnv, settings: Settings, opts: ServeBenchOptions, single: str) -> tuple[str, str]:
    """The measured version and the same one (seed, fitted head) with an intent-type head added."""
    from serving.synthetic import synthetic_adapter

    data = labelled_queries(opts.seed)
    multi = synthetic_adapter(
        env.artifacts,
        settings.model.base_dir,
        seed=opts.seed,
        labels=data.labels,
        max_length=settings.model.max_length,
        heads={INTENT_TYPE: list(INTENT_TYPES)},
        export=export_settings(opts.max_int8_f1_loss),
        fit=data.fit,
        held_out=data.held_out,
    )
    env.record(multi)
    return single, multi


def _backend_summary(raw: RawResult, m: _ServeResults, opts: ServeBenchOptions) -> dict[str, Any]:
    """One backend's figures (``f1_loss_pt``: see ``backends.compare``), ``BACKEND_KEYS`` all of them."""
    qps = m.max_done / opts.seconds
    rss_void = f"RSS not measured: the extra versions were served by {', '.join(raw.extra_served_by)}"
    return {
        "raw_qps": raw.raw_qps,
        "qps": round(qps, 1),
        "ratio_vs_raw": round(qps / raw.raw_qps, 3) if raw.raw_qps else None,
        "p50_ms": round(percentile(m.half_latencies_ms, 50), 2),
        "p99_ms": round(percentile(m.half_latencies_ms, 99), 2),
        "half_rate_qps": round(m.half_rate, 1),
        "batch1_p50_ms": round(statistics.median(m.batch1_ms), 2) if m.batch1_ms else None,
        "macro_f1": raw.macro_f1,
        "f1_loss_pt": None,
        "failed_requests": m.max_failed + m.half_failed + (opts.batch1_requests - len(m.batch1_ms)),
        "rss_per_extra_version_mb": raw.rss_per_extra_version_mb,
        "served_by": m.served_by,
        "raw_served_by": raw.served_by,
        "reason": None if raw.rss_per_extra_version_mb is not None else rss_void,
    }


def _summary(
    settings: Settings,
    opts: ServeBenchOptions,
    version: str,
    main: str | None,
    per_backend: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The main backend's figures under the keys the bench always had, every backend's, the targets."""
    m = per_backend.get(main or "") or dict.fromkeys(BACKEND_KEYS)
    return {
        "bench": "serve",
        "encoder": str(settings.model.base_dir or "all-MiniLM-L6-v2"),
        "cores": os.cpu_count(),
        "clients": opts.clients,
        "seconds": opts.seconds,
        "backend": main,
        **{k: m[k] for k in ("qps", "p50_ms", "p99_ms", "half_rate_qps", "raw_qps", "ratio_vs_raw")},
        "batch1_p50_ms": m["batch1_p50_ms"],
        "failed_requests": m["failed_requests"],
        "version": version,
        "max_int8_f1_loss": export_settings(opts.max_int8_f1_loss).max_int8_f1_loss,
        **compare(per_backend),
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
    served_by: dict[str, str | None] = {}
    failed = 0
    for version in (measured, reference, measured):
        env.promote(version, "bench serve: paired phase")
        _serving(port, version, worker)
        served_by[version] = _served_by(port, version)
        echo(f"bench serve: {version}, {opts.clients} concurrent clients, {opts.seconds:.0f}s ...")
        done, n_failed, _ = asyncio.run(closed_loop(port, queries, opts.clients, opts.seconds))
        answered[version].append(done)
        failed += n_failed
    qps = statistics.mean(answered[measured]) / opts.seconds
    reference_qps = statistics.mean(answered[reference]) / opts.seconds
    return _PairResults(measured, qps, reference_qps, failed, (served_by[measured], served_by[reference]))


def _serving(port: int, version: str, worker: WorkerProcess) -> None:
    wait_until(lambda: served_version(port) == version, timeout_s=180, what=version, proc=worker)


def _served_by(port: int, version: str) -> str | None:
    """What the worker says serves ``version`` (``/readyz`` ``backends``), if it says."""
    import httpx

    backends = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json().get("backends") or {}
    value = backends.get(version)
    return str(value) if value is not None else None


@dataclass(frozen=True)
class _PairResults:
    version: str
    qps: float
    reference_qps: float  # measured between the two loops of the measured version
    failed: int
    served_by: tuple[str | None, str | None]  # the measured version's backend, the reference's


def _pair_summary(prefix: str, other: str, result: _PairResults | None) -> dict[str, Any]:
    """A paired phase's figures: ``<prefix>_qps`` against ``<prefix>_<other>_qps`` measured between
    its two loops, their ratio ``<prefix>_vs_<other>``, what served each side (nulls when the phase
    did not run)."""
    keys = ("version", "qps", f"{other}_qps", f"vs_{other}", "failed", "served_by", f"{other}_served_by")
    if result is None:
        return {f"{prefix}_{k}": None for k in keys}
    ratio = round(result.qps / result.reference_qps, 3) if result.reference_qps else None
    values = (
        result.version,
        round(result.qps, 1),
        round(result.reference_qps, 1),
        ratio,
        result.failed,
        *result.served_by,
    )
    return {f"{prefix}_{k}": v for k, v in zip(keys, values, strict=True)}


def _phases(
    opts: ServeBenchOptions, queries: list[str], port: int, explainers: int, echo: Echo
) -> _ServeResults:
    """Batch-1 latency, closed-loop maximum, open loop at half of it (and with ``explainers``
    explanation clients beside it): in that order, on the worker at ``port``."""
    served_by = _served_by(port, served_version(port) or "")
    echo(f"bench serve: served by {served_by}; batch-1 latency, {opts.batch1_requests} requests")
    b1 = asyncio.run(batch1(port, queries, opts.batch1_requests))
    echo(f"bench serve: {opts.clients} concurrent clients, {opts.seconds:.0f}s ...")
    done, failed_max, lat_max = asyncio.run(closed_loop(port, queries, opts.clients, opts.seconds))
    qps = done / opts.seconds
    half = qps / 2
    echo(f"bench serve: max {qps:,.0f} queries/s; open loop at {half:,.0f}/s, {opts.seconds:.0f}s ...")
    lat_half, failed_half = asyncio.run(open_loop(port, queries, half, opts.seconds, pool=opts.clients))
    mean_batch = batch_mean(port)
    explained = None
    if explainers:
        echo(f"bench serve: open loop at {half:,.0f}/s with {explainers} explanation clients ...")
        explained = asyncio.run(mixed(port, queries, half, opts.seconds, opts.clients, explainers))
    return _ServeResults(
        b1, done, failed_max, lat_max, half, lat_half, failed_half, mean_batch, explained, served_by
    )


def _explain_summary(e: Explained | None, half_p99: float, seconds: float) -> dict[str, Any]:
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
