"""Reading labels back: weak-label snapshots for training, gold labels for evaluation."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.models import GoldLabel

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
    """One training row: a query, its majority weak label, and how sure the votes are."""

    norm_text: str
    label: str
    confidence: float
    votes: float
    events: int


def weak_label_snapshot(session: Session, *, min_votes: float, min_confidence: float) -> list[LabelledQuery]:
    """Majority weak label per query that passes the evidence and confidence thresholds."""
    rows = session.execute(_SNAPSHOT_SQL, {"min_votes": min_votes, "min_confidence": min_confidence})
    return [LabelledQuery(r[0], r[1], float(r[2]), float(r[3]), int(r[4])) for r in rows]


def upsert_gold(session: Session, rows: Iterable[tuple[str, str]], source: str = "manual") -> int:
    """Store human-verified (normalised query, label) pairs; a later label for a query wins."""
    data = [{"norm_text": q, "label": lab, "source": source} for q, lab in rows]
    if not data:
        return 0
    stmt = insert(GoldLabel)
    stmt = stmt.on_conflict_do_update(
        index_elements=[GoldLabel.norm_text], set_={"label": stmt.excluded.label, "source": source}
    )
    session.execute(stmt, data)
    return len(data)


def gold_labels(session: Session) -> Sequence[GoldLabel]:
    return session.scalars(select(GoldLabel).order_by(GoldLabel.norm_text)).all()
