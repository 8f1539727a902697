"""Keeps a worker on the promoted version: pub/sub hints plus periodic reconciliation.

A missed message costs at most one reconcile interval; a Redis outage costs nothing but
staleness (the worker keeps serving what it has and catches up when Redis is back).
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
from store.versions import CHAMPION, reconcile_alias

log = logging.getLogger(__name__)


class AliasWatcher(threading.Thread):
    def __init__(
        self,
        host: ModelHost,
        db: Database,
        registry: RedisRegistry,
        *,
        worker_id: str,
        interval_s: float,
        alias: str = CHAMPION,
    ) -> None:
        super().__init__(name="alias-watcher", daemon=True)
        self._host = host
        self._db = db
        self._registry = registry
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._alias = alias
        self._stop_event = threading.Event()
        self._pubsub: Any = None

    def reconcile(self) -> None:
        """Load the alias's version if it differs from what is served (refused ones are skipped)."""
        target = reconcile_alias(self._db, self._registry, self._alias)
        if target is not None and target != self._host.version and target not in self._host.refused:
            # A refusal is logged and counted by the host; the old version keeps serving.
            with contextlib.suppress(AdapterRefusedError):
                self._host.load(target)
        self._registry.report_worker(self._worker_id, {"version": self._host.version, "at": time.time()})

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.reconcile()
                self._wait_for_hint()
            except StoreUnavailableError as exc:
                log.warning("registry unreachable (%s); still serving %s", exc, self._host.version)
                self._pubsub = None
                self._stop_event.wait(self._interval_s)
            except Exception:
                log.exception("watcher error; still serving %s", self._host.version)
                self._pubsub = None
                self._stop_event.wait(self._interval_s)

    def _wait_for_hint(self) -> None:
        """Sleep up to one interval, waking early on a promotion message."""
        if self._pubsub is None:
            self._pubsub = self._registry.pubsub()
        deadline = time.monotonic() + self._interval_s
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            try:
                msg = self._pubsub.get_message(timeout=0.2)
            except Exception as exc:
                raise StoreUnavailableError(f"pub/sub lost: {exc}") from exc
            if msg is not None:
                return

    def stop(self) -> None:
        self._stop_event.set()
