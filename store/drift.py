"""Drift monitoring's reads and writes: per-window label counts, training references, reports.

Windows are aligned to multiples of their length since the Unix epoch (hourly windows start on
the hour), computed in SQL so one statement buckets a whole range. The statistics themselves are
``streams.drift.stats``; this module only moves numbers in and out of Postgres. The refresh request
an alert raises is a Redis key (:meth:`store.registry.RedisRegistry.request_refresh`).
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy import update as update_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.dimensions import CATEGORY
from store.labels import distribution_snapshot, weak_label_snapshot
from store.models import (
    AdapterVersion,
    DriftReference,
    DriftReport,
    FeedbackEvent,
    PredictionCount,
    SearchQuery,
    TrainingRun,
)

WindowCounts = dict[datetime, dict[str, int]]

PREDICTION_BUCKET_S = 60


def prediction_bucket(ts: datetime, bucket_s: int = PREDICTION_BUCKET_S) -> datetime:
    """The bucket start a prediction made at ``ts`` is counted under (the minute, by default)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % bucket_s, UTC)


def record_prediction_counts(
    session: Session,
    window_start: datetime,
    version: str,
    counts: Mapping[str, int],
    dimension: str = CATEGORY,
) -> None:
    """Add ``counts`` (top label -> how many queries got it) to ``version``'s bucket at ``window_start``.

    Additive and commutative, so workers may flush their in-memory counters whenever they like
    (one statement per flush, several workers at once). ``window_start`` should come from
    :func:`prediction_bucket`; the drift job sums every bucket that starts inside a window.
    """
    rows = [
        {
            "window_start": window_start,
            "version": version,
            "dimension": dimension,
            "label": label,
            "count": int(n),
        }
        for label, n in counts.items()
        if n > 0
    ]
    if not rows:
        return
    stmt = insert(PredictionCount)
    stmt = stmt.on_conflict_do_update(
        index_elements=[
            PredictionCount.window_start,
            PredictionCount.version,
            PredictionCount.dimension,
            PredictionCount.label,
        ],
        set_={"count": PredictionCount.count + stmt.excluded["count"]},
    )
    session.execute(stmt, rows)


# The top voted label of each search whose votes arrived in the window: one "new weak label" per
# labelled search. Counting searches, not events, keeps one enthusiastic shopper (five clicks) from
# weighing five times.
_WEAK_WINDOWS_SQL = text(
    """
    WITH per AS (
        SELECT floor(extract(epoch FROM ts) / :w)::bigint AS bucket, query_id, label, sum(weight) AS votes
          FROM feedback_events
         WHERE status = 'voted' AND ts >= :since AND ts < :until AND label IS NOT NULL
         GROUP BY 1, 2, 3
    ), top AS (
        SELECT DISTINCT ON (bucket, query_id) bucket, label FROM per
         ORDER BY bucket, query_id, votes DESC, label
    )
    SELECT bucket, label, count(*) FROM top GROUP BY bucket, label
    """
)

_PREDICTION_WINDOWS_SQL = text(
    """
    SELECT floor(extract(epoch FROM window_start) / :w)::bigint AS bucket, label, sum(count)
      FROM prediction_counts
     WHERE window_start >= :since AND window_start < :until AND dimension = :dimension
     GROUP BY 1, 2
    """
)

_VOLUME_SQL = text(
    """
    SELECT floor(extract(epoch FROM ts) / :w)::bigint AS bucket, 'searches', count(*)
      FROM search_queries WHERE ts >= :since AND ts < :until GROUP BY 1
    UNION ALL
    SELECT floor(extract(epoch FROM ts) / :w)::bigint AS bucket, 'feedback', count(*)
      FROM feedback_events WHERE ts >= :since AND ts < :until GROUP BY 1
    """
)


def _bucketed(
    session: Session, sql: Any, since: datetime, until: datetime, window_s: int, **params: Any
) -> WindowCounts:
    out: WindowCounts = defaultdict(dict)
    for bucket, key, n in session.execute(sql, {"w": window_s, "since": since, "until": until, **params}):
        out[datetime.fromtimestamp(int(bucket) * window_s, UTC)][str(key)] = int(n)
    return dict(out)


def weak_label_window_counts(
    session: Session, *, since: datetime, until: datetime, window_s: int
) -> WindowCounts:
    """Window start -> {label: labelled searches} for the votes that arrived in ``[since, until)``."""
    return _bucketed(session, _WEAK_WINDOWS_SQL, since, until, window_s)


def prediction_window_counts(
    session: Session, *, since: datetime, until: datetime, window_s: int, dimension: str = CATEGORY
) -> WindowCounts:
    """Window start -> {label: predictions} of one ``dimension``'s head, every served version summed."""
    return _bucketed(session, _PREDICTION_WINDOWS_SQL, since, until, window_s, dimension=dimension)


def volume_window_counts(
    session: Session, *, since: datetime, until: datetime, window_s: int
) -> WindowCounts:
    """Window start -> {"searches": n, "feedback": n} by event time."""
    return _bucketed(session, _VOLUME_SQL, since, until, window_s)


def newest_vote_ts(session: Session) -> datetime | None:
    """When the newest voted feedback happened: the "now" of an event-time clock."""
    return session.scalar(select(func.max(FeedbackEvent.ts)).where(FeedbackEvent.status == "voted"))


