"""Reading labels back: weak-label snapshots for training, gold labels for evaluation."""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Row, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.dimensions import CATEGORY
from store.evaluations import query_frequencies
from store.label_stats import copy_rows
from store.models import GoldLabel, LabelDistribution, LabelingReport, Product, SearchQuery, WeakLabel

# Per normalised query: the winning label, its share of positive votes (confidence) and the evidence.
_SNAPSHOT_SQL = text(
    """
    WITH pos AS (
        SELECT norm_text, label, votes, events FROM weak_labels WHERE votes > 0
    ), ranked AS (
        SELECT norm_text, label, votes, events,
               sum(votes) OVER (PARTITION BY norm_text) AS total,
               sum(events) OVER (PARTITION BY norm_text) AS total_events,
               row_number() OVER (PARTITION BY norm_text ORDER BY votes DESC, label) AS rk
          FROM pos
    )
    SELECT norm_text, label, votes / total AS confidence, total AS votes, total_events AS events
      FROM ranked
     WHERE rk = 1 AND total >= :min_votes AND votes / total >= :min_confidence
     ORDER BY norm_text
    """
)


@dataclass(frozen=True)
class LabelledQuery:
    """One training row: a query, its weak label, and how sure the evidence is.

    From an aggregation also the label ``distribution`` (soft target), the training ``weight``
    the label policy gives it and how many ``searches`` typed the query.
    """

    norm_text: str
    label: str
    confidence: float
    votes: float
    events: int
    distribution: dict[str, float] | None = None
    weight: float = 1.0
    searches: int = 0


def weak_label_snapshot(session: Session, *, min_votes: float, min_confidence: float) -> list[LabelledQuery]:
    """Majority weak label per query that passes the evidence and confidence thresholds."""
    rows = session.execute(_SNAPSHOT_SQL, {"min_votes": min_votes, "min_confidence": min_confidence})
    return [LabelledQuery(r[0], r[1], float(r[2]), float(r[3]), int(r[4])) for r in rows]


GOLD_PURPOSES = ("eval", "train")
# gold_labels.source of reviewed labels starts with it ("review:alice,bob"): review gold is
# re-derived from the decisions and never replaces gold from any other source
REVIEW_SOURCE = "review"


def upsert_gold(
    session: Session,
    rows: Iterable[tuple[str, str]],
    source: str = "manual",
    purpose: str = "eval",
    dimension: str = CATEGORY,
    weight: float = 1.0,
) -> int:
    """Store human-verified (normalised query, label) pairs of one ``dimension`` for ``purpose``
    (``eval``: measured against, never trained on; ``train``: a training row of ``weight``); a
    later label for a query in that dimension wins, purpose and weight included."""
    if purpose not in GOLD_PURPOSES:
        raise ValueError(f"gold purpose must be one of {GOLD_PURPOSES}, got {purpose!r}")
    if not weight > 0:
        raise ValueError(f"gold weight must be positive, got {weight!r}")
    data = [
        {
            "dimension": dimension,
            "norm_text": q,
            "label": lab,
            "source": source,
            "purpose": purpose,
            "weight": weight,
        }
        for q, lab in rows
    ]
    if not data:
        return 0
    stmt = insert(GoldLabel)
    stmt = stmt.on_conflict_do_update(
        index_elements=[GoldLabel.dimension, GoldLabel.norm_text],
        set_={"label": stmt.excluded.label, "source": source, "purpose": purpose, "weight": weight},
    )
    session.execute(stmt, data)
    return len(data)


@dataclass(frozen=True)
class GoldByPurpose:
    """Gold labels split by what they may be used for: ``eval`` (measured against, never trained
    on) and ``train`` (training rows). Training and the gate read them through this one split."""

    eval: dict[str, str]
    train: dict[str, str]
    # training weight per query where it is not 1.0 (reviewers who disagreed: store.review.resolve)
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def all(self) -> dict[str, str]:
        return {**self.eval, **self.train}

    def weight_of(self, query: str) -> float:
        """The training weight of ``query``'s gold row (1.0 unless stored otherwise)."""
        return self.weights.get(query, 1.0)


def gold_by_purpose(session: Session, dimension: str = CATEGORY) -> GoldByPurpose:
    """Every gold label of ``dimension``, as (normalised query -> label) maps per purpose, with
    the weights that are not 1.0."""
    rows = gold_labels(session, dimension=dimension)
    return GoldByPurpose(
        eval={g.norm_text: g.label for g in rows if g.purpose != "train"},
        train={g.norm_text: g.label for g in rows if g.purpose == "train"},
        weights={g.norm_text: float(g.weight) for g in rows if g.weight != 1.0},
    )


def reviewed_gold(session: Session, dimension: str = CATEGORY) -> dict[str, str]:
    """The gold labels of ``dimension`` that came from the review page (``store.review``), every
    purpose: what ``labels report`` measures the labeling functions on separately."""
    stmt = select(GoldLabel.norm_text, GoldLabel.label).where(
        GoldLabel.dimension == dimension, GoldLabel.source.like(f"{REVIEW_SOURCE}%")
    )
    return {str(q): str(lab) for q, lab in session.execute(stmt)}


