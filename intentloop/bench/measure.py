"""How the ingest benchmark observes the worker without slowing it down.

Times come from Postgres' own commit timestamps (``track_commit_timestamp``): the commit time of a
row's current version is when it (and the votes written in the same transaction) became visible.
That gives the throughput window (first to last commit) and each event's label latency exactly,
after the fact, with no polling on the hot path. While the worker runs the bench only reads the
cumulative insert counter in ``pg_stat_user_tables`` (no table scans) and the worker's RSS.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil
import psycopg
from sqlalchemy.engine import make_url
from tqdm import tqdm

from intentloop.procs import WorkerProcess
from store.exceptions import IntentloopError
from streams.kafka import EventProducer

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


class PacedProducer(threading.Thread):
    """Sends pre-encoded events at ``rate``/s, stamping each with the wall time just before its send.

    Events are encoded once with :data:`SENTINEL_TS` and the stamp is a byte substitution, so the
    producer spends its CPU on sending, not on re-serialising models.
    """

    def __init__(self, bootstrap: str, records: list[tuple[str, str, bytes]], rate: float) -> None:
        super().__init__(name="bench-producer", daemon=True)
        self.bootstrap, self.records, self.rate = bootstrap, records, rate
        self.elapsed_s = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with EventProducer(self.bootstrap, linger_ms=5) as producer:
                t0, sent, n = time.monotonic(), 0, len(self.records)
                while sent < n:
                    due = min(n, int((time.monotonic() - t0) * self.rate) + 1)
                    stamp = b'"timestamp":"%s"' % datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
                    for topic, key, raw in self.records[sent:due]:
                        producer.send(topic, key, raw.replace(SENTINEL, stamp, 1))
                    sent = due
                    time.sleep(0.002)
                self.elapsed_s = time.monotonic() - t0
        except BaseException as exc:  # reported by the bench thread, which owns the error handling
            self.error = exc
