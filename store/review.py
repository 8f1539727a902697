"""The human review queue (issue #16): reviewers, queued queries, their decisions, and the gold
labels derived from them.

Why this shape:

- **Decisions are the record, gold is derived.** Every keystroke on the review page is one
  ``review_decisions`` row (reviewer, time, seconds spent; an undo marks it, never deletes it). The
  ``gold_labels`` row of the query is re-derived from the active decisions in the same transaction
  by the pure :func:`resolve`: the majority label, a tie going to the latest decision (the "later
  wins" rule of gold files), weighted by the share of reviewers who chose it. So gold holds one
  row per query however many people reviewed it, and the gate, training, the label-model choice and
  ``labels report`` read reviewed labels like any other gold, with no reader of their own.
- **Review never overwrites other gold.** A gold row whose source does not start with
  :data:`REVIEW_SOURCE` (a file someone loaded, often evaluation gold) is left as it is; selection
  does not offer queries that already have gold anyway (:func:`review_pool`).
- **An item is frozen as shown.** The queue keeps the probabilities, weak label, evidence and
  explanation of the moment it was selected, so a decision can be judged later against exactly
  what the reviewer saw.

Plain functions over a caller's session (``Database.session()`` commits); no streams, no torch.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.exceptions import ReviewError
from store.labels import GOLD_PURPOSES, REVIEW_SOURCE
from store.models import (
    FeedbackEvent,
    GoldLabel,
    LabelDistribution,
    Product,
    ReviewDecision,
    Reviewer,
    ReviewItem,
    SearchQuery,
)

__all__ = [
    "ACTIONS",
    "EVIDENCE_TYPES",
    "REVIEW_SOURCE",
    "STRATEGIES",
    "Candidate",
    "Decision",
    "NewItem",
    "QueueItem",
    "ReviewError",
    "add_reviewer",
    "decide",
    "decisions",
    "double_reviewed",
    "enqueue",
    "next_item",
    "query_evidence",
    "queue_counts",
    "resolve",
    "review_pool",
    "reviewer_for",
    "revoke_reviewer",
    "undo_last",
]

ACTIONS = ("label", "accept", "skip")
STRATEGIES = ("active", "random")
# What a shopper did with a product that says what they meant, strongest first (the page's order).
EVIDENCE_TYPES = ("purchase", "add_to_cart", "click")
_SOURCE_CHARS = 64  # gold_labels.source is String(64)


@dataclass(frozen=True)
class Candidate:
    """One query that could be reviewed: a ``label_distributions`` row of the dimension with no
    gold label and not queued yet (``weak_label`` is the aggregation's top label, even when it
    abstained)."""

    query: str
    searches: int
    weak_label: str | None
    distribution: dict[str, float]
    confidence: float | None
    abstained: bool
    reason: str | None
    evidence: float | None


@dataclass(frozen=True)
class NewItem:
    """What selection enqueues: the query, why it was chosen, and what the reviewer will see."""

    query: str
    strategy: str
    rank: int
    score: float
    reasons: dict[str, Any]
    version: str | None
    suggestion: str | None
    probabilities: list[tuple[str, float]]
    weak: dict[str, Any] | None
    evidence: list[dict[str, Any]]
    explanation: dict[str, Any] | None
    searches: int
    wanted: int = 1


@dataclass(frozen=True, kw_only=True)
class QueueItem(NewItem):
    """A stored queue item (its own fields are keyword-only: they follow ``wanted``'s default)."""

    id: int
    batch: int
    dimension: str


@dataclass(frozen=True)
class Decision:
    """One reviewer's decision on one item; ``label`` is None for a skip, ``undone_at`` is set
    once it was undone."""

    id: int
    item_id: int
    dimension: str
    query: str
    reviewer: str
    label: str | None
    action: str
    decided_at: datetime
    seconds: float
    undone_at: datetime | None


# --- reviewers ------------------------------------------------------------------------------


def add_reviewer(session: Session, name: str, token_sha256: str) -> None:
    """Create ``name`` or give it a new token (a revoked reviewer becomes active again)."""
    if not name or len(name) > 64:
        raise ReviewError(f"a reviewer name must have 1 to 64 characters, got {name!r}")
    if len(token_sha256) != 64 or any(c not in "0123456789abcdef" for c in token_sha256):
        raise ReviewError("token_sha256 must be a lowercase hex SHA-256 digest (64 characters)")
    stmt = insert(Reviewer).values(name=name, token_sha256=token_sha256)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Reviewer.name], set_={"token_sha256": token_sha256, "revoked_at": None}
    )
    session.execute(stmt)