def gold_labels(
    session: Session, purpose: str | None = None, dimension: str = CATEGORY
) -> Sequence[GoldLabel]:
    """Gold labels of ``dimension``, all of them or those of one ``purpose``."""
    stmt = select(GoldLabel).where(GoldLabel.dimension == dimension).order_by(GoldLabel.norm_text)
    if purpose is not None:
        stmt = stmt.where(GoldLabel.purpose == purpose)
    return session.scalars(stmt).all()


# One row per (search, interaction), searches of a session in time order: the labeling functions
# need a search's whole context (what was shown, what was skipped, what the shopper searched next).
_SEARCH_ROWS_SQL = text(
    """
    SELECT q.query_id, q.session_id, q.ts, q.norm_text, q.shown,
           f.type, f.product_id, f.position, f.dwell_ms, f.ts
      FROM search_queries q
      LEFT JOIN feedback_events f ON f.query_id = q.query_id
     WHERE q.ts >= :since AND q.ts < :until
     ORDER BY q.session_id, q.ts, q.query_id, f.ts
    """
)


_FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


def iter_search_rows(session: Session, *, since: datetime, until: datetime = _FOREVER) -> Iterator[Row[Any]]:
    """Stream the searches of ``[since, until)`` with their interactions (server-side cursor: flat
    memory on big windows)."""
    result = session.execute(
        _SEARCH_ROWS_SQL.execution_options(yield_per=5000), {"since": since, "until": until}
    )
    yield from result


def newest_search_ts(session: Session) -> datetime | None:
    """When the newest stored search happened: the aggregation window and time decay count back
    from it, so a replayed backfill labels the same as live traffic did."""
    return session.scalar(select(func.max(SearchQuery.ts)))


def known_labels(session: Session) -> set[str]:
    """Every intent label some catalog product votes for (what a gold label may be)."""
    stmt = select(Product.label).where(Product.label.is_not(None), Product.kind != "help").distinct()
    return {str(label) for label in session.scalars(stmt)}


def catalog_labels(session: Session) -> dict[str, str]:
    """product id -> category label, for the items that vote for a category: help pages (returns,
    order status) are about no part of the catalogue, so they never do, whatever their path."""
    stmt = select(Product.product_id, Product.label).where(Product.label.is_not(None), Product.kind != "help")
    return {str(pid): str(label) for pid, label in session.execute(stmt)}


def catalog_kinds(session: Session) -> dict[str, str]:
    """product id -> kind (``streams.events.ItemKind``'s values), for the items that are not
    products (absent means product, as in the catalogue contract): what the intent-type labeling
    functions read."""
    stmt = select(Product.product_id, Product.kind).where(Product.kind != "product")
    return {str(pid): str(kind) for pid, kind in session.execute(stmt)}


def replace_label_distributions(
    session: Session, rows: Sequence[dict[str, Any]], dimension: str = CATEGORY
) -> int:
    """Swap in a new aggregation of ``dimension`` atomically (readers see the old one until
    commit); the other dimensions' rows stay."""
    session.execute(delete(LabelDistribution).where(LabelDistribution.dimension == dimension))
    if not rows:
        return 0
    # COPY: an aggregation writes a row per query of the window (executemany took ~5 s per 16k rows)
    columns = [c for c in rows[0] if c != "dimension"]
    copy_rows(
        session,
        "label_distributions",
        ["dimension", *columns],
        ([dimension, *(_copyable(row[c]) for c in columns)] for row in rows),
    )
    return len(rows)


