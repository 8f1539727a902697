"""Training-run bookkeeping beyond start/finish: the one-trainer lock, dead runs, resumable runs.

**The lock.** Only one training may run at a time (two would race for the artifact store, the GPU
and the champion). It is a Postgres *session* advisory lock taken with ``pg_try_advisory_lock`` on
a connection of its own: Postgres drops it the moment that session ends, so a trainer killed with
``kill -9`` (or a machine that vanished) never leaves a stale lock behind, unlike a lock file or a
Redis key with a guessed TTL. Advisory locks are per database, so every deployment (and every test
database) has its own.

**Dead runs.** A run row still ``running`` while nobody holds the lock belongs to a process that
died; the next lock holder marks it ``interrupted`` (it may be resumed from its checkpoint).
"""

import hashlib
import os
import socket
from datetime import datetime
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, select, text, update
from sqlalchemy.orm import Session

from store.db import Database
from store.exceptions import StoreError, TrainingLockedError
from store.models import AdapterVersion, TrainingRun

# One fixed 64-bit key ("intentloop.training"), shown by pg_locks as classid (high) / objid (low).
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"intentloop.training", digest_size=8).digest(), "big", signed=True)
RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
RESUMABLE = (FAILED, INTERRUPTED)

_HOLDER_SQL = text(
    """
    SELECT a.pid, a.application_name, a.client_addr, a.backend_start
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = :classid AND l.objid = :objid AND l.objsubid = 1
    """
)


class TrainingLock:
    """The one-trainer lock (see the module docstring). A context manager; not reentrant."""

    def __init__(self, db: Database, *, owner: str | None = None) -> None:
        self._db = db
        self.owner = owner or f"intentloop-trainer {socket.gethostname()}:{os.getpid()}"
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`TrainingLockedError` at once (a trainer never queues)."""
        if self._conn is not None:
            return
        conn = self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # The holder's name shows in pg_stat_activity, so a refused trainer can say who has it.
            conn.execute(
                text("SELECT set_config('application_name', :name, false)"), {"name": self.owner[:63]}
            )
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar())
            if not got:
                holder = describe_holder(conn)
                raise TrainingLockedError(
                    f"another training run is in progress ({holder}); only one trains at a time — "
                    "try again when it finishes (a killed trainer's lock is released by Postgres at once)"
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def release(self) -> None:
        """Unlock and close the session (closing alone would release it too)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        finally:
            conn.invalidate()  # never hand a session that held the lock back to the pool
            conn.close()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def describe_holder(conn: Connection) -> str:
    """Who holds the training lock: client name, Postgres backend pid and since when."""
    key = LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(_HOLDER_SQL, {"classid": key >> 32, "objid": key & 0xFFFFFFFF}).first()
    if row is None:
        return "holder unknown, it may just have finished"
    pid, name, addr, since = row
    where = f" from {addr}" if addr else ""
    return (
        f"held by {name or 'an unnamed client'}{where}, Postgres backend {pid}, "
        f"connected since {since:%Y-%m-%d %H:%M:%S%z}"
    )


def mark_dead_runs(session: Session) -> list[int]:
    """Runs left ``running`` by a dead trainer become ``interrupted``. Call only with the lock held
    (then no live trainer can own a running row)."""
    stmt = (
        update(TrainingRun)
        .where(TrainingRun.status == RUNNING)
        .values(
            status=INTERRUPTED,
            finished_at=text("now()"),
            error="the trainer process died (found running while no trainer held the lock)",
        )
        .returning(TrainingRun.id)
    )
    return [int(i) for i in session.scalars(stmt)]


def latest_run(session: Session) -> TrainingRun | None:
    return session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1)).first()


def reopen_run(session: Session, run_id: int, *, trigger: str | None = None) -> TrainingRun:
    """Mark an interrupted or failed run ``running`` again (it is being resumed)."""
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise StoreError(f"no training run {run_id}")
    if run.status not in RESUMABLE:
        raise StoreError(f"training run {run_id} is {run.status}: only failed or interrupted runs resume")
    run.status, run.finished_at, run.error = RUNNING, None, None
    if trigger is not None:
        run.trigger = trigger[:32]
    return run


def run_of_version(session: Session, version: str) -> TrainingRun | None:
    """The training run that produced ``version`` (None for adapters made elsewhere)."""
    stmt = (
        select(TrainingRun)
        .join(AdapterVersion, AdapterVersion.training_run_id == TrainingRun.id)
        .where(AdapterVersion.version == version)
    )
    return session.scalars(stmt).first()


def window_end_of(run: TrainingRun | None) -> datetime | None:
    """The newest label evidence ``run`` trained on (its snapshot's ``window.end``), if recorded."""
    if run is None:
        return None
    end = (run.snapshot or {}).get("window", {}).get("end")
    return datetime.fromisoformat(end) if isinstance(end, str) else None
