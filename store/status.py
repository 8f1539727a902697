"""What the store holds, in counts: the Postgres half of `intentloop status`.

One read-only pass over the tables an operator asks about when feeding the system their own logs
("did my history arrive? how much was rejected, and why? how many queries got a label?"), so the
CLI can answer without anyone writing SQL. Every count is a ``GROUP BY`` or ``count(*)``: cheap on
the sizes this project runs at, and exact, which estimates from ``pg_class`` would not be.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.dimensions import CATEGORY
from store.models import (
    AdapterVersion,
    DeadLetter,
    FeedbackEvent,
    GoldLabel,
    LabelDistribution,
    Product,
    SearchQuery,
    WeakLabel,
)
from store.versions import recorded_alias


@dataclass(frozen=True)
class StoreCounts:
    """Stored counts of every stage, from raw events to the champion adapter."""

    queries: int
    newest_search: datetime | None
    feedback_by_status: dict[str, int]  # pending, voted, no_vote, unknown_product, unknown_query
    dead_letters_by_reason: dict[str, int]
    weak_label_queries: int  # queries with a running vote from ingestion
    labelled: int  # label_distributions rows of the latest aggregation that carry a label
    abstained_by_reason: dict[str, int]  # ... and those that abstained, by why
    gold_by_purpose: dict[str, int]
    catalog_products: int
    catalog_labels: int  # distinct intent labels the catalog votes for (what gold labels may be)
    adapter_versions: int
    champion: str | None  # as the audit trail records it (Redis is re-seeded from it)
    # labelled queries per label dimension other than the category (intent_type: its labels' count)
    labelled_by_dimension: dict[str, int] = field(default_factory=dict)

    @property
    def feedback(self) -> int:
        return sum(self.feedback_by_status.values())

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letters_by_reason.values())

    @property
    def abstained(self) -> int:
        return sum(self.abstained_by_reason.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the totals next to their breakdowns."""
        out = asdict(self)
        out["newest_search"] = self.newest_search.isoformat() if self.newest_search else None
        out.update(feedback=self.feedback, dead_letters=self.dead_letters, abstained=self.abstained)
        return out


def _grouped(session: Session, column: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column).order_by(func.count().desc()))
    return {str(key): int(n) for key, n in rows}


def _count(session: Session, what: Any) -> int:
    return int(session.scalar(select(func.count(what))) or 0)


def store_counts(session: Session) -> StoreCounts:
    """Every count of :class:`StoreCounts`, read in one transaction (one consistent picture)."""
    abstained = (
        select(LabelDistribution.reason, func.count())
        .where(LabelDistribution.abstained.is_(True), LabelDistribution.dimension == CATEGORY)
        .group_by(LabelDistribution.reason)
        .order_by(func.count().desc())
    )
    return StoreCounts(
        queries=_count(session, SearchQuery.query_id),
        newest_search=session.scalar(select(func.max(SearchQuery.ts))),
        feedback_by_status=_grouped(session, FeedbackEvent.status),
        dead_letters_by_reason=_grouped(session, DeadLetter.reason),
        weak_label_queries=_count(session, func.distinct(WeakLabel.norm_text)),
        labelled=label_distribution_counts(session, CATEGORY)[0],
        abstained_by_reason={str(r or "-"): int(n) for r, n in session.execute(abstained)},
        gold_by_purpose=_grouped(session, GoldLabel.purpose),
        catalog_products=_count(session, Product.product_id),
        catalog_labels=_count(session, func.distinct(Product.label)),
        adapter_versions=_count(session, AdapterVersion.version),
        champion=recorded_alias(session),
        labelled_by_dimension={
            str(d): int(n)
            for d, n in session.execute(
                select(LabelDistribution.dimension, func.count())
                .where(LabelDistribution.abstained.is_(False), LabelDistribution.dimension != CATEGORY)
                .group_by(LabelDistribution.dimension)
            )
        },
    )


def label_distribution_counts(session: Session, dimension: str | None = None) -> tuple[int, int]:
    """(labelled, abstained) rows of the latest aggregation, of one ``dimension`` or all (what
    `labels export` can write)."""
    stmt = select(LabelDistribution.abstained, func.count()).group_by(LabelDistribution.abstained)
    if dimension is not None:
        stmt = stmt.where(LabelDistribution.dimension == dimension)
    rows = session.execute(stmt)
    by_flag = {bool(flag): int(n) for flag, n in rows}
    return by_flag.get(False, 0), by_flag.get(True, 0)
