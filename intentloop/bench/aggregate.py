"""`intentloop bench aggregate`: full vs incremental label aggregation, one vs several shard processes.

Simulated long-tail traffic (``--searches`` over ``--days``) is written into a fresh database the
way ingestion writes it, all but the newest ``--increment`` share of it. Then:

1. ``full``: ``labels aggregate --full`` on it (every search read, every function run);
2. ``incremental_cold``: the first incremental run, which folds every bucket (the cost of
   switching on the incremental path, paid once);
3. the increment is written (new searches and the feedback that came since, late returns
   included), and ``incremental`` (what changed is refolded) and ``full`` run again on the same data;
   their labels and reports must be equal (``equal``);
4. the statistics are dropped and folded again by one process and by ``--shards`` processes at once
   (``--shard i/N`` each, separate OS processes), each followed by the combining run; both must give
   the full run's labels.

searches/s is always the window's searches over the wall time of the run (what a run costs per
search of the labelled window). Uses ``INTENTLOOP_POSTGRES__URL``'s server when set (a new database
on it, dropped at the end), else an embedded Postgres of its own under ``<state_dir>/bench-aggregate``.
"""

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import delete, make_url, select
from tqdm import tqdm

from intentloop.bench.measure import conninfo
from intentloop.settings import Settings, StackPorts
from intentloop.stack import LocalStack
from intentloop.worker_processes import free_port
from store.catalog import load_catalog
from store.db import Database
from store.events import write_batch
from store.migrate import upgrade
from store.models import LabelDistribution, LabelFoldRecord, LabelFoldState, LabelStat
from store.settings import TaxonomySettings
from streams.ingestion.batch import feedback_row, query_row
from streams.labels_incremental import run_incremental
from streams.labels_job import AggregationResult, run_aggregation
from streams.simulator import SimConfig, Simulation, simulate
from streams.weak.settings import LabelSettings

Echo = Callable[[str], None]
_DB_NAME = "intentloop_bench_aggregate"
_CHUNK = 5000  # rows per write transaction, as an ingestion batch


@dataclass(frozen=True)
class AggregateBenchOptions:
    searches: int = 60_000
    days: float = 90.0
    increment: float = 0.05  # the newest share of the searches, written after the first runs
    shards: int = 2
    seed: int = 23
    traffic: str = "long_tail"  # or "head": queries repeat, as at production volume


def traffic_config(opts: AggregateBenchOptions) -> SimConfig:
    """``long_tail``: the realistic shoppers' log, ~70% of distinct queries searched once (the
    incremental run's worst case: the per-query table is nearly as big as the log); ``head``: the
    catalogue's own words under a steeper Zipf (~4 searches per distinct query at 30k searches)."""
    if opts.traffic == "head":
        return SimConfig.long_tail(
            seed=opts.seed,
            n_searches=opts.searches,
            days=opts.days,
            realism=None,
            intent_types=None,
            tail_texts=False,
            zipf_exponent=1.1,
        )
    return SimConfig.long_tail(seed=opts.seed, n_searches=opts.searches, days=opts.days)


