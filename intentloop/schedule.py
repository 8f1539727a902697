"""``intentloop train schedule``: refreshes on a cron expression, on drift, and resumes of dead runs.

Each tick (every ``INTENTLOOP_TRAIN__POLL_S`` seconds, and at each cron fire time) takes the
training lock without waiting; if another trainer holds it, the tick does nothing and whatever was
due stays due. Holding the lock, it does at most one of, in this order:

1. **resume** the latest run if it was *interrupted* (its trainer died or was stopped; a run that
   *failed* with an error is left alone, it would likely fail again) and has not been resumed
   ``MAX_AUTO_RESUMES`` times already;
2. a **drift refresh**, when the Redis key ``<prefix>:refresh:requested`` exists (a JSON object,
   ``{"reason": ..., "at": ...}``, set by the drift job; see docs/training.md); the key is deleted
   when the run starts, so a request made during the run asks for another one;
3. the **cron refresh**, when its fire time has passed (``INTENTLOOP_TRAIN__SCHEDULE``, UTC).

Before a drift or cron refresh the labels are brought up to date with an incremental ``labels
aggregate`` (``INTENTLOOP_TRAIN__AGGREGATE_FIRST``): cheap once its statistics exist, and without it a
deployment whose only scheduled job is this one would train on whatever labels someone last
aggregated by hand. A failed aggregation is logged and the refresh trains on the stored labels.

Every refresh goes through the gate and promotes only a blessed candidate; a failed run is logged,
recorded as failed, and never touches the champion. SIGTERM stops the scheduler: a run in progress
is recorded ``interrupted`` with its checkpoint, and the next scheduler resumes it.
"""

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from croniter import croniter

from intentloop.jobs import runs_dir, train_and_maybe_promote
from intentloop.runtime import Runtime
from store.exceptions import IntentloopError, TrainingLockedError
from store.training import INTERRUPTED, TrainingLock, latest_run, mark_dead_runs
from trainer.snapshot import ROWS_FILE

log = logging.getLogger(__name__)

