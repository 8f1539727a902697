"""`intentloop drift check`: compare each window's labels with two references, store, alert.

Per window (``DriftSettings.window_s``) and per stream — the new weak labels (top voted label of
each search whose votes arrived in the window) and the served predictions (summed from the
``prediction_counts`` buckets workers write) — two comparisons:

- against the **champion's training snapshot** (``store.drift.training_reference``): is the
  traffic still what the served model learned from? An alert here is what a refresh fixes;
- against the **previous window**: did something change suddenly (a broken tracking pixel, a
  campaign)? It catches onsets fast but forgets a drift once it is the new normal.

Every comparison is a row in ``drift_reports`` (recomputed while the window is in the lookback,
since late votes move it); a comparison that alerts for the first time is published to the
``ops.alerts`` topic, logged at WARNING, counted in Prometheus, and — with ``refresh_on_alert``
and the training reference — requests a training refresh through Redis.
"""

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.drift import (
    newest_prediction_bucket,
    newest_vote_ts,
    prediction_window_counts,
    training_reference,
    upsert_drift_reports,
    weak_label_window_counts,
)
from store.registry import RedisRegistry
from store.versions import CHAMPION, recorded_alias
from streams.drift.intent_types import help_surges, intent_type_window_counts
from streams.drift.overview import HELP_SURGE_REFERENCE
from streams.drift.settings import DriftSettings
from streams.drift.stats import Comparison, Thresholds, compare

log = logging.getLogger(__name__)

WEAK_LABELS = "weak_labels"
PREDICTIONS = "predictions"
STREAMS = (WEAK_LABELS, PREDICTIONS)
INTENT_TYPES = f"{WEAK_LABELS}/{INTENT_TYPE}"  # each search's top intent-type vote (intent_types.py)
SERVED_INTENT_TYPES = f"{PREDICTIONS}/{INTENT_TYPE}"  # what the intent-type heads answered
TRAINING = "training"
PREVIOUS = "previous_window"
HELP_SURGE = HELP_SURGE_REFERENCE

AlertSink = Callable[[dict[str, Any]], None]
_WindowCounts = dict[datetime, dict[str, int]]  # window start -> {label: count}


