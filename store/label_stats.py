"""Incremental label aggregation's reads and writes: time buckets of searches, their fingerprints,
the per-query statistics folded from them, and which shard folded what.

Searches are grouped into fixed time buckets (``bucket = floor(epoch(ts) / bucket_s)``); a query
belongs to shard ``qhash % n_shards`` where ``qhash`` is the first 32 bits of the md5 of its
normalised text, computed the same way here in SQL and in Python (:func:`query_hash`), so any
process, in any language, assigns a query to the same shard.
"""

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Row, delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.models import LabelFoldRecord, LabelFoldState, LabelStat

# md5 -> its first 8 hex digits as an unsigned 32-bit integer: the shard hash (Python: query_hash)
_QHASH = "('x' || substr(md5({col}), 1, 8))::bit(32)::bigint"
# numeric, not float: exact for microsecond timestamps, so a search's bucket here is the bucket
# whose [start, end) range the Python side reads it by
_BUCKET = "floor(extract(epoch FROM {col}) / CAST(:bucket_s AS numeric))::bigint"


def query_hash(norm_text: str) -> int:
    """The shard hash of a normalised query (the SQL ``_QHASH`` computes the same number)."""
    return int(hashlib.md5(norm_text.encode()).hexdigest()[:8], 16)


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY ``rows`` into ``table`` on the session's connection (inside its transaction): an
    aggregation writes hundreds of thousands of rows, which executemany INSERTs took seconds per
    10,000 of. JSON values go in wrapped in ``psycopg.types.json.Jsonb``."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


# Per bucket from ``since`` on: searches counted and hashed, and their feedback counted and
# hashed. Searches and feedback are only ever added, so any change moves a count.
_FINGERPRINT_SQL = text(
    f"""
    WITH q AS (
        SELECT {_BUCKET.format(col="ts")} AS bucket, count(*) AS n,
               coalesce(sum(hashtext(query_id)::bigint), 0) AS h
          FROM search_queries WHERE ts >= :since GROUP BY 1
    ), f AS (
        SELECT {_BUCKET.format(col="q.ts")} AS bucket, count(*) AS n,
               coalesce(sum(hashtext(f.event_id)::bigint), 0) AS h
          FROM feedback_events f JOIN search_queries q ON q.query_id = f.query_id
         WHERE q.ts >= :since GROUP BY 1
    )
    SELECT q.bucket, q.n, q.h, coalesce(f.n, 0), coalesce(f.h, 0)
      FROM q LEFT JOIN f ON f.bucket = q.bucket
    """
)


def bucket_fingerprints(session: Session, *, since: datetime, bucket_s: float) -> dict[int, str]:
    """bucket -> fingerprint of its searches and their feedback, for every bucket from ``since``."""
    rows = session.execute(_FINGERPRINT_SQL, {"since": since, "bucket_s": bucket_s})
    return {int(b): f"{n}:{h}/{fn}:{fh}" for b, n, h, fn, fh in rows}


# Buckets holding the session-predecessor of some search of [lo, hi): a search added there may be
# a new "next search" of it, which a reformulation function reads.
_PREDECESSORS_SQL = text(
    f"""
    SELECT DISTINCT {_BUCKET.format(col="p.ts")}
      FROM search_queries q
      JOIN LATERAL (
          SELECT s.ts FROM search_queries s
           WHERE s.session_id = q.session_id AND (s.ts, s.query_id) < (q.ts, q.query_id)
           ORDER BY s.ts DESC, s.query_id DESC LIMIT 1
      ) p ON true
     WHERE q.ts >= :lo AND q.ts < :hi
    """
)


def predecessor_buckets(session: Session, *, lo: datetime, hi: datetime, bucket_s: float) -> set[int]:
    rows = session.execute(_PREDECESSORS_SQL, {"lo": lo, "hi": hi, "bucket_s": bucket_s})
    return {int(b) for (b,) in rows}