MAX_AUTO_RESUMES = 2


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``expression`` fires (UTC, timezone-aware)."""
    base = after if after.tzinfo is not None else after.replace(tzinfo=UTC)
    fire: datetime = croniter(expression, base.astimezone(UTC)).get_next(datetime)
    return fire


@dataclass
class TickResult:
    """What one tick did: ``action`` is ``idle``, ``busy`` (lock held elsewhere), ``resume``,
    ``drift`` or ``cron``; ``result`` the train job's JSON, ``error`` when the run failed."""

    action: str
    result: dict[str, Any] | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Scheduler:
    """The refresh loop of one ``intentloop train schedule`` process."""

    def __init__(
        self,
        rt: Runtime,
        *,
        promote: bool = True,
        progress: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.promote = promote
        self.progress = progress
        self._now = now
        self.expression = rt.settings.train.schedule
        self.next_fire = next_fire(self.expression, now())
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _interrupted_run(self) -> int | None:
        """The latest run, if the scheduler should resume it (call with the lock held)."""
        with self.rt.db.session() as session:
            run = latest_run(session)
            if run is None or run.status != INTERRUPTED:
                return None
            resumes = int((run.snapshot or {}).get("resumes", 0))
            run_id = run.id
        if resumes >= MAX_AUTO_RESUMES:
            log.warning("run %d was interrupted after %d resumes: not resuming it again", run_id, resumes)
            return None
        if not (runs_dir(self.rt) / str(run_id) / ROWS_FILE).is_file():
            return None  # died before its snapshot was written: nothing to continue
        return run_id

    def tick(self) -> TickResult:
        """One look at the clock, the refresh key and the last run; at most one training."""
        now = self._now()
        lock = TrainingLock(self.rt.db)
        try:
            lock.acquire()
        except TrainingLockedError as exc:
            log.info("tick skipped: %s", exc)
            return TickResult("busy", detail={"reason": str(exc)})
        try:
            with self.rt.db.session() as session:
                dead = mark_dead_runs(session)
            if dead:
                log.warning("runs %s were left running by a dead trainer: marked interrupted", dead)
            resume = self._interrupted_run()
            request = None if resume is not None else self.rt.registry.pending_refresh()
            kwargs: dict[str, Any]
            if resume is not None:
                action, kwargs = "resume", {"resume": resume, "trigger": "resume"}
            elif request is not None:
                self.rt.registry.clear_refresh()  # claimed: a new request during the run is a new run
                action = "drift"
                kwargs = {"trigger": "drift", "trigger_detail": {"kind": "drift", "request": request}}
            elif now >= self.next_fire:
                action = "cron"
                detail = {"kind": "cron", "schedule": self.expression, "fire": self.next_fire.isoformat()}
                kwargs = {"trigger": "cron", "trigger_detail": detail}
                self.next_fire = next_fire(self.expression, now)
            else:
                return TickResult("idle")
            if action != "resume" and self.rt.settings.train.aggregate_first:
                self.refresh_labels()
            log.info("starting a %s training run", action)
            try:
                result = train_and_maybe_promote(
                    self.rt, promote=self.promote, progress=self.progress, lock=lock, **kwargs
                )
            except Exception as exc:  # recorded as failed by the pipeline; the champion is untouched
                log.exception("%s training run failed", action)
                return TickResult(action, error=f"{type(exc).__name__}: {exc}", detail=kwargs)
            gate = result.get("gate", {})
            log.info(
                "%s run %s: version %s, gate %s, promoted %s",
                action,
                result.get("run_id"),
                result.get("version"),
                "blessed" if gate.get("blessed") else "rejected",
                result.get("promoted"),
            )
            return TickResult(action, result=result, detail=kwargs)
        finally:
            lock.release()

    def refresh_labels(self) -> int | None:
        """An incremental aggregation of every label dimension; its category report id, or None when
        it could not run (nothing to label, the store unreachable): the refresh goes on regardless."""
        from streams.labels_incremental import run_incremental

        try:
            result = run_incremental(
                self.rt.db,
                self.rt.settings.labels,
                dimensions=self.rt.settings.taxonomy.dimensions,
                progress=self.progress,
            )
        except IntentloopError as exc:  # nothing to label, the store unreachable: expected, one line
            log.warning("labels not aggregated before the refresh (%s): training on the stored labels", exc)
            return None
        except Exception:  # anything else must not cost the refresh its claimed request or cron slot
            log.exception("labels not aggregated before the refresh: training on the stored labels")
            return None
        summary = result.summary()
        log.info(
            "labels aggregated before the refresh: %s of %s queries labelled (report %s)",
            summary["labelled"],
            summary["queries"],
            result.report_id,
        )
        return result.report_id

    def run_forever(self) -> None:
        """Tick until :meth:`stop`; sleeps until the next poll or cron fire, whichever is first."""
        poll = self.rt.settings.train.poll_s
        log.info(
            "schedule %r (UTC): next refresh at %s; polling every %.0fs",
            self.expression,
            self.next_fire,
            poll,
        )
        while not self._stop.is_set():
            try:
                outcome = self.tick()
            except Exception:  # Postgres or Redis away: the scheduler outlives outages, retries next poll
                log.exception("tick failed; retrying in %.0fs", poll)
                self._stop.wait(poll)
                continue
            if outcome.action not in ("idle", "busy"):
                continue  # something ran: look again at once (a resume may leave a refresh due)
            wait = min(poll, max(0.0, (self.next_fire - self._now()).total_seconds()))
            self._stop.wait(max(wait, 0.05))


def install_stop_handlers(scheduler: Scheduler) -> None:
    """SIGTERM/SIGINT: stop; a run in progress is interrupted (recorded, checkpoint kept)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        scheduler.stop()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def upcoming(expression: str, count: int, after: datetime | None = None) -> list[datetime]:
    """The next ``count`` fire times of ``expression`` (for ``train schedule --next``)."""
    times: list[datetime] = []
    at = after or datetime.now(UTC)
    for _ in range(count):
        at = next_fire(expression, at)
        times.append(at)
    return times


__all__ = ["Scheduler", "TickResult", "install_stop_handlers", "next_fire", "upcoming"]
