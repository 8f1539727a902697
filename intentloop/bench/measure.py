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
SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms)
  FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts)::float8 * 1000 AS ms
          FROM feedback_events WHERE ts >= %s AND status = 'voted') AS l
"""
_COMMITTED_BETWEEN_SQL = (
    "SELECT count(*) FROM ("
    + " UNION ALL ".join(f"SELECT pg_xact_commit_timestamp(xmin) AS t FROM {t}" for t in INGEST_TABLES)
    + ") c WHERE c.t >= to_timestamp(%s) AND c.t < to_timestamp(%s)"
)
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


@dataclass(frozen=True)
class Latency:
    """Label latency over the voted feedback of a phase: vote commit time - send stamp, in ms."""

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def label_latency(pg: psycopg.Connection, since: datetime) -> Latency:
    """Over voted feedback stamped at or after ``since``."""
    row = pg.execute(_LATENCY_SQL, (since,)).fetchone()
    if row is None or not row[0]:
        return Latency(0, 0.0, 0.0, 0.0, 0.0)
    p50, p95, p99 = (float(v) for v in row[1])
    return Latency(int(row[0]), p50, p95, p99, float(row[2]))


def committed_between(pg: psycopg.Connection, t0: float, t1: float) -> int:
    """Stored rows whose current version committed in ``[t0, t1)`` (epoch seconds)."""
    row = pg.execute(_COMMITTED_BETWEEN_SQL, (t0, t1)).fetchone()
    return int(row[0]) if row else 0


class MachineCpu:
    """Busy cores of the whole machine between :meth:`start` and :meth:`stop`: the bench's own
    processes, the servers and anything else running (on a shared machine, other people's work)."""

    def __init__(self) -> None:
        self._t0 = psutil.cpu_times()
        self._w0 = time.monotonic()

    def busy_cores(self) -> float:
        t1, wall = psutil.cpu_times(), time.monotonic() - self._w0
        idle = (t1.idle + getattr(t1, "iowait", 0.0)) - (self._t0.idle + getattr(self._t0, "iowait", 0.0))
        return round(max(0.0, psutil.cpu_count() - idle / wall), 2) if wall > 0 else 0.0


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
        self.started = self.finished = 0.0  # epoch seconds of the first and the last send
        self.cpu_s = 0.0  # the producer process's own CPU time (user + system) while sending
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

    def done(self) -> bool:
        """Whether every event was sent; raises at once if the producer failed (no waiting for rows
        that will never come)."""
        if self.is_alive():
            return False
        self.join(timeout_s=5)
        if self.error is not None:
            raise IntentloopError(f"paced producer failed: {self.error}") from self.error
        return True

    def join(self, timeout_s: float = 60) -> None:
        if self._proc is None or self._result is None:
            return
        if self._result.poll(timeout_s):
            ok, value = self._result.recv()
            if ok:
                self.started, self.finished, self.cpu_s = value
            else:
                self.error = IntentloopError(str(value))
        else:
            self.error = IntentloopError("the paced producer did not report back")
        self._proc.join(timeout_s)
        self._result.close()
        self._result = None  # joined: a second join returns at once

    @property
    def elapsed_s(self) -> float:
        return self.finished - self.started

    @property
    def achieved_rate(self) -> float:
        return len(self.records) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_percent(self) -> float:
        """The producer's CPU use while sending (100 = one core): what it took from the worker's machine."""
        return round(100 * self.cpu_s / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0


def _paced_child(p: PacedProducer, out: Connection) -> None:
    try:
        out.send((True, asyncio.run(_paced_send(p.bootstrap, p.records, p.rate))))
    except BaseException as exc:
        out.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()
        os._exit(0)


async def _paced_send(
    bootstrap: str, records: list[tuple[str, str, bytes]], rate: float
) -> tuple[float, float, float]:
    """Batches built by hand (``create_batch``), partitioned like the default partitioner would.

    One ``send()`` per event costs ~20 us of Python; at the latency phase's rate that alone would
    take half a core from the machine the worker is measured on. Returns the epoch seconds of the
    first and last send and the CPU seconds this process spent in between.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024)
    await producer.start()
    try:
        partitions = {t: sorted(await producer.partitions_for(t)) for t in {r[0] for r in records}}
        partitioner = DefaultPartitioner()
        t0, sent, n = time.monotonic(), 0, len(records)
        epoch0, cpu0 = time.time(), time.process_time()
        while sent < n:
            due = min(n, int((time.monotonic() - t0) * rate) + 1)
            now = datetime.now(UTC)
            stamp = b'"timestamp":"%s"' % now.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            ms = int(now.timestamp() * 1000)
            batches: dict[tuple[str, int], Any] = {}
            full: list[tuple[tuple[str, int], Any]] = []
            for topic, key, raw in records[sent:due]:
                k = key.encode()
                at = (topic, partitioner(k, partitions[topic], partitions[topic]))
                value = raw.replace(SENTINEL, stamp, 1)
                batch = batches.get(at)
                if batch is not None and batch.append(timestamp=ms, key=k, value=value) is not None:
                    continue
                if batch is not None:  # full (append returned None): it goes as it is
                    full.append((at, batch))
                batch = batches[at] = producer.create_batch()
                if batch.append(timestamp=ms, key=k, value=value) is None:
                    raise IntentloopError(f"an event of {len(value)} bytes does not fit a producer batch")
            acks = []
            for (topic, part), batch in [*full, *batches.items()]:
                batch.close()
                acks.append(await producer.send_batch(batch, topic, partition=part))
            await asyncio.gather(*acks)
            sent = due
            await asyncio.sleep(0.005)
        return epoch0, time.time(), time.process_time() - cpu0
    finally:
        await producer.stop()