# Searches of one shard, each with its session's next search (anywhere later: the window runs to
# the newest search) and its interactions. The feedback join has no index on feedback_events'
# query_id to use (a btree or hash index there costs ingestion ~10-28% of its throughput: docs/
# decisions.md), so Postgres hashes the searches and scans feedback once per statement: the fold
# reads all its buckets in one statement (iter_buckets_rows), not one statement per bucket.
_LINKED_ROWS = """
    SELECT {bucket_col} q.query_id, q.session_id, q.ts, q.norm_text, q.shown, n.norm_text, n.ts,
           f.type, f.product_id, f.position, f.dwell_ms, f.ts
      FROM search_queries q
      LEFT JOIN LATERAL (
          SELECT s.norm_text, s.ts FROM search_queries s
           WHERE s.session_id = q.session_id AND (s.ts, s.query_id) > (q.ts, q.query_id)
           ORDER BY s.ts, s.query_id LIMIT 1
      ) n ON true
      LEFT JOIN feedback_events f ON f.query_id = q.query_id
     WHERE q.ts >= :lo AND q.ts < :hi AND {qhash} % :n_shards = :shard {also}
     ORDER BY {order} q.query_id, f.ts
"""
_QHASH_Q = _QHASH.format(col="q.norm_text")
_BUCKET_ROWS_SQL = text(_LINKED_ROWS.format(bucket_col="", qhash=_QHASH_Q, also="", order=""))
_BUCKETS_ROWS_SQL = text(
    _LINKED_ROWS.format(
        bucket_col=f"{_BUCKET.format(col='q.ts')},",
        qhash=_QHASH_Q,
        also=f"AND {_BUCKET.format(col='q.ts')} = ANY(:buckets)",
        order="1,",
    )
)


def iter_bucket_rows(
    session: Session, *, lo: datetime, hi: datetime, shard: int = 0, n_shards: int = 1
) -> Iterator[Row[Any]]:
    """The searches of ``[lo, hi)`` in one shard, with their next search and interactions
    (``streams.weak.incremental.records_from_linked_rows`` reads them)."""
    params = {"lo": lo, "hi": hi, "shard": shard, "n_shards": n_shards}
    yield from session.execute(_BUCKET_ROWS_SQL.execution_options(yield_per=5000), params)


def iter_buckets_rows(
    session: Session,
    *,
    buckets: Sequence[int],
    lo: datetime,
    hi: datetime,
    bucket_s: float,
    shard: int = 0,
    n_shards: int = 1,
) -> Iterator[tuple[int, list[Sequence[Any]]]]:
    """(bucket, its rows as :func:`iter_bucket_rows` gives them) for each of ``buckets`` that holds a
    search of the shard, in bucket order, from one statement; ``[lo, hi)`` spans the buckets (the
    caller's exact bucket bounds, which let the BRIN index on ``ts`` skip the rest)."""
    if not buckets:
        return
    params = {
        "lo": lo,
        "hi": hi,
        "buckets": sorted(buckets),
        "bucket_s": bucket_s,
        "shard": shard,
        "n_shards": n_shards,
    }
    rows = session.execute(_BUCKETS_ROWS_SQL.execution_options(yield_per=5000), params)
    for bucket, group in groupby(rows, key=lambda row: int(row[0])):
        yield bucket, [tuple(row)[1:] for row in group]


# Catalog as the labeling functions see it: changing any of it changes past votes.
_CATALOG_DIGEST_SQL = text(
    "SELECT md5(coalesce(string_agg(product_id || '|' || coalesce(label, '') || '|' || kind, ',' "
    "ORDER BY product_id), '')) FROM catalog"
)


def catalog_digest(session: Session) -> str:
    return str(session.scalar(_CATALOG_DIGEST_SQL))


@dataclass(frozen=True)
class FoldState:
    bucket: int
    n_shards: int
    shard: int
    fingerprint: str
    config: str


