"""`intentloop bench ingest`: end-to-end ingest speed, label latency and memory on real servers.

Phases, all against the same broker and database:

1. produce the whole simulated stream (not measured), so the worker is never waiting on a producer;
2. raw baseline: plain aiokafka batch consume + COPY of the same records (``raw.py``);
3. throughput ("backlog max"): one ``intentloop worker ingest`` process from an empty group to the
   last record, timed from its first commit to its last (the consumer-group join is excluded);
4. loaded max: fresh events offered by a paced producer at 1.2x the backlog max for ``loaded_s`` s;
   what the worker commits meanwhile is the rate it holds with a producer beside it on the machine
   (a producer costs CPU, and on a small machine the worker, Postgres and the broker share it);
5. latency: fresh events sent at ``--rate`` (default half the loaded max), each stamped with its
   send time; latency = commit time of its vote - stamp.

The raw baseline runs before the worker starts, so neither sees the other's CPU use. Every phase
with a producer reports the producer's own CPU, the worker's, and the whole machine's busy cores.
"""

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from intentloop.bench.measure import (
    SENTINEL,
    SENTINEL_TS,
    Latency,
    MachineCpu,
    PacedProducer,
    Sample,
    Watch,
    Window,
    commit_window,
    committed_between,
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
_WARMUP_S = 2.0  # of the loaded phase, left out of its rate: the producer and the fetches ramping up
_LOADED_OFFER = 1.2  # x the backlog max: more than the worker takes, so what it commits is its maximum
MAX_DEFINITION = (
    "loaded max: events/s the worker committed while a paced producer on the same machine offered "
    "{offer}x the backlog max (first {warmup:.0f}s left out); the latency rate is half of it"
)


@dataclass(frozen=True)
class BenchOptions:
    events: int = 1_000_000
    seed: int = 11
    rate: float | None = None  # events/s in the latency phase; None: half the loaded max
    latency_s: float = 25.0
    keep_stack: bool = False
    loaded_s: float = 10.0  # length of the loaded-max phase


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

        echo(f"bench: backlog max {window.events_per_s:,.0f} events/s; loaded max (producer beside it) ...")
        start = phase[-1][1]
        offered = _LOADED_OFFER * window.events_per_s
        loaded = _paced_phase(pg, worker, watch, eps, opts.seed + 1, offered, opts.loaded_s, start)
        rate = opts.rate or max(100.0, loaded.held_events_per_s / 2)
        echo(f"bench: loaded max {loaded.held_events_per_s:,.0f} events/s; latency phase at {rate:,.0f} ...")
        start += loaded.sent
        latency = _paced_phase(pg, worker, watch, eps, opts.seed + 2, rate, opts.latency_s, start)
        run = _Measured(sent, produce_s, raw, spawned, window, watch, phase, loaded, latency, stored_rows(pg))
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
class _Paced:
    """One phase with a paced producer: what was asked, what was sent, and what each process used."""

    rate_asked: float
    sent: int
    rate_achieved: float  # by the producer
    producer_cpu_pct: float
    held_events_per_s: float  # committed by the worker while the producer sent (warm-up left out)
    saturated: bool  # the worker fell behind the producer: ``held`` is its maximum, not the rate asked
    worker_cpu_pct: float
    machine_busy_cores: float
    latency: Latency


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
    loaded: _Paced
    latency: _Paced
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
    sent, raw, window, phase, loaded, lat = run.sent, run.raw, run.window, run.phase, run.loaded, run.latency
    return {
        "events": sent.total,
        "events_per_s": round(window.events_per_s, 1),
        "raw_events_per_s": raw.events_per_s,
        "ratio_vs_raw": round(window.events_per_s / raw.events_per_s, 3) if raw.events_per_s else None,
        "max_definition": MAX_DEFINITION.format(offer=_LOADED_OFFER, warmup=_WARMUP_S),
        "loaded_max_events_per_s": round(loaded.held_events_per_s, 1),
        "loaded_max_saturated": loaded.saturated,
        "loaded_rate_asked_events_per_s": round(loaded.rate_asked, 1),
        "loaded_rate_achieved_events_per_s": round(loaded.rate_achieved, 1),
        "latency_rate_asked_events_per_s": round(lat.rate_asked, 1),
        "latency_rate_achieved_events_per_s": round(lat.rate_achieved, 1),
        "latency_rate_held_events_per_s": round(lat.held_events_per_s, 1),
        "label_latency_p50_ms": round(lat.latency.p50_ms, 1),
        "label_latency_p95_ms": round(lat.latency.p95_ms, 1),
        "label_latency_p99_ms": round(lat.latency.p99_ms, 1),
        "label_latency_max_ms": round(lat.latency.max_ms, 1),
        "latency_events_voted": lat.latency.n,
        "producer_cpu_pct": {"loaded": loaded.producer_cpu_pct, "latency": lat.producer_cpu_pct},
        "worker_cpu_pct": {
            "throughput": cpu_percent(phase, 0, sent.total),
            "loaded": loaded.worker_cpu_pct,
            "latency": lat.worker_cpu_pct,
        },
        "machine_busy_cores": {"loaded": loaded.machine_busy_cores, "latency": lat.machine_busy_cores},
        "machine_cores": psutil.cpu_count(),
        "peak_rss_mb": round(run.watch.peak_rss_mb, 1),
        "rss_mb_by_progress": rss_by_progress(phase, 0, sent.total),
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


def _paced_phase(
    pg: psycopg.Connection,
    worker: WorkerProcess,
    watch: Watch,
    eps: Endpoints,
    seed: int,
    rate: float,
    seconds: float,
    start: int,
) -> _Paced:
    """Fresh events at ``rate`` for ``seconds``, until the worker has stored them all.

    The worker's held rate counts the rows it committed while the producer was sending, the
    warm-up left out; it is the worker's maximum when it fell behind (``saturated``), and about
    ``rate`` when it kept up. Label latency covers this phase's voted events (stamped after ``since``).
    """
    fresh = _fresh_records(seed, rate * seconds)
    since = datetime.now(UTC)
    producer = PacedProducer(eps.kafka_bootstrap, fresh, rate)
    machine = MachineCpu()
    producer.start()
    samples = watch.until(
        pg,
        worker,
        start + len(fresh),
        start=start,
        desc=f"paced {rate:,.0f}/s",
        timeout_s=seconds + 300,
        extra=producer.done,
    )
    busy = machine.busy_cores()
    producer.join()
    if producer.error is not None:
        raise IntentloopError(f"paced producer failed: {producer.error}") from producer.error
    t0 = producer.started + min(_WARMUP_S, producer.elapsed_s / 4)
    held_s = producer.finished - t0
    held = committed_between(pg, t0, producer.finished) / held_s if held_s > 0 else 0.0
    return _Paced(
        rate_asked=rate,
        sent=len(fresh),
        rate_achieved=producer.achieved_rate,
        producer_cpu_pct=producer.cpu_percent,
        held_events_per_s=held,
        saturated=held < 0.9 * producer.achieved_rate,
        worker_cpu_pct=cpu_percent(samples, start, start + len(fresh)),
        machine_busy_cores=busy,
        latency=label_latency(pg, since),
    )


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


def _fresh_records(seed: int, n_events: float) -> list[tuple[str, str, bytes]]:
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
        f"  loaded max           {s['loaded_max_events_per_s']:>10,.0f} events/s  producer beside it "
        f"(producer {s['producer_cpu_pct']['loaded']:.0f}% CPU, worker {s['worker_cpu_pct']['loaded']:.0f}%)"
    )
    cpu = (
        f"producer {s['producer_cpu_pct']['latency']:.0f}% CPU, "
        f"worker {s['worker_cpu_pct']['latency']:.0f}%, "
        f"machine {s['machine_busy_cores']['latency']} of {s['machine_cores']} cores busy"
    )
    echo(
        f"  label latency        p50 {s['label_latency_p50_ms']:.0f} ms, "
        f"p95 {s['label_latency_p95_ms']:.0f} ms, p99 {s['label_latency_p99_ms']:.0f} ms "
        f"(max {s['label_latency_max_ms']:.0f}) over {s['latency_events_voted']} votes at "
        f"{s['latency_rate_achieved_events_per_s']:,.0f} events/s ({cpu})"
    )
    echo(f"  worker RSS           peak {s['peak_rss_mb']:.0f} MB; by progress: {rss}")
