"""How the ingest benchmark observes the worker without slowing it down.

Times come from Postgres' own commit timestamps (``track_commit_timestamp``): the commit time of a
row's current version is when it (and the votes written in the same transaction) became visible.
That gives the throughput window (first to last commit) and each event's label latency exactly,
after the fact, with no polling on the hot path. While the worker runs the bench only reads the
cumulative insert counter in ``pg_stat_user_tables`` (no table scans) and the worker's RSS.
"""

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import psutil
import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy.engine import make_url
from tqdm import tqdm

from intentloop.worker_processes import WorkerProcess
from store.exceptions import IntentloopError

INGEST_TABLES = ("search_queries", "feedback_events", "dead_letters")
_INSERTED_SQL = "SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables WHERE relname = ANY(%s)"
_STORED_SQL = "SELECT " + " + ".join(f"(SELECT count(*) FROM {t})" for t in INGEST_TABLES)
_COMMITS_SQL = (
    "WITH c AS ("
    + " UNION ALL ".join(f"SELECT pg_xact_commit_timestamp(xmin) AS t FROM {t}" for t in INGEST_TABLES)
    + "), w AS (SELECT min(t) AS t0, max(t) AS t1 FROM c) "
    "SELECT extract(epoch FROM w.t0)::float8, extract(epoch FROM w.t1)::float8, count(*), "
    "count(*) FILTER (WHERE c.t = w.t0) FROM c, w GROUP BY w.t0, w.t1"
)
# A voted event's current row version was written by the transaction that added its vote.
_LATENCY_SQL = """
SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms)
  FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts)::float8 * 1000 AS ms
          FROM feedback_events WHERE ts >= %s AND status = 'voted') AS l
"""
Sample = tuple[float, int, float, float]
SENTINEL_TS = datetime(1999, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
SENTINEL = b'"timestamp":"1999-01-01T00:00:00.123456Z"'  # how the codec writes SENTINEL_TS


def conninfo(sqlalchemy_url: str) -> str:
    """A libpq URL for psycopg from the project's SQLAlchemy URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def stored_rows(pg: psycopg.Connection) -> int:
    row = pg.execute(_STORED_SQL).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Window:
    """First to last commit of a phase, and how many stored rows it covers."""

    rows: int
    first_commit_rows: int
    t0: float  # epoch seconds
    t1: float

    @property
    def events_per_s(self) -> float:
        """Rows committed after the first commit over the time since it (the join delay is outside)."""
        wall = self.t1 - self.t0
        return (self.rows - self.first_commit_rows) / wall if wall > 0 else 0.0


def commit_window(pg: psycopg.Connection) -> Window:
    row = pg.execute(_COMMITS_SQL).fetchone()
    if row is None or row[0] is None:
        raise IntentloopError("no commit timestamps found: is track_commit_timestamp on?")
    return Window(rows=int(row[2]), first_commit_rows=int(row[3]), t0=float(row[0]), t1=float(row[1]))


def label_latency(pg: psycopg.Connection, since: datetime) -> tuple[int, float, float, float]:
    """``(n, p50_ms, p99_ms, max_ms)`` over voted feedback stamped at or after ``since``."""
    row = pg.execute(_LATENCY_SQL, (since,)).fetchone()
    if row is None or not row[0]:
        return 0, 0.0, 0.0, 0.0
    return int(row[0]), float(row[1][0]), float(row[1][1]), float(row[2])


@dataclass
class Watch:
    """``(monotonic s, rows inserted, worker RSS MB, worker CPU s)`` samples over the whole run."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float:
        return max((s[2] for s in self.samples), default=0.0)

    def until(
        self,
        pg: psycopg.Connection,
        proc: WorkerProcess,
        target: int,
        *,
        start: int = 0,
        desc: str,
        timeout_s: float,
        interval_s: float = 0.5,
        extra: Callable[[], bool] = lambda: True,
    ) -> list[Sample]:
        """Sample until ``target`` rows are stored (and ``extra()``); returns this phase's samples.

        The stats counter can lag up to a few seconds behind the last commit, so once it is
        close an exact ``count(*)`` confirms (cheap enough near the end, too costly to run all along).
        """
        worker = psutil.Process(proc.pid)

        def sample(rows: int) -> None:
            cpu = worker.cpu_times()
            self.samples.append(
                (time.monotonic(), rows, worker.memory_info().rss / 2**20, cpu.user + cpu.system)
            )

        first = len(self.samples)
        deadline = time.monotonic() + timeout_s
        with tqdm(total=target - start, desc=desc, unit="ev", leave=False) as bar:
            while True:
                if not proc.alive():
                    raise IntentloopError(
                        f"the ingest worker exited; log {proc.log_path}:\n{proc.log_tail()}"
                    )
                row = pg.execute(_INSERTED_SQL, (list(INGEST_TABLES),)).fetchone()
                inserted = int(row[0]) if row else 0
                sample(inserted)
                bar.update(min(inserted, target) - start - bar.n)
                every = 4 if inserted >= start + 0.9 * (target - start) else 20
                if len(self.samples) % every == 0 and extra() and stored_rows(pg) >= target:
                    sample(target)
                    return self.samples[first:]
                if time.monotonic() > deadline:
                    raise IntentloopError(f"timed out after {timeout_s:.0f}s in {desc}; log {proc.log_path}")
                time.sleep(interval_s)


def rss_by_progress(samples: list[Sample], start: int, target: int) -> dict[str, float]:
    """Worker RSS when the phase was 10%, 50% and 100% done: flat numbers mean no growth per event."""
    out: dict[str, float] = {}
    for pct in (10, 50, 100):
        at = next((s for s in samples if s[1] - start >= pct / 100 * (target - start)), samples[-1])
        out[f"{pct}%"] = round(at[2], 1)
    return out


def cpu_percent(samples: list[Sample], start: int, target: int) -> float:
    """The worker's CPU use (100 = one core) from 10% to 90% of a phase: steady state, no join or drain."""
    lo = next((s for s in samples if s[1] - start >= 0.1 * (target - start)), samples[0])
    hi = next((s for s in samples if s[1] - start >= 0.9 * (target - start)), samples[-1])
    wall = hi[0] - lo[0]
    return round(100 * (hi[3] - lo[3]) / wall, 1) if wall > 0 else 0.0


class PacedProducer:
    """Sends pre-encoded events at ``rate``/s from a process of its own, stamping each with its send time.

    A separate process because at 20k events/s a producer sharing the bench's interpreter (and
    its GIL with the sampling loop) falls behind and its queueing would count as label latency.
    aiokafka batches in C; events are encoded once with :data:`SENTINEL_TS` and the stamp is a
    byte substitution, so the producer's CPU goes to sending, not to re-serialising models.
    """

    def __init__(self, bootstrap: str, records: list[tuple[str, str, bytes]], rate: float) -> None:
        self.bootstrap, self.records, self.rate = bootstrap, records, rate
        self.elapsed_s = 0.0
        self.error: BaseException | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._result: Connection | None = None

    def start(self) -> None:
        # fork: the child inherits the records instead of unpickling them; it exits with os._exit
        # so none of the parent's inherited connections are closed from the child.
        ctx = multiprocessing.get_context("fork")
        self._result, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_paced_child, args=(self, child_end), name="bench-producer", daemon=True
        )
        self._proc.start()
        child_end.close()

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def join(self, timeout_s: float = 60) -> None:
        if self._proc is None or self._result is None:
            return
        if self._result.poll(timeout_s):
            ok, value = self._result.recv()
            if ok:
                self.elapsed_s = float(value)
            else:
                self.error = IntentloopError(str(value))
        else:
            self.error = IntentloopError("the paced producer did not report back")
        self._proc.join(timeout_s)