def fold_states(session: Session) -> list[FoldState]:
    rows = session.execute(
        select(
            LabelFoldState.bucket,
            LabelFoldState.n_shards,
            LabelFoldState.shard,
            LabelFoldState.fingerprint,
            LabelFoldState.config,
        )
    )
    return [FoldState(int(b), int(n), int(s), str(f), str(c)) for b, n, s, f, c in rows]


def _shard_filter(column: Any, shard: int, n_shards: int) -> Any:
    return column % n_shards == shard


# One lock per bucket, held to the end of the transaction that swaps its statistics.
_BUCKET_LOCK_SQL = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('intentloop.label_stats.' || :bucket, 0))"
)


def replace_bucket(
    session: Session,
    *,
    bucket: int,
    shard: int,
    n_shards: int,
    fingerprint: str,
    config: str,
    stats: Mapping[tuple[str, str, str, str, str, str], float],
    records: Sequence[tuple[dict[str, Any], str, float]],
) -> None:
    """Swap in one shard's statistics of one bucket (its previous ones, whichever shard count
    wrote them, are deleted: queries partition the same way for any count) and record the fold.
    ``records``: searches kept whole, as (JSON, query, anchored weight).

    Serialised per bucket by a transaction-scoped advisory lock: two folds of one bucket at once
    (a shard pod retried, the refresh CronJob beside ``train schedule``) would otherwise both
    delete what was there before either inserted, and both inserts would stay, counted twice."""
    session.execute(_BUCKET_LOCK_SQL, {"bucket": bucket})
    session.execute(
        delete(LabelStat).where(LabelStat.bucket == bucket, _shard_filter(LabelStat.qhash, shard, n_shards))
    )
    session.execute(
        delete(LabelFoldRecord).where(
            LabelFoldRecord.bucket == bucket, _shard_filter(LabelFoldRecord.qhash, shard, n_shards)
        )
    )
    # another shard count's folds of this bucket no longer describe what is stored
    session.execute(
        delete(LabelFoldState).where(LabelFoldState.bucket == bucket, LabelFoldState.n_shards != n_shards)
    )
    hashes = {q: query_hash(q) for q in {key[2] for key in stats}}
    copy_rows(
        session,
        "label_stats",
        ("bucket", "qhash", "dimension", "kind", "norm_text", "lf", "label", "basis", "value"),
        ((bucket, hashes[key[2]], *key, value) for key, value in stats.items()),
    )
    if records:
        copy_rows(
            session,
            "label_fold_records",
            ("bucket", "qhash", "weight", "record"),
            ((bucket, query_hash(q), w, Jsonb(r)) for r, q, w in records),
        )
    stmt = insert(LabelFoldState).values(
        bucket=bucket, n_shards=n_shards, shard=shard, fingerprint=fingerprint, config=config
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[LabelFoldState.bucket, LabelFoldState.n_shards, LabelFoldState.shard],
            set_={"fingerprint": fingerprint, "config": config, "folded_at": stmt.excluded.folded_at},
        )
    )


def drop_buckets(session: Session, buckets: Iterable[int]) -> None:
    """Forget buckets that left the window (or are no longer folded)."""
    keep_out = list(buckets)
    if not keep_out:
        return
    for model in (LabelStat, LabelFoldRecord, LabelFoldState):
        session.execute(delete(model).where(model.bucket.in_(keep_out)))