@dataclass
class CheckResult:
    """What one check computed: every report row, and the alerts raised for the first time."""

    window_s: int
    since: datetime
    until: datetime
    champion: str | None
    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    refresh_requested: bool = False

    def summary(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for r in self.reports:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        return {
            "window_s": self.window_s,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "champion": self.champion,
            "reports": len(self.reports),
            "by_status": dict(sorted(by_status.items())),
            "alerts": [
                {k: a[k] for k in ("stream", "reference", "window_start", "window_end", "reasons")}
                for a in self.alerts
            ],
            "refresh_requested": self.refresh_requested,
        }


def align(ts: datetime, window_s: int) -> datetime:
    """The start of the window ``ts`` falls in (windows are multiples of ``window_s`` since the epoch)."""
    epoch = math.floor(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_s, UTC)


def _clock_now(db: Database, settings: DriftSettings) -> datetime | None:
    if settings.clock == "wall":
        return datetime.now(UTC)
    with db.session() as session:
        stamps = [t for t in (newest_vote_ts(session), newest_prediction_bucket(session)) if t is not None]
    return max(stamps) if stamps else None


def check_range(
    db: Database, settings: DriftSettings, *, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime] | None:
    """The aligned ``[since, until)`` of complete windows a check evaluates (``None``: no data yet)."""
    w = settings.window_s
    if until is None:
        now = _clock_now(db, settings)
        if now is None:
            return None
        if settings.clock == "events" and settings.settle_s == 0:
            # The data has stopped (a replay, the demo): its last window is as complete as it gets.
            until = align(now, w) + timedelta(seconds=w)
        else:
            # A window is judged once it closed and late votes had ``settle_s`` to arrive.
            until = align(now - timedelta(seconds=settings.settle_s), w)
    else:
        until = align(until, w)
    since = until - timedelta(seconds=w * settings.lookback_windows) if since is None else align(since, w)
    return (since, until) if since < until else None


def run_drift_check(
    db: Database,
    settings: DriftSettings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    sinks: Iterable[AlertSink] = (),
    registry: RedisRegistry | None = None,
    dimensions: Sequence[str] = (CATEGORY,),
) -> CheckResult:
    """Evaluate every complete window in range, store the reports and raise first-time alerts.
    With the intent type in ``dimensions`` its stream is compared too, and help surges alert."""
    w = settings.window_s
    bounds = check_range(db, settings, since=since, until=until)
    champion, ref_counts, counts = _read_counts(db, w, bounds)
    if bounds is None:
        return CheckResult(w, datetime.now(UTC), datetime.now(UTC), champion)
    lo, hi = bounds
    result = CheckResult(w, lo, hi, champion)
    result.reports = _compare_windows(counts, ref_counts, lo, hi, w, champion, settings.thresholds())
    if INTENT_TYPE in dimensions:
        result.reports += _intent_type_rows(db, settings, lo, hi, champion)
    with db.session() as session:
        first_time = upsert_drift_reports(session, result.reports)
    result.alerts = [alert_message(result.reports[i], report_id) for i, report_id in first_time]
    _raise(result.alerts, sinks)
    if settings.refresh_on_alert and registry is not None:
        result.refresh_requested = _request_refresh(registry, result.alerts, champion)
    return result


def _read_counts(
    db: Database, w: int, bounds: tuple[datetime, datetime] | None
) -> tuple[str | None, dict[str, int], dict[str, _WindowCounts]]:
    """The champion, its training snapshot's label counts, and each stream's counts per window
    over ``bounds`` and the window before (the first window's "previous window")."""
    with db.session() as session:
        champion = recorded_alias(session, CHAMPION)
        ref = training_reference(session, champion) if champion else None
        ref_counts = {str(k): int(v) for k, v in (ref.counts if ref else {}).items()}
        if bounds is None:
            return champion, ref_counts, {}
        lo, hi = bounds
        first = lo - timedelta(seconds=w)
        counts = {
            WEAK_LABELS: weak_label_window_counts(session, since=first, until=hi, window_s=w),
            PREDICTIONS: prediction_window_counts(session, since=first, until=hi, window_s=w),
        }
    return champion, ref_counts, counts


def _compare_windows(
    counts: dict[str, _WindowCounts],
    ref_counts: dict[str, int],
    lo: datetime,
    hi: datetime,
    w: int,
    champion: str | None,
    thresholds: Thresholds,
    streams: Sequence[str] = STREAMS,
) -> list[dict[str, Any]]:
    """One report row per window with data, stream and reference (the previous window, the
    training snapshot), in window order."""
    rows: list[dict[str, Any]] = []
    start = lo
    while start < hi:
        end = start + timedelta(seconds=w)
        for stream in streams:
            current = counts[stream].get(start)
            if not current:
                continue
            previous = counts[stream].get(start - timedelta(seconds=w))
            if previous:
                rows.append(
                    _row(stream, PREVIOUS, start, end, champion, compare(current, previous, thresholds))
                )
            if ref_counts:
                rows.append(
                    _row(stream, TRAINING, start, end, champion, compare(current, ref_counts, thresholds))
                )
        start = end
    return rows


def _intent_type_rows(
    db: Database, settings: DriftSettings, lo: datetime, hi: datetime, champion: str | None
) -> list[dict[str, Any]]:
    """The intent-type stream against the previous window, and the help-surge check of each
    window against the lookback before it (``streams.drift.intent_types``)."""
    w = settings.window_s
    first = lo - timedelta(seconds=w * settings.lookback_windows)
    counts = intent_type_window_counts(db, since=first, until=hi, window_s=w)
    with db.session() as session:
        served = prediction_window_counts(session, since=first, until=hi, window_s=w, dimension=INTENT_TYPE)
    thresholds = settings.thresholds()
    streams = {INTENT_TYPES: counts, SERVED_INTENT_TYPES: served}
    rows = _compare_windows(streams, {}, lo, hi, w, champion, thresholds, tuple(streams))
    surges = help_surges(
        counts,
        lo,
        hi,
        w,
        thresholds,
        factor=settings.help_surge_factor,
        min_delta=settings.help_surge_min_delta,
        min_searches=settings.help_surge_min_searches,
    )
    for start, c in surges:
        row = _row(INTENT_TYPES, HELP_SURGE, start, start + timedelta(seconds=w), champion, c)
        row["details"]["counts"] = counts.get(start, {})  # the dashboard's intent-type volume
        rows.append(row)
    return rows


def _raise(alerts: list[dict[str, Any]], sinks: Iterable[AlertSink]) -> None:
    """Log each first-time alert at WARNING and hand it to every sink."""
    for alert in alerts:
        log.warning(
            "drift alert: %s vs %s, window %s..%s (n=%d): %s",
            alert["stream"],
            alert["reference"],
            alert["window_start"],
            alert["window_end"],
            alert["n"],
            "; ".join(alert["reasons"]),
        )
        for sink in sinks:
            sink(alert)


def _request_refresh(registry: RedisRegistry, alerts: list[dict[str, Any]], champion: str | None) -> bool:
    """Ask for a training refresh when an alert is against the training snapshot (the newest says why)."""
    wanted = [a for a in alerts if a["reference"] == TRAINING]
    if not wanted:
        return False
    return registry.request_refresh(
        {
            "reason": "drift from the training snapshot: " + "; ".join(wanted[-1]["reasons"]),
            "champion": champion,
            "report_id": wanted[-1]["report_id"],
            "at": datetime.now(UTC).isoformat(),
        },
    )


def alert_message(row: dict[str, Any], report_id: int) -> dict[str, Any]:
    """The JSON published to ``ops.alerts`` (and logged): self-contained for whoever is on call."""
    return {
        "type": "label_drift",
        "report_id": report_id,
        "stream": row["stream"],
        "reference": row["reference"],
        "window_start": row["window_start"].isoformat(),
        "window_end": row["window_end"].isoformat(),
        "champion": row["version"],
        "n": row["n"],
        "n_reference": row["n_reference"],
        "statistics": {k: row[k] for k in ("js", "psi", "hellinger", "linf", "p_value")},
        "new_labels": row["new_labels"],
        "vanished_labels": row["vanished_labels"],
        "top_moves": row["details"]["moves"][:5],
        "reasons": row["reasons"],
        "raised_at": datetime.now(UTC).isoformat(),
    }


def _row(
    stream: str, reference: str, start: datetime, end: datetime, champion: str | None, c: Comparison
) -> dict[str, Any]:
    stats = c.statistics()
    return {
        "stream": stream,
        "reference": reference,
        "window_start": start,
        "window_end": end,
        "version": champion,
        "n": c.n,
        "n_reference": c.n_reference,
        **stats,
        "p_value": None if math.isnan(c.p_value) else c.p_value,
        "status": c.status,
        "alert": c.alert,
        "new_labels": c.new_labels,
        "vanished_labels": c.vanished_labels,
        "reasons": c.reasons,
        "details": {
            "psi_band": c.psi_band,
            "moves": [
                {
                    "label": m.label,
                    "share": round(m.share, 5),
                    "reference_share": round(m.reference_share, 5),
                    "delta": round(m.delta, 5),
                }
                for m in c.moves
            ],
        },
    }


class KafkaAlertSink:
    """Publishes alerts to the ``ops.alerts`` topic, keyed by stream and reference (ordered per pair)."""

    def __init__(self, bootstrap: str) -> None:
        from streams.kafka import EventProducer

        self._producer = EventProducer(bootstrap, linger_ms=0)

    def __call__(self, alert: dict[str, Any]) -> None:
        from streams import topics

        key = f"{alert['stream']}:{alert['reference']}"
        self._producer.send(topics.ALERTS, key, json.dumps(alert, sort_keys=True).encode())

    def close(self) -> None:
        self._producer.close()
