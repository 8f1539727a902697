"""Keeps a worker on the promoted versions: pub/sub hints plus periodic reconciliation.

A missed message costs at most one reconcile interval; a Redis outage costs nothing but
staleness (the worker keeps serving what it has and catches up when Redis is back). Every alias
the worker serves (champion and canary of each market) is read in one round trip, so a worker never
acts on a half-read registry.
"""

import contextlib
import logging
import threading
import time
from typing import Any

from serving.exceptions import AdapterRefusedError
from serving.host import ModelHost
from store.db import Database
from store.exceptions import StoreUnavailableError
from store.registry import RedisRegistry
from store.versions import reconcile_aliases

log = logging.getLogger(__name__)

# How long a stopping worker waits for the watcher's last flush of prediction counts: part of the
# shutdown budget that Kubernetes' grace period and Compose's stop_grace_period must cover.
FINAL_FLUSH_TIMEOUT_S = 10.0


class AliasWatcher(threading.Thread):
    def __init__(
        self,
        host: ModelHost,
        db: Database,
        registry: RedisRegistry,
        *,
        worker_id: str,
        interval_s: float,
        refused_retry_s: float = 60.0,
    ) -> None:
        super().__init__(name="alias-watcher", daemon=True)
        self._host = host
        self._db = db
        self._registry = registry
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._refused_retry_s = refused_retry_s
        self._stop_event = threading.Event()
        self._poke = threading.Event()
        self._pubsub: Any = None
        self.reconciles = 0

    def reconcile(self) -> None:
        """Point every alias at its registry version (refused versions wait ``refused_retry_s``)."""
        targets = reconcile_aliases(self._db, self._registry, self._host.aliases)
        for alias, target in targets.items():
            refused = self._host.refused.get(target) if target is not None else None
            if refused is not None and time.time() - refused.at < self._refused_retry_s:
                continue
            # A refusal is logged and counted by the host; the old version keeps serving.
            with contextlib.suppress(AdapterRefusedError):
                self._host.assign(alias, target)
        self.reconciles += 1
        self._registry.report_worker(
            self._worker_id,
            {"version": self._host.version(), "aliases": self._host.served(), "at": time.time()},
        )

    def poke(self) -> None:
        """Reconcile now (after this worker moved an alias itself)."""
        self._poke.set()

    def flush_counts(self) -> None:
        """Hand the served-prediction counts to Postgres; kept for the next try if it is down."""
        try:
            self._host.tally.flush(self._db)
        except Exception as exc:
            log.warning("prediction counts not flushed (%s); %d kept", exc, self._host.tally.pending())

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                # The aliases first: a promotion hint is acted on before the counts' Postgres commit,
                # which a disk busy writing artifacts stalled for a second (bench swap, issue 18).
                self.reconcile()
                self.flush_counts()
                self._wait_for_hint()
            except StoreUnavailableError as exc:
                log.warning("registry unreachable (%s); still serving %s", exc, self._host.served())
                self.flush_counts()  # independent of Redis: a registry outage must not hold counts back
                self._close_pubsub()
                self._stop_event.wait(self._interval_s)
            except Exception:
                log.exception("watcher error; still serving %s", self._host.served())
                self.flush_counts()
                self._close_pubsub()
                self._stop_event.wait(self._interval_s)
        self._close_pubsub()
        self.flush_counts()  # what was served since the last interval

    def _wait_for_hint(self) -> None:
        """Sleep up to one interval, waking early on a promotion message or a poke."""
        if self._pubsub is None:
            self._pubsub = self._registry.pubsub()
        deadline = time.monotonic() + self._interval_s
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            if self._poke.is_set():
                self._poke.clear()
                return
            try:
                msg = self._pubsub.get_message(timeout=0.1)
            except Exception as exc:
                raise StoreUnavailableError(f"pub/sub lost: {exc}") from exc
            if msg is not None:
                return

    def _close_pubsub(self) -> None:
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            try:
                ps.close()
            except Exception as exc:  # already broken: nothing to release
                log.debug("closing pub/sub: %s", exc)

    def stop(self, timeout_s: float = FINAL_FLUSH_TIMEOUT_S) -> None:
        """Stop and wait for the last flush of the prediction counts."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout_s)
