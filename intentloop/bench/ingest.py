"""`intentloop bench ingest`: end-to-end ingest speed, label latency and memory on real servers.

Phases, all against the same broker and database:

1. produce the whole simulated stream (not measured), so the worker is never waiting on a producer;
2. raw baseline: plain aiokafka batch consume + COPY of the same records (``raw.py``);
3. throughput: one ``intentloop worker ingest`` process from an empty group to the last record,
   timed from its first commit to its last (the consumer-group join is excluded), RSS sampled;
4. latency: fresh events sent at ``--rate`` (default half the measured maximum), each stamped with
   its send time; latency = commit time of its vote - stamp.

The raw baseline runs before the worker starts, so neither sees the other's CPU use.
"""

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from intentloop.bench.measure import (
    SENTINEL,
    SENTINEL_TS,
    PacedProducer,
    Sample,
    Watch,
    Window,
    commit_window,
    conninfo,
    cpu_percent,
    label_latency,
    rss_by_progress,
    stored_rows,
)
from intentloop.bench.raw import RawResult, raw_baseline
from intentloop.settings import Settings, StackPorts
from intentloop.stack import Endpoints, LocalStack
from intentloop.worker_processes import WorkerProcess, endpoint_env, free_port
from store.catalog import load_catalog
from store.db import Database
from store.exceptions import ConfigurationError, IntentloopError
from store.migrate import upgrade
from streams import topics
from streams.codec import encode
from streams.kafka import end_offsets, ensure_topics
from streams.simulator import SimConfig, simulate
from streams.simulator.publish import TrafficCounts, produce, traffic_records

Echo = Callable[[str], None]

EVENTS_PER_SEARCH = 7.9  # what the easy shop produces (impressions, clicks, carts, ...): the series since
# issue 3 is measured on it; realistic shoppers change the texts, not the work per event
_MALFORMED, _UNKNOWN_PRODUCT = 25, 10


@dataclass(frozen=True)
class BenchOptions:
    events: int = 1_000_000
    seed: int = 11
    rate: float | None = None  # events/s in the latency phase; None: half the measured maximum
    latency_s: float = 25.0
    keep_stack: bool = False


def run_ingest_bench(settings: Settings, opts: BenchOptions, echo: Echo) -> dict[str, Any]:
    """Run every phase on a fresh embedded stack (or on configured, empty servers); returns the summary."""
    bench_dir = (settings.state_dir / "bench").resolve()
    stack = _fresh_stack(settings, bench_dir)
    worker: WorkerProcess | None = None
    pg: psycopg.Connection | None = None
    try:
        eps = _with_commit_timestamps(stack, stack.up(timeout_s=120), embedded=settings.postgres.url is None)
        upgrade(eps.postgres_url)
        ensure_topics(eps.kafka_bootstrap, partitions=settings.kafka.partitions)
        pg = psycopg.connect(conninfo(eps.postgres_url), autocommit=True)
        _require_empty(pg, eps)
        sent, produce_s = _produce_stream(settings, eps, opts, echo)
        echo(f"bench: produced {sent.total} events in {produce_s:.1f}s; raw baseline (aiokafka + COPY) ...")
        raw = raw_baseline(eps.kafka_bootstrap, conninfo(eps.postgres_url))
        pg.execute("CHECKPOINT")  # the worker starts without the baseline's dirty pages to write

        echo(f"bench: raw {raw.events_per_s:,.0f} events/s; one ingest worker from an empty group ...")
        env = endpoint_env(eps, {"INTENTLOOP_STATE_DIR": str(bench_dir)})
        spawned = time.time()
        worker = WorkerProcess(["worker", "ingest"], env, bench_dir / "logs" / "ingest.log")
        watch = Watch()
        phase = watch.until(pg, worker, sent.total, desc="ingest", timeout_s=300 + sent.total / 500)
        window = commit_window(pg)

        rate = opts.rate or max(100.0, window.events_per_s / 2)
        echo(f"bench: {window.events_per_s:,.0f} events/s; latency phase at {rate:,.0f} events/s ...")
        latency, latency_cpu = _latency_phase(pg, worker, watch, eps, opts, rate, start=phase[-1][1])
        run = _Measured(
            sent, produce_s, raw, spawned, window, watch, phase, latency, latency_cpu, stored_rows(pg)
        )
    finally:
        if worker is not None:
            worker.stop()
        if pg is not None:
            pg.close()
        if not opts.keep_stack:
            stack.down()
    summary = _summary(settings, opts, bench_dir, run)
    _print_summary(summary, echo)
    return summary


