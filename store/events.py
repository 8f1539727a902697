"""The ingestion write path: one transaction per batch, idempotent by event id.

At-least-once delivery means any batch may arrive again after a crash. Every insert is
``ON CONFLICT DO NOTHING`` and votes are added only by the statement that moves a feedback row out
of ``pending``, which happens once per event id, so a redelivered batch changes nothing.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.models import DeadLetter, FeedbackEvent, SearchQuery, WeakLabel

# Resolves pending feedback whose query is now known: decides its status, then adds its vote.
# ``weight = 0`` means no labeling function fired. Runs for the query ids a batch touched.
# The UPDATE finds its rows by primary key only: ``todo`` locked them FOR UPDATE, which re-checks
# ``status = 'pending'`` against any concurrent commit, so they are still pending. Repeating that
# filter in the UPDATE let the planner (which believes the partial pending index holds ~1 row, as it
# did at the last ANALYZE) scan every pending row for every todo row: 12M comparisons and 8 s for a
# batch of 3k, a minute at times, seen as label latency in `bench ingest` (issue 17).
_RESOLVE_SQL = text(
    """
    WITH todo AS (
        SELECT f.event_id, q.norm_text, c.label, c.product_id AS known
          FROM feedback_events f
          JOIN search_queries q ON q.query_id = f.query_id
          LEFT JOIN catalog c ON c.product_id = f.product_id
         WHERE f.status = 'pending' AND f.query_id = ANY(:query_ids)
           FOR UPDATE OF f
    ), resolved AS (
        UPDATE feedback_events f
           SET label = todo.label,
               status = CASE WHEN todo.known IS NULL THEN 'unknown_product'
                             WHEN f.weight = 0 OR todo.label IS NULL THEN 'no_vote'
                             ELSE 'voted' END
          FROM todo
         WHERE f.event_id = todo.event_id
     RETURNING todo.norm_text, f.label, f.weight, f.ts, f.status
    ), agg AS (
        SELECT norm_text, label, sum(weight) AS votes, count(*) AS events, max(ts) AS last_ts
          FROM resolved WHERE status = 'voted' GROUP BY norm_text, label
    )
    INSERT INTO weak_labels (norm_text, label, votes, events, last_ts)
    SELECT norm_text, label, votes, events, last_ts FROM agg
    ON CONFLICT (norm_text, label) DO UPDATE
       SET votes = weak_labels.votes + excluded.votes,
           events = weak_labels.events + excluded.events,
           last_ts = greatest(weak_labels.last_ts, excluded.last_ts)
    """
)


# Batches are COPYed (binary) into per-connection temp tables, then moved into the real tables by
# one INSERT ... SELECT each: COPY is the fastest way into Postgres, and the INSERT keeps what COPY
# cannot do (ON CONFLICT for idempotence, the join to label, the vote upsert). Binding arrays
# instead cost 17 us/event of client CPU in psycopg's array quoting; COPY costs about 2.
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_queries (query_id text, session_id text, ts timestamptz,"
    " text text, norm_text text, locale text, shown text) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_feedback (event_id text, query_id text, ts timestamptz,"
    " type text, product_id text, position int, dwell_ms int, weight float8) ON COMMIT DELETE ROWS",
)
_QUERY_COLUMNS = ("query_id", "session_id", "ts", "text", "norm_text", "locale", "shown")
_QUERY_TYPES = ("text", "text", "timestamptz", "text", "text", "text", "text")
_FEEDBACK_COLUMNS = ("event_id", "query_id", "ts", "type", "product_id", "position", "dwell_ms", "weight")
_FEEDBACK_TYPES = ("text", "text", "timestamptz", "text", "text", "int4", "int4", "float8")

_INSERT_QUERIES_SQL = text(
    """
    INSERT INTO search_queries (query_id, session_id, ts, text, norm_text, locale, shown)
    SELECT query_id, session_id, ts, text, norm_text, locale,
           ARRAY(SELECT jsonb_array_elements_text(shown::jsonb))
      FROM stage_queries
    ON CONFLICT (query_id) DO NOTHING
    """
)
# Feedback whose query is already stored (the usual case) is labelled on insert and its votes
# added in the same statement; only feedback that outran its query is stored as ``pending``.
_INSERT_FEEDBACK_SQL = text(
    """
    WITH ins AS (
        INSERT INTO feedback_events
               (event_id, query_id, ts, type, product_id, position, dwell_ms, weight, status, label)
        SELECT u.event_id, u.query_id, u.ts, u.type, u.product_id, u.position, u.dwell_ms, u.weight,
               CASE WHEN sq.query_id IS NULL THEN 'pending'
                    WHEN c.product_id IS NULL THEN 'unknown_product'
                    WHEN u.weight = 0 OR c.label IS NULL THEN 'no_vote'
                    ELSE 'voted' END,
               CASE WHEN sq.query_id IS NULL THEN NULL ELSE c.label END
          FROM stage_feedback u
          LEFT JOIN search_queries sq ON sq.query_id = u.query_id
          LEFT JOIN catalog c ON c.product_id = u.product_id
        ON CONFLICT (event_id) DO NOTHING
        RETURNING query_id, status, label, weight, ts
    ), agg AS (
        SELECT sq.norm_text, ins.label, sum(ins.weight) AS votes, count(*) AS events, max(ins.ts) AS last_ts
          FROM ins JOIN search_queries sq ON sq.query_id = ins.query_id
         WHERE ins.status = 'voted' GROUP BY sq.norm_text, ins.label
    ), up AS (
        INSERT INTO weak_labels (norm_text, label, votes, events, last_ts)
        SELECT norm_text, label, votes, events, last_ts FROM agg
        ON CONFLICT (norm_text, label) DO UPDATE
           SET votes = weak_labels.votes + excluded.votes,
               events = weak_labels.events + excluded.events,
               last_ts = greatest(weak_labels.last_ts, excluded.last_ts)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up)
    """
)
# The staged queries' pending feedback (feedback that outran them) can be labelled now.
_RESOLVE_STAGED_SQL = text(
    _RESOLVE_SQL.text.replace(
        "f.query_id = ANY(:query_ids)", "f.query_id IN (SELECT query_id FROM stage_queries)"
    )
)


@dataclass(frozen=True)
class BatchCounts:
    """What one batch changed (redelivered rows count zero)."""

    queries: int
    feedback: int
    dead_letters: int


def write_batch(
    session: Session,
    queries: Sequence[dict[str, Any]],
    feedback: Sequence[dict[str, Any]],
    dead_letters: Sequence[dict[str, Any]] = (),
) -> BatchCounts:
    """Store a batch of validated rows and fold new feedback into weak labels, all or nothing.

    Rows are dicts of the ``search_queries`` / ``feedback_events`` / ``dead_letters`` columns;
    feedback rows carry the labeling functions' ``weight`` already (store knows no labeling logic).
    """
    n_q = _insert_queries(session, queries)
    n_f = _insert_feedback(session, feedback)
    n_d = _insert_new(session, DeadLetter, dead_letters, DeadLetter.id, ["topic", "partition", "offset"])
    if queries:
        session.execute(_RESOLVE_STAGED_SQL)
    return BatchCounts(queries=n_q, feedback=n_f, dead_letters=n_d)


def _copy_stage(
    session: Session, table: str, columns: Sequence[str], types: Sequence[str], rows: Any
) -> None:
    """Binary COPY into a temp staging table of this connection (created on its first batch)."""
    conn = session.connection()
    if not conn.info.get("ingest_stage"):
        for ddl in _STAGE_DDL:
            conn.exec_driver_sql(ddl)
        conn.info["ingest_stage"] = True
    raw = conn.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.set_types(types)
        for row in rows:
            cp.write_row(row)


def _insert_queries(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dump = json.dumps  # shown goes in as JSON text: text[][] cannot be ragged, and arrays quote slowly
    staged = (
        (r["query_id"], r["session_id"], r["ts"], r["text"], r["norm_text"], r["locale"], dump(r["shown"]))
        for r in rows
    )
    _copy_stage(session, "stage_queries", _QUERY_COLUMNS, _QUERY_TYPES, staged)
    result: CursorResult[Any] = session.execute(_INSERT_QUERIES_SQL)  # type: ignore[assignment]
    return result.rowcount


def _insert_feedback(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    if not rows:
        return 0
    staged = (
        (
            r["event_id"],
            r["query_id"],
            r["ts"],
            r["type"],
            r["product_id"],
            r["position"],
            r["dwell_ms"],
            float(r["weight"]),
        )
        for r in rows
    )
    _copy_stage(session, "stage_feedback", _FEEDBACK_COLUMNS, _FEEDBACK_TYPES, staged)
    return int(session.execute(_INSERT_FEEDBACK_SQL).one()[0])


def _insert_new(
    session: Session,
    model: type[Any],
    rows: Sequence[dict[str, Any]],
    returning: Any,
    conflict_cols: list[str] | None = None,
) -> int:
    """Insert what is not there yet; returns how many rows were new.

    Core, not ORM, execution: the ORM's bulk path with RETURNING runs one statement per row,
    while Core's "insertmanyvalues" sends a thousand rows per statement.
    """
    if not rows:
        return 0
    table = model.__table__
    stmt = insert(table).on_conflict_do_nothing(index_elements=conflict_cols).returning(returning)
    return len(session.connection().execute(stmt, list(rows)).all())


def resolve_all_pending(session: Session) -> int:
    """Sweep: resolve every pending event whose query exists (covers cross-worker races)."""
    ids = session.scalars(
        select(FeedbackEvent.query_id).where(FeedbackEvent.status == "pending").distinct()
    ).all()
    if ids:
        session.execute(_RESOLVE_SQL, {"query_ids": list(ids)})
    return len(ids)


def expire_orphans(session: Session, *, older_than_s: float) -> list[tuple[str, str]]:
    """Give up on feedback whose query never arrived: ``pending`` -> ``unknown_query``.

    Returns ``(event_id, query_id)`` of each event given up on, for the dead-letter topic.
    """
    rows = session.execute(
        text(
            "UPDATE feedback_events SET status = 'unknown_query' WHERE status = 'pending' "
            "AND ingested_at < now() - make_interval(secs => :age) RETURNING event_id, query_id"
        ),
        {"age": older_than_s},
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


@dataclass(frozen=True)
class IngestStats:
    """Counts for the summary and dashboards."""

    queries: int
    feedback_by_status: dict[str, int]
    dead_letters: int
    weak_label_queries: int
    last_event_ts: datetime | None

    @property
    def feedback(self) -> int:
        return sum(self.feedback_by_status.values())


def ingest_stats(session: Session) -> IngestStats:
    by_status = dict(
        session.execute(select(FeedbackEvent.status, func.count()).group_by(FeedbackEvent.status)).all()
    )
    return IngestStats(
        queries=session.scalar(select(func.count()).select_from(SearchQuery)) or 0,
        feedback_by_status={str(k): int(v) for k, v in by_status.items()},
        dead_letters=session.scalar(select(func.count()).select_from(DeadLetter)) or 0,
        weak_label_queries=session.scalar(select(func.count(func.distinct(WeakLabel.norm_text)))) or 0,
        last_event_ts=session.scalar(select(func.max(FeedbackEvent.ts))),
    )