def _paced_child(p: PacedProducer, out: Connection) -> None:
    try:
        out.send((True, asyncio.run(_paced_send(p.bootstrap, p.records, p.rate))))
    except BaseException as exc:
        out.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()
        os._exit(0)


async def _paced_send(bootstrap: str, records: list[tuple[str, str, bytes]], rate: float) -> float:
    """Batches built by hand (``create_batch``), partitioned like the default partitioner would.

    One ``send()`` per event costs ~20 us of Python; at the latency phase's rate that alone would
    take half a core from the machine the worker is measured on.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024)
    await producer.start()
    try:
        partitions = {t: sorted(await producer.partitions_for(t)) for t in {r[0] for r in records}}
        partitioner = DefaultPartitioner()
        t0, sent, n = time.monotonic(), 0, len(records)
        while sent < n:
            due = min(n, int((time.monotonic() - t0) * rate) + 1)
            now = datetime.now(UTC)
            stamp = b'"timestamp":"%s"' % now.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            ms = int(now.timestamp() * 1000)
            batches: dict[tuple[str, int], Any] = {}
            for topic, key, raw in records[sent:due]:
                k = key.encode()
                part = partitioner(k, partitions[topic], partitions[topic])
                batch = batches.get((topic, part))
                if batch is None:
                    batch = batches[(topic, part)] = producer.create_batch()
                batch.append(timestamp=ms, key=k, value=raw.replace(SENTINEL, stamp, 1))
            acks = []
            for (topic, part), batch in batches.items():
                batch.close()
                acks.append(await producer.send_batch(batch, topic, partition=part))
            await asyncio.gather(*acks)
            sent = due
            await asyncio.sleep(0.005)
        return time.monotonic() - t0
    finally:
        await producer.stop()