def run_aggregate_bench(settings: Settings, opts: AggregateBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Every phase on a fresh database; returns the summary (the CLI prints it as JSON)."""
    started = time.monotonic()
    server, stack = _server(settings)
    url = _fresh_database(server)
    try:
        summary = _phases(url, settings.labels, settings.taxonomy.dimensions, opts, echo)
    finally:
        _drop_database(server)
        if stack is not None:
            stack.down()
    return summary | {"wall_s": round(time.monotonic() - started, 1)}


def _phases(
    url: str, labels: LabelSettings, dimensions: Sequence[str], opts: AggregateBenchOptions, echo: Echo
) -> dict[str, Any]:
    echo(f"simulating {opts.searches:,} searches ({opts.traffic}) over {opts.days:g} days ...")
    sim = simulate(traffic_config(opts))
    cut = sim.queries[int(len(sim.queries) * (1 - opts.increment))].timestamp
    with Database(url) as db:
        with db.session() as s:
            load_catalog(s, [p.model_dump() for p in sim.catalog], TaxonomySettings())
        _write(db, sim, lambda ts: ts < cut, "writing the first searches")
        run: Callable[..., AggregationResult] = run_aggregation
        base_full = _timed(run, db, labels, dimensions)
        cold = _timed(run_incremental, db, labels, dimensions)
        _write(db, sim, lambda ts: ts >= cut, "writing the increment")
        inc = _timed(run_incremental, db, labels, dimensions)
        inc_labels = _stored(db)
        full = _timed(run, db, labels, dimensions)
        full_labels = _stored(db)
        equal = _equal(inc_labels, full_labels) and _same_report(inc["result"], full["result"])
        echo(f"full {full['wall_s']}s, incremental {inc['wall_s']}s after {opts.increment:.0%} new searches")
        sharding = _sharding(db, url, labels, dimensions, opts, full_labels, echo)
    n = full["result"].report["searches"]
    return {
        "traffic": opts.traffic,
        "searches_simulated": len(sim.queries),
        "distinct_queries": len({q for _, q in full_labels}),
        "window_searches": n,
        "increment_searches": sum(1 for q in sim.queries if q.timestamp >= cut),
        "bucket_hours": labels.bucket_hours,
        "full": _rate(full, n) | {"before_increment_s": base_full["wall_s"]},
        "incremental_cold": _rate(cold, cold["result"].report["searches"]) | {"fold": cold["result"].fold},
        "incremental": _rate(inc, n) | {"fold": inc["result"].fold},
        "speedup_incremental": round(full["wall_s"] / inc["wall_s"], 2),
        "equal": equal,
        "shards": sharding,
    }


def _sharding(
    db: Database,
    url: str,
    labels: LabelSettings,
    dimensions: Sequence[str],
    opts: AggregateBenchOptions,
    expected: dict[tuple[str, str], dict[str, Any]],
    echo: Echo,
) -> dict[str, Any]:
    """Fold everything again with 1 and with ``opts.shards`` processes, then combine."""
    out: dict[str, Any] = {}
    n = 0
    for count in sorted({1, opts.shards}):
        _forget_stats(db)
        echo(f"folding with {count} shard process(es) ...")
        t0 = time.monotonic()
        procs = [_shard_process(url, i, count) for i in range(count)]
        codes = [p.wait() for p in procs]
        fold_s = time.monotonic() - t0
        if any(codes):
            raise RuntimeError(f"a shard process failed (exit codes {codes})")
        combined = _timed(run_incremental, db, labels, dimensions)
        n = combined["result"].report["searches"]
        out[str(count)] = {
            "fold_s": round(fold_s, 2),
            "combine_s": combined["wall_s"],
            "searches_per_s": round(n / (fold_s + combined["wall_s"]), 1),
            "refolded_by_combine": combined["result"].fold["folded_buckets"],
            "equal_to_full": _equal(_stored(db), expected),
        }
    one, many = out["1"], out[str(opts.shards)]
    out["speedup"] = round((one["fold_s"] + one["combine_s"]) / (many["fold_s"] + many["combine_s"]), 2)
    return out


def _shard_process(url: str, index: int, count: int) -> subprocess.Popen[bytes]:
    """``intentloop labels aggregate --shard i/N`` as its own OS process, as a Kubernetes pod would."""
    env = {**os.environ, "INTENTLOOP_POSTGRES__URL": url}
    shard = ["--shard", f"{index}/{count}", "--quiet"]
    cmd = [sys.executable, "-m", "intentloop", "labels", "aggregate", *shard]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def _timed(
    run: Callable[..., AggregationResult], db: Database, labels: LabelSettings, dims: Any
) -> dict[str, Any]:
    t0 = time.monotonic()
    result = run(db, labels, dimensions=dims, progress=True)
    return {"result": result, "wall_s": round(time.monotonic() - t0, 2)}


def _rate(timed: dict[str, Any], n: int) -> dict[str, Any]:
    return {"wall_s": timed["wall_s"], "searches_per_s": round(n / max(timed["wall_s"], 1e-9), 1)}


def _write(db: Database, sim: Simulation, keep: Callable[[datetime], bool], desc: str) -> None:
    # by event time: what had happened by the cut comes first (feedback on older searches, late
    # returns above all, then arrives with the increment)
    queries = [query_row(q) for q in sim.queries if keep(q.timestamp)]
    feedback = [feedback_row(f) for f in sim.feedback if keep(f.timestamp)]
    for start in tqdm(range(0, max(len(queries), len(feedback)), _CHUNK), desc=desc, leave=False):
        with db.session() as s:
            write_batch(s, queries[start : start + _CHUNK], feedback[start : start + _CHUNK])


def _stored(db: Database) -> dict[tuple[str, str], dict[str, Any]]:
    with db.session() as s:
        return {
            (d.dimension, d.norm_text): {
                "label": d.label,
                "abstained": d.abstained,
                "confidence": d.confidence,
                "evidence": d.evidence,
                "distribution": dict(d.distribution or {}),
            }
            for d in s.scalars(select(LabelDistribution))
        }


def _equal(a: dict[tuple[str, str], dict[str, Any]], b: dict[tuple[str, str], dict[str, Any]]) -> bool:
    """Same queries, labels and abstentions; probabilities equal to 1e-6."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if (x["label"], x["abstained"], x["distribution"].keys()) != (
            y["label"],
            y["abstained"],
            y["distribution"].keys(),
        ):
            return False
        pairs = [(x["confidence"], y["confidence"]), (x["evidence"], y["evidence"])]
        pairs += [(p, y["distribution"][k]) for k, p in x["distribution"].items()]
        if not all(math.isclose(p, q, rel_tol=1e-6, abs_tol=1e-9) for p, q in pairs):
            return False
    return True


def _same_report(a: AggregationResult, b: AggregationResult) -> bool:
    keys = ("searches", "queries", "labelled", "abstained")
    return all(
        {k: r.summary()[k] for k in keys} == {k: b.dimensions[d].summary()[k] for k in keys}
        for d, r in a.dimensions.items()
    )


def _forget_stats(db: Database) -> None:
    with db.session() as s:
        for model in (LabelStat, LabelFoldRecord, LabelFoldState):
            s.execute(delete(model))


def _server(settings: Settings) -> tuple[str, LocalStack | None]:
    """The Postgres server to create the bench database on: the configured one, else our own."""
    if settings.postgres.url is not None:
        return settings.postgres.url.get_secret_value(), None
    bench_dir = Path(settings.state_dir) / "bench-aggregate"
    if bench_dir.exists():
        LocalStack(bench_dir).down()
        shutil.rmtree(bench_dir)
    # Only Postgres is needed: Kafka and Redis are marked configured so that none is started.
    stack = LocalStack(
        bench_dir,
        kafka_bootstrap="unused:9",
        redis_url="redis://unused:9",
        ports=StackPorts(postgres_port=free_port()),
    )
    return stack.up(timeout_s=120).postgres_url, stack


def _fresh_database(server: str) -> str:
    _drop_database(server)
    with psycopg.connect(conninfo(server), autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{_DB_NAME}"')
    url = make_url(server).set(database=_DB_NAME).render_as_string(hide_password=False)
    upgrade(url)
    return url


def _drop_database(server: str) -> None:
    with psycopg.connect(conninfo(server), autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{_DB_NAME}" WITH (FORCE)')
