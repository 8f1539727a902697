"""Served predictions counted per minute and version, flushed to Postgres for label drift.

The drift job (``streams.drift``) compares the label shares the model *answers* with those of the
champion's training data and of the previous window; that needs what every worker served. Counting
in memory costs the request path one dictionary update per micro-batch; the alias watcher flushes
the counts with one additive upsert (``store.drift.record_prediction_counts``) each interval, so
several workers may flush at once. A flush that fails (Postgres restarting) puts its counts back
and the next one carries them: nothing is dropped, only delayed.
"""

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from store.db import Database
from store.dimensions import CATEGORY
from store.drift import prediction_bucket, record_prediction_counts

Counts = dict[tuple[datetime, str, str], Counter[str]]  # (bucket, version, dimension) -> label counts


class PredictionTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counts = {}

    def add(
        self, version: str, labels: Iterable[str], at: datetime | None = None, dimension: str = CATEGORY
    ) -> None:
        """Count each top label in ``labels`` as answered by ``version``'s ``dimension`` head at
        ``at`` (now)."""
        key = (prediction_bucket(at or datetime.now(UTC)), version, dimension)
        batch = Counter(labels)
        with self._lock:
            self._counts.setdefault(key, Counter()).update(batch)

    def pending(self) -> int:
        with self._lock:
            return sum(c.total() for c in self._counts.values())

    def flush(self, db: Database) -> int:
        """Write every pending count in one transaction; returns how many predictions it wrote."""
        with self._lock:
            drained, self._counts = self._counts, {}
        if not drained:
            return 0
        try:
            with db.session() as session:
                for (bucket, version, dimension), counts in drained.items():
                    record_prediction_counts(session, bucket, version, counts, dimension)
        except BaseException:
            with self._lock:
                for key, counts in drained.items():
                    self._counts.setdefault(key, Counter()).update(counts)
            raise
        return sum(c.total() for c in drained.values())