def newest_prediction_bucket(session: Session) -> datetime | None:
    return session.scalar(select(func.max(PredictionCount.window_start)))


# --------------------------------------------------------------------------- training references


def training_reference(session: Session, version: str) -> DriftReference | None:
    """The frozen training label distribution of ``version``, computing and storing it on first use.

    ``None`` when the version has no recorded training run (e.g. promoted from elsewhere).
    Counts are *searches*, like the windows': each snapshot query weighs as often as it was
    searched (before the run started), so head queries count as much as they do in traffic.
    The snapshot is re-read from the source the run recorded (``label_distributions`` or the
    raw ``weak_labels`` vote) with the run's own thresholds; if labels were re-aggregated between
    training and this first look, the reference reflects the newer labels (``source`` says when).
    """
    existing = session.get(DriftReference, version)
    if existing is not None:
        return existing
    row = session.get(AdapterVersion, version)
    run = session.get(TrainingRun, row.training_run_id) if row and row.training_run_id else None
    if run is None:
        return None
    snap, params = dict(run.snapshot or {}), dict(run.params or {})
    min_conf = float(snap.get("min_confidence", params.get("min_confidence", 0.0)))
    if snap.get("source") == "weak_labels":
        rows = weak_label_snapshot(
            session,
            min_votes=float(snap.get("min_votes", params.get("min_votes", 0.0))),
            min_confidence=min_conf,
        )
    else:
        rows = distribution_snapshot(session, min_confidence=min_conf)
    by_query = {r.norm_text: r.label for r in rows}
    searches = session.execute(
        select(SearchQuery.norm_text, func.count())
        .where(SearchQuery.ts <= run.started_at)
        .group_by(SearchQuery.norm_text)
    )
    counts: dict[str, int] = defaultdict(int)
    for norm, n in searches:
        label = by_query.get(norm)
        if label is not None:
            counts[label] += int(n)
    if not counts:  # searches stamped after the run (replayed history): weigh each query once
        for label in by_query.values():
            counts[label] += 1
    frozen = datetime.now(UTC).isoformat(timespec="seconds")
    source = (
        f"{snap.get('source', 'label_distributions')} of run {run.id}, searches up to "
        f"{run.started_at.isoformat(timespec='seconds')}, frozen {frozen}"
    )
    ref = DriftReference(version=version, source=source, counts=dict(counts))
    session.add(ref)
    session.flush()
    return ref


# --------------------------------------------------------------------------- reports

_REPORT_FIELDS = (
    "stream",
    "reference",
    "window_start",
    "window_end",
    "version",
    "n",
    "n_reference",
    "js",
    "psi",
    "hellinger",
    "linf",
    "p_value",
    "status",
    "alert",
    "new_labels",
    "vanished_labels",
    "reasons",
    "details",
)


def upsert_drift_reports(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Store (or recompute) reports; returns (position in ``rows``, report id) of each row that
    alerts *for the first time*.

    A window is recomputed by every check that still looks at it (late votes move it), but an
    alert is raised once per (stream, reference, window): the first time it crosses a threshold
    the row gets ``alerted_at`` and later checks leave that alone.
    """
    new_alerts: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        values = {k: row[k] for k in _REPORT_FIELDS}
        ins = insert(DriftReport).values(**values, computed_at=func.now())
        update: dict[str, Any] = {
            k: ins.excluded[k] for k in _REPORT_FIELDS if k not in ("stream", "reference")
        }
        update["computed_at"] = func.now()
        stmt = ins.on_conflict_do_update(constraint="uq_drift_reports_window", set_=update).returning(
            DriftReport.id, DriftReport.alerted_at
        )
        report_id, alerted_at = session.execute(stmt).one()
        if row["alert"] and alerted_at is None:
            session.execute(
                update_(DriftReport).where(DriftReport.id == report_id).values(alerted_at=func.now())
            )
            new_alerts.append((i, int(report_id)))
    return new_alerts


def drift_reports(
    session: Session, *, since: datetime | None = None, limit: int = 2000, window_s: int | None = None
) -> list[DriftReport]:
    """Reports, oldest window first (the latest ``limit``); ``window_s`` keeps one window length."""
    stmt = select(DriftReport)
    if since is not None:
        stmt = stmt.where(DriftReport.window_end > since)
    if window_s is not None:
        stmt = stmt.where(
            func.extract("epoch", DriftReport.window_end - DriftReport.window_start) == window_s
        )
    rows = session.scalars(stmt.order_by(DriftReport.window_end.desc(), DriftReport.id.desc()).limit(limit))
    return sorted(rows, key=lambda r: (r.window_end, r.stream, r.reference))


def latest_window_s(session: Session) -> int | None:
    """The window length of the newest report (what the dashboard shows by default)."""
    row = session.execute(
        select(DriftReport.window_start, DriftReport.window_end).order_by(DriftReport.id.desc()).limit(1)
    ).first()
    return None if row is None else int((row[1] - row[0]).total_seconds())


def alert_counts(session: Session) -> dict[tuple[str, str], int]:
    """(stream, reference) -> alerts ever raised: a monotonic counter for Prometheus."""
    stmt = (
        select(DriftReport.stream, DriftReport.reference, func.count())
        .where(DriftReport.alerted_at.is_not(None))
        .group_by(DriftReport.stream, DriftReport.reference)
    )
    return {(s, r): int(n) for s, r, n in session.execute(stmt)}