@dataclass(frozen=True)
class _Measured:
    """What one run measured, phase by phase."""

    sent: TrafficCounts
    produce_s: float
    raw: RawResult
    spawned: float  # wall clock when the worker process was started
    window: Window  # first to last commit of the throughput phase
    watch: Watch
    phase: list[Sample]  # the throughput phase's samples
    latency: dict[str, Any]
    latency_cpu: float
    total_stored: int


def _produce_stream(
    settings: Settings, eps: Endpoints, opts: BenchOptions, echo: Echo
) -> tuple[TrafficCounts, float]:
    """Simulate, store the catalog, produce every record (bad ones too); returns how long producing took."""
    echo(f"bench: simulating ~{opts.events} events (seed {opts.seed}) ...")
    sim = simulate(SimConfig.easy(seed=opts.seed, n_searches=max(1, round(opts.events / EVENTS_PER_SEARCH))))
    with Database(eps.postgres_url) as db, db.session() as session:
        load_catalog(session, [p.model_dump() for p in sim.catalog], settings.taxonomy)
    records, sent = traffic_records(
        sim, malformed=_MALFORMED, unknown_product=_UNKNOWN_PRODUCT, seed=opts.seed
    )
    del sim
    t = time.monotonic()
    produce(eps.kafka_bootstrap, records)
    return sent, time.monotonic() - t


def _summary(settings: Settings, opts: BenchOptions, bench_dir: Path, run: _Measured) -> dict[str, Any]:
    """The result line the CLI prints as JSON."""
    sent, raw, window, phase = run.sent, run.raw, run.window, run.phase
    return {
        "events": sent.total,
        "events_per_s": round(window.events_per_s, 1),
        "raw_events_per_s": raw.events_per_s,
        "ratio_vs_raw": round(window.events_per_s / raw.events_per_s, 3) if raw.events_per_s else None,
        **run.latency,
        "peak_rss_mb": round(run.watch.peak_rss_mb, 1),
        "rss_mb_by_progress": rss_by_progress(phase, 0, sent.total),
        "worker_cpu_pct": {"throughput": cpu_percent(phase, 0, sent.total), "latency": run.latency_cpu},
        "ingest_wall_s": round(window.t1 - window.t0, 2),
        "worker_start_to_first_commit_s": round(window.t0 - run.spawned, 2),
        "raw_wall_s": raw.wall_s,
        "produce_s": round(run.produce_s, 1),
        "rows_stored": run.total_stored,
        "batch_size": settings.ingest.batch_size,
        "partitions": settings.kafka.partitions,
        "seed": opts.seed,
        "timing": "postgres commit timestamps",
        "stack": "kept: " + str(bench_dir) if opts.keep_stack else "stopped",
    }


def _latency_phase(
    pg: psycopg.Connection,
    worker: WorkerProcess,
    watch: Watch,
    eps: Endpoints,
    opts: BenchOptions,
    rate: float,
    *,
    start: int,
) -> tuple[dict[str, Any], float]:
    """Fresh events at ``rate`` while the worker keeps up; latency = vote commit time - send time.

    Returns the summary's latency fields and the worker's CPU use during the phase.
    """
    fresh = _latency_records(opts.seed + 1, rate * opts.latency_s)
    since = datetime.now(UTC)
    producer = PacedProducer(eps.kafka_bootstrap, fresh, rate)
    producer.start()
    samples = watch.until(
        pg,
        worker,
        start + len(fresh),
        start=start,
        desc="latency",
        timeout_s=opts.latency_s + 300,
        extra=lambda: not producer.is_alive(),
    )
    producer.join()
    if producer.error is not None:
        raise IntentloopError(f"latency producer failed: {producer.error}") from producer.error
    n, p50, p99, max_ms = label_latency(pg, since)
    fields = {
        "label_latency_p50_ms": round(p50, 1),
        "label_latency_p99_ms": round(p99, 1),
        "label_latency_max_ms": round(max_ms, 1),
        "latency_events_voted": n,
        "latency_rate_events_per_s": round(rate, 1),
        "latency_achieved_rate_events_per_s": round(len(fresh) / producer.elapsed_s, 1),
    }
    return fields, cpu_percent(samples, start, start + len(fresh))