# Statistics of the given buckets summed per key, decayed kinds rescaled from their bucket's
# start to the newest search: 2 ** ((bucket start - newest) / half-life). Function counts are
# only needed per function: summed over queries here. psycopg placeholders (a raw cursor: this
# returns several rows per query of the window, and SQLAlchemy rows cost a third of the time).
_SUMMED_SQL = """
    SELECT dimension, kind, q, lf, label, sum(v * CASE
               WHEN basis = '1' THEN 1.0
               WHEN basis LIKE 'ips:%%' THEN (%(ips)s::float8[])[r]
               ELSE (%(exam)s::float8[])[r] END)
      FROM (
        SELECT dimension, kind, lf, label, basis,
               CASE WHEN basis = '1' THEN 0
                    ELSE least(split_part(basis, ':', 2)::int, %(last)s) + 1 END AS r,
               CASE WHEN kind IN ('lf_searches', 'lf_votes') THEN '' ELSE norm_text END AS q,
               CASE WHEN kind IN ('net', 'support', 'shares') AND %(half_life_s)s::float8 IS NOT NULL
                    THEN value * power(2.0, (bucket * %(bucket_s)s::float8 - %(newest)s::float8)
                                            / %(half_life_s)s::float8)
                    ELSE value END AS v
          FROM label_stats
         WHERE bucket = ANY(%(buckets)s) AND kind NOT IN ('shown', 'clicks')
    ) s
    GROUP BY dimension, kind, q, lf, label
"""


def summed_stats(
    session: Session,
    *,
    buckets: Sequence[int],
    bucket_s: float,
    newest: datetime,
    half_life_s: float | None,
    factors: tuple[Sequence[float], Sequence[float]],
) -> Iterator[tuple[Any, ...]]:
    """(dimension, kind, query, function, label, value) summed over ``buckets``: decayed kinds
    rescaled to ``newest``, linear forms evaluated with ``factors`` (IPS factor and examination
    probability per rank, the last one standing for every deeper rank)."""
    ips, exam = factors
    params = {
        "buckets": list(buckets),
        "bucket_s": bucket_s,
        "newest": newest.timestamp(),
        "half_life_s": half_life_s,
        "ips": list(ips),
        "exam": list(exam),
        "last": len(ips) - 1,
    }
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor(name="label_stats_summed") as cur:
        cur.itersize = 50_000
        cur.execute(_SUMMED_SQL, params)
        yield from cur


# Impression counts of the (query, product) pairs the propensity can learn from: seen at two or
# more ranks over these buckets, or of a query in ``also`` (the window's first bucket, folded in
# memory, may add the second rank). On a long tail most pairs are seen once: this is most rows.
_IMPRESSIONS_SQL = text(
    """
    WITH cells AS (
        SELECT norm_text, label AS item, basis AS rank,
               coalesce(sum(value) FILTER (WHERE kind = 'shown'), 0) AS shown,
               coalesce(sum(value) FILTER (WHERE kind = 'clicks'), 0) AS clicks,
               count(*) OVER (PARTITION BY norm_text, label) AS n_ranks
          FROM label_stats
         WHERE bucket = ANY(:buckets) AND kind IN ('shown', 'clicks') AND dimension = :dimension
         GROUP BY norm_text, label, basis
    )
    SELECT norm_text, item, rank, shown, clicks FROM cells
     WHERE n_ranks >= 2 OR norm_text = ANY(:also)
    """
)


def impression_cells(
    session: Session, *, buckets: Sequence[int], dimension: str, also: Sequence[str]
) -> Iterator[Row[Any]]:
    """(query, product, rank, shown, clicks) of the pairs that may be informative."""
    params = {"buckets": list(buckets), "dimension": dimension, "also": list(also)}
    yield from session.execute(_IMPRESSIONS_SQL.execution_options(yield_per=20_000), params)


def kept_records(session: Session, buckets: Sequence[int]) -> list[tuple[int, float, dict[str, Any]]]:
    """The searches kept whole in ``buckets``: (bucket, anchored weight, record JSON)."""
    stmt = select(LabelFoldRecord.bucket, LabelFoldRecord.weight, LabelFoldRecord.record).where(
        LabelFoldRecord.bucket.in_(list(buckets))
    )
    return [(int(b), float(w), dict(r)) for b, w, r in session.execute(stmt)]