def revoke_reviewer(session: Session, name: str) -> bool:
    """Stop ``name``'s token from working; False when there is no active reviewer of that name.
    The row stays: past decisions keep naming their reviewer."""
    stmt = (
        update(Reviewer)
        .where(Reviewer.name == name, Reviewer.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def reviewer_for(session: Session, token_sha256: str) -> str | None:
    """The active reviewer holding the token with this digest, or None."""
    stmt = select(Reviewer.name).where(Reviewer.token_sha256 == token_sha256, Reviewer.revoked_at.is_(None))
    return session.scalar(stmt)


# --- selection's inputs ---------------------------------------------------------------------


def review_pool(session: Session, dimension: str, limit: int) -> list[Candidate]:
    """The queries selection chooses from: ``label_distributions`` rows of ``dimension`` (labelled
    or abstained on) that have no gold label and are not queued, the most searched first."""
    has_gold = exists().where(
        GoldLabel.dimension == LabelDistribution.dimension, GoldLabel.norm_text == LabelDistribution.norm_text
    )
    queued = exists().where(
        ReviewItem.dimension == LabelDistribution.dimension,
        ReviewItem.norm_text == LabelDistribution.norm_text,
    )
    stmt = (
        select(LabelDistribution)
        .where(LabelDistribution.dimension == dimension, ~has_gold, ~queued)
        .order_by(LabelDistribution.searches.desc(), LabelDistribution.norm_text)
        .limit(limit)
    )
    return [
        Candidate(
            query=d.norm_text,
            searches=int(d.searches),
            weak_label=d.label,
            distribution={str(k): float(v) for k, v in (d.distribution or {}).items()},
            confidence=d.confidence,
            abstained=bool(d.abstained),
            reason=d.reason or None,
            evidence=d.evidence,
        )
        for d in session.scalars(stmt)
    ]


def query_evidence(
    session: Session, queries: list[str], *, per_query: int = 12
) -> dict[str, list[dict[str, Any]]]:
    """What shoppers did after each of ``queries``: per query, the products bought, put in the
    cart and clicked (``{"type", "product_id", "title", "label", "n"}``), purchases first and the
    most frequent first within a type, at most ``per_query`` of them. Queries without any are
    absent. A product missing from the catalogue shows its id as title and no label."""
    if not queries:
        return {}
    n = func.count().label("n")
    stmt = (
        select(
            SearchQuery.norm_text,
            FeedbackEvent.type,
            FeedbackEvent.product_id,
            func.coalesce(Product.title, FeedbackEvent.product_id),
            Product.label,
            n,
        )
        .join(FeedbackEvent, FeedbackEvent.query_id == SearchQuery.query_id)
        .outerjoin(Product, Product.product_id == FeedbackEvent.product_id)
        .where(SearchQuery.norm_text.in_(sorted(set(queries))), FeedbackEvent.type.in_(EVIDENCE_TYPES))
        .group_by(
            SearchQuery.norm_text, FeedbackEvent.type, FeedbackEvent.product_id, Product.title, Product.label
        )
    )
    strength = {kind: i for i, kind in enumerate(EVIDENCE_TYPES)}
    rows = sorted(session.execute(stmt), key=lambda r: (r[0], strength[r[1]], -r[5], r[2]))
    out: dict[str, list[dict[str, Any]]] = {}
    for query, kind, pid, title, label, count in rows:
        shown = out.setdefault(str(query), [])
        if len(shown) < per_query:
            shown.append({"type": kind, "product_id": pid, "title": title, "label": label, "n": int(count)})
    return out


# --- the queue ------------------------------------------------------------------------------


def enqueue(session: Session, dimension: str, items: list[NewItem]) -> int:
    """Queue ``items`` of ``dimension`` as one new batch; returns its number. Queries already
    queued in the dimension are skipped (a query is reviewed once per dimension)."""
    for item in items:
        if item.strategy not in STRATEGIES:
            raise ReviewError(f"strategy must be one of {STRATEGIES}, got {item.strategy!r}")
        if item.wanted < 1:
            raise ReviewError(f"wanted must be at least 1, got {item.wanted}")
    # one selection at a time numbers batches: two concurrent ones would otherwise share a number
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('intentloop.review_queue'))"))
    batch = int(session.scalar(select(func.coalesce(func.max(ReviewItem.batch), 0))) or 0) + 1
    if items:
        rows = [_item_row(dimension, batch, item) for item in items]
        stmt = insert(ReviewItem).on_conflict_do_nothing(
            index_elements=[ReviewItem.dimension, ReviewItem.norm_text]
        )
        session.execute(stmt, rows)
    return batch


def _item_row(dimension: str, batch: int, item: NewItem) -> dict[str, Any]:
    return {
        "batch": batch,
        "dimension": dimension,
        "norm_text": item.query,
        "strategy": item.strategy,
        "rank": item.rank,
        "score": float(item.score),
        "reasons": item.reasons,
        "version": item.version,
        "suggestion": item.suggestion,
        "probabilities": [[label, float(p)] for label, p in item.probabilities],
        "weak": item.weak,
        "evidence": item.evidence,
        "explanation": item.explanation,
        "searches": item.searches,
        "wanted": item.wanted,
    }


def _active() -> Any:
    return ReviewDecision.undone_at.is_(None)


def next_item(session: Session, reviewer: str, dimension: str | None = None) -> QueueItem | None:
    """The next item for ``reviewer``: the first by (batch, rank) they hold no active decision on
    (a skip counts: a skipped item is not offered to them again unless undone) and that still has
    fewer active labels (skips aside) than it ``wanted``. None when there is none."""
    mine = exists().where(
        ReviewDecision.item_id == ReviewItem.id, ReviewDecision.reviewer == reviewer, _active()
    )
    labelled = (
        select(func.count())
        .where(ReviewDecision.item_id == ReviewItem.id, _active(), ReviewDecision.action != "skip")
        .scalar_subquery()
    )
    stmt = select(ReviewItem).where(~mine, labelled < ReviewItem.wanted)
    if dimension is not None:
        stmt = stmt.where(ReviewItem.dimension == dimension)
    row = session.scalars(stmt.order_by(ReviewItem.batch, ReviewItem.rank, ReviewItem.id).limit(1)).first()
    return None if row is None else _queue_item(row)


def _queue_item(row: ReviewItem) -> QueueItem:
    return QueueItem(
        query=row.norm_text,
        strategy=row.strategy,
        rank=row.rank,
        score=row.score,
        reasons=dict(row.reasons),
        version=row.version,
        suggestion=row.suggestion,
        probabilities=[(str(label), float(p)) for label, p in row.probabilities],
        weak=row.weak,
        evidence=list(row.evidence),
        explanation=row.explanation,
        searches=row.searches,
        wanted=row.wanted,
        id=row.id,
        batch=row.batch,
        dimension=row.dimension,
    )


# --- decisions and the gold they derive -----------------------------------------------------


def decide(
    session: Session,
    item_id: int,
    reviewer: str,
    action: str,
    label: str | None,
    seconds: float,
    *,
    purpose: str = "train",
    gold_weight: float = 1.0,
) -> Decision:
    """Store ``reviewer``'s decision on item ``item_id`` and re-derive the query's gold row.

    ``accept`` stores the item's suggestion as the label, ``skip`` stores no label, ``label``
    stores ``label`` (the caller checks it against the dimension's label set). A reviewer who
    already holds an active decision on the item gets that one back unchanged: a form submitted
    twice stores one decision (a change of mind is an undo, then a new decision).
    """
    if action not in ACTIONS:
        raise ReviewError(f"action must be one of {ACTIONS}, got {action!r}")
    _check_gold_args(purpose, gold_weight)
    # the row lock orders concurrent decisions on one item, so each re-derivation sees the others
    item = session.scalars(select(ReviewItem).where(ReviewItem.id == item_id).with_for_update()).first()
    if item is None:
        raise ReviewError(f"no review item {item_id}")
    _check_reviewer(session, reviewer)
    previous = session.scalars(
        select(ReviewDecision).where(
            ReviewDecision.item_id == item_id, ReviewDecision.reviewer == reviewer, _active()
        )
    ).first()
    if previous is not None:
        return _decision(previous)
    chosen = _chosen_label(item, action, label)
    row = ReviewDecision(
        item_id=item.id,
        dimension=item.dimension,
        norm_text=item.norm_text,
        reviewer=reviewer,
        label=chosen,
        action=action,
        seconds=max(float(seconds), 0.0),
        decided_at=func.clock_timestamp(),  # not now(): that is the transaction's start
    )
    session.add(row)
    session.flush()
    session.refresh(row)  # decided_at is the server's
    _apply_gold(session, item.dimension, item.norm_text, purpose, gold_weight)
    return _decision(row)


def _check_gold_args(purpose: str, gold_weight: float) -> None:
    if purpose not in GOLD_PURPOSES:
        raise ReviewError(f"gold purpose must be one of {GOLD_PURPOSES}, got {purpose!r}")
    if not gold_weight > 0:
        raise ReviewError(f"gold weight must be positive, got {gold_weight!r}")


def _check_reviewer(session: Session, reviewer: str) -> None:
    revoked_at = session.execute(select(Reviewer.revoked_at).where(Reviewer.name == reviewer)).first()
    if revoked_at is None:
        raise ReviewError(f"no reviewer {reviewer!r}: add one with `intentloop review token add`")
    if revoked_at[0] is not None:
        raise ReviewError(f"reviewer {reviewer!r} was revoked")


def _chosen_label(item: ReviewItem, action: str, label: str | None) -> str | None:
    if action == "skip":
        return None
    if action == "accept":
        if not item.suggestion:
            raise ReviewError(f"review item {item.id} has no suggestion to accept: choose a label")
        return item.suggestion
    if not label:
        raise ReviewError("a label decision needs a label")
    return label


def undo_last(
    session: Session, reviewer: str, *, purpose: str = "train", gold_weight: float = 1.0
) -> Decision | None:
    """Undo ``reviewer``'s latest active decision and re-derive its query's gold row; returns it
    (with ``undone_at`` set), or None when they have nothing left to undo."""
    _check_gold_args(purpose, gold_weight)
    stmt = (
        select(ReviewDecision)
        .where(ReviewDecision.reviewer == reviewer, _active())
        .order_by(ReviewDecision.id.desc())  # the newest insert, even within one transaction
        .limit(1)
        .with_for_update()
    )
    row = session.scalars(stmt).first()
    if row is None:
        return None
    row.undone_at = session.scalar(select(func.clock_timestamp()))
    session.flush()
    _apply_gold(session, row.dimension, row.norm_text, purpose, gold_weight)
    return _decision(row)


def resolve(decisions: Sequence[Decision], gold_weight: float) -> tuple[str, float] | None:
    """The gold label and weight that ``decisions`` of one query amount to, or None when none
    of them is an active label (all undone or skipped).

    The majority label wins; a tie goes to the latest decision among the tied labels (later wins,
    as between gold files). The weight is ``gold_weight`` times the winner's share of the votes:
    two reviewers who disagree give half a training row, two who agree a whole one.
    """
    votes = [d for d in decisions if d.undone_at is None and d.label is not None and d.action != "skip"]
    if not votes:
        return None
    counts = Counter(d.label for d in votes)
    top = max(counts.values())
    tied = {label for label, n in counts.items() if n == top}
    latest = max((d for d in votes if d.label in tied), key=lambda d: (d.decided_at, d.id))
    assert latest.label is not None
    return latest.label, gold_weight * top / len(votes)


def _apply_gold(session: Session, dimension: str, query: str, purpose: str, gold_weight: float) -> None:
    """Re-derive the review gold row of (``dimension``, ``query``) from its decisions: upserted
    when an active label is left, deleted otherwise; gold of any other source is never touched."""
    rows = session.scalars(
        select(ReviewDecision).where(ReviewDecision.dimension == dimension, ReviewDecision.norm_text == query)
    ).all()
    found = [_decision(r) for r in rows]
    resolved = resolve(found, gold_weight)
    is_review = GoldLabel.source.like(f"{REVIEW_SOURCE}%")
    if resolved is None:
        session.execute(
            delete(GoldLabel).where(GoldLabel.dimension == dimension, GoldLabel.norm_text == query, is_review)
        )
        return
    label, weight = resolved
    voters = sorted({d.reviewer for d in found if d.undone_at is None and d.label is not None})
    source = f"{REVIEW_SOURCE}:{','.join(voters)}"[:_SOURCE_CHARS]
    values = {"label": label, "source": source, "purpose": purpose, "weight": weight}
    stmt = insert(GoldLabel).values(dimension=dimension, norm_text=query, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[GoldLabel.dimension, GoldLabel.norm_text], set_=values, where=is_review
    )
    session.execute(stmt)


def _decision(row: ReviewDecision) -> Decision:
    return Decision(
        id=row.id,
        item_id=row.item_id,
        dimension=row.dimension,
        query=row.norm_text,
        reviewer=row.reviewer,
        label=row.label,
        action=row.action,
        decided_at=row.decided_at,
        seconds=row.seconds,
        undone_at=row.undone_at,
    )


# --- reading decisions back -----------------------------------------------------------------


def decisions(session: Session, dimension: str | None = None) -> list[Decision]:
    """Every decision (undone ones included: the audit trail), oldest first."""
    stmt = select(ReviewDecision).order_by(ReviewDecision.decided_at, ReviewDecision.id)
    if dimension is not None:
        stmt = stmt.where(ReviewDecision.dimension == dimension)
    return [_decision(r) for r in session.scalars(stmt)]


def double_reviewed(session: Session, dimension: str) -> list[tuple[str, dict[str, str]]]:
    """The queries of ``dimension`` at least two reviewers labelled (active, skips aside), with
    each reviewer's label, by query: what agreement (Cohen's kappa) is measured on."""
    stmt = (
        select(ReviewDecision.norm_text, ReviewDecision.reviewer, ReviewDecision.label)
        .where(ReviewDecision.dimension == dimension, _active(), ReviewDecision.label.is_not(None))
        .order_by(ReviewDecision.norm_text, ReviewDecision.reviewer)
    )
    by_query: dict[str, dict[str, str]] = {}
    for query, reviewer, label in session.execute(stmt):
        by_query.setdefault(str(query), {})[str(reviewer)] = str(label)
    return [(q, labels) for q, labels in by_query.items() if len(labels) >= 2]


def queue_counts(session: Session) -> dict[str, int]:
    """Queue progress: ``queued`` items, ``reviewed`` (at least one active label), ``skipped``
    (active skips only, no label), ``pending`` (fewer active labels than wanted: still offered)."""
    labels = func.count().filter(and_(_active(), ReviewDecision.action != "skip"))
    skips = func.count().filter(and_(_active(), ReviewDecision.action == "skip"))
    per_item = (
        select(ReviewItem.id, ReviewItem.wanted, labels.label("labels"), skips.label("skips"))
        .outerjoin(ReviewDecision, ReviewDecision.item_id == ReviewItem.id)
        .group_by(ReviewItem.id, ReviewItem.wanted)
        .subquery()
    )
    stmt = select(
        func.count(),
        func.count().filter(per_item.c.labels > 0),
        func.count().filter(and_(per_item.c.labels == 0, per_item.c.skips > 0)),
        func.count().filter(per_item.c.labels < per_item.c.wanted),
    ).select_from(per_item)
    queued, reviewed, skipped, pending = session.execute(stmt).one()
    return {
        "queued": int(queued),
        "reviewed": int(reviewed),
        "skipped": int(skipped),
        "pending": int(pending),
    }