def _fresh_stack(settings: Settings, bench_dir: Path) -> LocalStack:
    """Embedded servers from empty on free ports for every unset URL; configured URLs are used as they are."""
    if bench_dir.exists():
        LocalStack(bench_dir).down()
        shutil.rmtree(bench_dir)
    ports = StackPorts(kafka_port=free_port(), postgres_port=free_port(), redis_port=free_port())
    pg_url = settings.postgres.url.get_secret_value() if settings.postgres.url else None
    redis_url = settings.redis.url.get_secret_value() if settings.redis.url else None
    return LocalStack(
        bench_dir,
        kafka_bootstrap=settings.kafka.bootstrap,
        postgres_url=pg_url,
        redis_url=redis_url,
        ports=ports,
    )


def _with_commit_timestamps(stack: LocalStack, eps: Endpoints, *, embedded: bool) -> Endpoints:
    """Every time in the summary is a commit timestamp: turn them on (embedded Postgres restarts once)."""
    with psycopg.connect(conninfo(eps.postgres_url), autocommit=True) as pg:
        row = pg.execute("SHOW track_commit_timestamp").fetchone()
        if row and row[0] == "on":
            return eps
        if not embedded:
            raise ConfigurationError(
                "the configured Postgres needs track_commit_timestamp=on for the benchmark's timings "
                "(ALTER SYSTEM SET track_commit_timestamp = on; then restart it), or unset "
                "INTENTLOOP_POSTGRES__URL to benchmark on a fresh embedded server"
            )
        pg.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    stack.down()
    return stack.up(timeout_s=120)


def _require_empty(pg: psycopg.Connection, eps: Endpoints) -> None:
    """Configured servers must start empty: every count and time in the summary assumes it."""
    busy = [t for t in topics.INPUT_TOPICS if end_offsets(eps.kafka_bootstrap, t)]
    if busy or stored_rows(pg):
        raise ConfigurationError(
            f"the benchmark needs empty input topics and ingest tables (non-empty: {busy or 'tables'}); "
            "unset INTENTLOOP_KAFKA__BOOTSTRAP / INTENTLOOP_POSTGRES__URL to use a fresh embedded stack"
        )


def _latency_records(seed: int, n_events: float) -> list[tuple[str, str, bytes]]:
    """New events (another seed: new ids) encoded with a sentinel timestamp the producer replaces."""
    sim = simulate(SimConfig.easy(seed=seed, n_searches=max(1, round(n_events / EVENTS_PER_SEARCH))))
    out = [(t, k, encode(e.model_copy(update={"timestamp": SENTINEL_TS}))) for t, k, e in sim.events()]
    if not all(SENTINEL in raw for _, _, raw in out[:10]):
        raise IntentloopError("the codec's timestamp format changed: update measure.SENTINEL")
    return out


def _print_summary(s: dict[str, Any], echo: Echo) -> None:
    rss = ", ".join(f"{k} {v:.0f}" for k, v in s["rss_mb_by_progress"].items())
    echo("intentloop bench ingest")
    echo(f"  events               {s['events']:>10,}  produced in {s['produce_s']}s (not measured)")
    echo(
        f"  end to end           {s['events_per_s']:>10,.0f} events/s  one worker, "
        f"{s['ingest_wall_s']}s first->last commit (join took {s['worker_start_to_first_commit_s']}s)"
    )
    echo(f"  raw consume + COPY   {s['raw_events_per_s']:>10,.0f} events/s  ratio {s['ratio_vs_raw']}")
    echo(
        f"  label latency        p50 {s['label_latency_p50_ms']:.0f} ms, "
        f"p99 {s['label_latency_p99_ms']:.0f} ms "
        f"(max {s['label_latency_max_ms']:.0f}) over {s['latency_events_voted']} votes at "
        f"{s['latency_achieved_rate_events_per_s']:,.0f} events/s"
    )
    echo(f"  worker RSS           peak {s['peak_rss_mb']:.0f} MB; by progress: {rss}")