def _copyable(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value


def record_labeling_report(session: Session, report: dict[str, Any], dimension: str = CATEGORY) -> int:
    entry = LabelingReport(report=report, dimension=dimension)
    session.add(entry)
    session.flush()
    return entry.id


def latest_labeling_report(session: Session, dimension: str = CATEGORY) -> LabelingReport | None:
    stmt = select(LabelingReport).where(LabelingReport.dimension == dimension)
    return session.scalars(stmt.order_by(LabelingReport.id.desc()).limit(1)).first()


def labelled_distribution_count(session: Session, dimension: str = CATEGORY) -> int:
    """Queries the latest aggregation labelled (did not abstain on) in ``dimension``: whether
    training should read ``label_distributions`` rather than the raw ``weak_labels`` votes."""
    stmt = (
        select(func.count())
        .select_from(LabelDistribution)
        .where(LabelDistribution.abstained.is_(False), LabelDistribution.dimension == dimension)
    )
    return int(session.scalar(stmt) or 0)


def distribution_snapshot(
    session: Session, *, min_confidence: float = 0.0, dimension: str = CATEGORY
) -> list[LabelledQuery]:
    """Training rows of ``dimension`` from the latest aggregation: the queries it did not abstain
    on (the label policy already decided what is too little or too contradictory), at least
    ``min_confidence``."""
    stmt = (
        select(LabelDistribution)
        .where(
            LabelDistribution.dimension == dimension,
            LabelDistribution.abstained.is_(False),
            LabelDistribution.confidence >= min_confidence,
        )
        .order_by(LabelDistribution.norm_text)
    )
    return [
        LabelledQuery(
            d.norm_text,
            str(d.label),
            d.confidence,
            d.evidence,
            0,
            distribution={str(k): float(v) for k, v in (d.distribution or {}).items()},
            weight=d.weight,
            searches=d.searches,
        )
        for d in session.scalars(stmt)
        if d.label is not None
    ]


def label_last_seen(session: Session, source: str) -> dict[str, datetime]:
    """When each labelled query last got evidence: how training tells fresh labels from old ones.

    ``weak_labels`` keeps the time of the newest vote; ``label_distributions`` is rebuilt whole by
    each aggregation, so for it the newest search of the query stands in (its label can only have
    changed if the query was searched again). ``source`` is the snapshot source name (the table).
    """
    if source == "weak_labels":
        stmt = select(WeakLabel.norm_text, func.max(WeakLabel.last_ts)).group_by(WeakLabel.norm_text)
    else:
        stmt = (
            select(SearchQuery.norm_text, func.max(SearchQuery.ts))
            .where(
                SearchQuery.norm_text.in_(
                    select(LabelDistribution.norm_text).where(LabelDistribution.dimension == CATEGORY)
                )
            )
            .group_by(SearchQuery.norm_text)
        )
    return {str(text): ts for text, ts in session.execute(stmt) if ts is not None}


# Aggregation bookkeeping, not a property of the query's label: left out of exports.
_NOT_EXPORTED = frozenset({"computed_at"})


def label_export_columns() -> list[str]:
    """The columns `labels export` writes, in table order: every column of ``label_distributions``
    but bookkeeping, so a column a migration adds is exported without touching the exporter."""
    return [c.name for c in LabelDistribution.__table__.columns if c.name not in _NOT_EXPORTED]


def iter_label_export(session: Session, *, include_abstained: bool = False) -> Iterator[dict[str, Any]]:
    """Per-query labels of the latest aggregation as plain dicts (:func:`label_export_columns`),
    by dimension and query; abstentions only with ``include_abstained``. Streamed: flat memory on
    big exports."""
    table = LabelDistribution.__table__
    stmt = select(*(table.c[name] for name in label_export_columns())).order_by(
        table.c.dimension, table.c.norm_text
    )
    if not include_abstained:
        stmt = stmt.where(table.c.abstained.is_(False))
    for row in session.execute(stmt.execution_options(yield_per=5000)):
        yield dict(row._mapping)


@dataclass(frozen=True)
class BehaviourEvidence:
    """What shoppers did per query, for the behaviour memory of a fused model.

    ``evidence``: ``{normalised query: {label: weight}}`` in action units (click 1, add-to-cart 2,
    purchase 3), positive only; ``searches``: ``{normalised query: searches}`` over every stored
    search (the fusion's frequency feature; the same counts the gate's slices use); ``source``:
    the table the evidence was read from.
    """

    evidence: dict[str, dict[str, float]]
    searches: dict[str, int]
    source: str


def behaviour_evidence(session: Session, source: str) -> BehaviourEvidence:
    """Per-query label evidence from the same table the run's snapshot read (``source``:
    ``"label_distributions"`` or ``"weak_labels"``, as :func:`label_last_seen` takes it).

    - ``weak_labels`` keeps the raw running vote per (query, label): the summed action weights of
      every voted event, exactly the memory's units; its positive votes are used as they are.
    - ``label_distributions`` keeps only each query's posterior ``distribution`` and the total
      ``evidence`` behind it (the per-label actions of the aggregation are not stored), so the
      evidence per label is ``distribution x evidence``. The posterior already holds a little of
      the label prior (``labels.prior_strength`` actions), which the memory's own smoothing then
      adds to; the top label and the total evidence are the aggregation's. Abstentions with a
      distribution are kept (the memory's ``min_evidence`` decides), those without are skipped.

    Reading the snapshot's own table keeps the memory and the training labels one account of the
    same clicks (window, decay and debiasing included when aggregated).
    """
    evidence: dict[str, dict[str, float]] = {}
    if source == "weak_labels":
        rows = session.execute(
            select(WeakLabel.norm_text, WeakLabel.label, WeakLabel.votes).where(WeakLabel.votes > 0)
        )
        for query, label, votes in rows:
            evidence.setdefault(str(query), {})[str(label)] = float(votes)
    else:
        stmt = select(LabelDistribution.norm_text, LabelDistribution.distribution, LabelDistribution.evidence)
        stmt = stmt.where(LabelDistribution.evidence > 0, LabelDistribution.dimension == CATEGORY)
        for query, distribution, total in session.execute(stmt):
            row = {str(k): float(v) * float(total) for k, v in (distribution or {}).items() if float(v) > 0}
            if row:
                evidence[str(query)] = row
    return BehaviourEvidence(evidence, query_frequencies(session), source)
