"""The review page's storage in Postgres: :class:`~intentloop.dashboard.review.ReviewBackend` over
``store.review``, one short transaction per call (the SQL lives in the store, not here)."""

from collections.abc import Sequence

from intentloop.dashboard.review import ReviewItem
from intentloop.dashboard.review_auth import ReviewRequestError
from intentloop.review.settings import ReviewSettings
from store import review as store_review
from store.db import Database
from store.dimensions import INTENT_TYPE, INTENT_TYPES
from store.labels import known_labels


class PostgresReviewBackend:
    """Reviews stored with ``store.review``; gold written with ``settings.purpose`` and
    ``settings.gold_weight``. ``category_labels`` is the closed taxonomy (empty: every label the
    catalog votes for, as ``labels gold load`` checks)."""

    def __init__(self, db: Database, settings: ReviewSettings, category_labels: Sequence[str] = ()) -> None:
        self._db = db
        self._settings = settings
        self._category_labels = set(category_labels)

    def reviewer_for(self, token_sha256: str) -> str | None:
        with self._db.session() as session:
            return store_review.reviewer_for(session, token_sha256)

    def next_item(self, reviewer: str) -> ReviewItem | None:
        with self._db.session() as session:
            item = store_review.next_item(session, reviewer)
        if item is None:
            return None
        return ReviewItem(
            id=item.id,
            dimension=item.dimension,
            query=item.query,
            searches=item.searches,
            suggestion=item.suggestion,
            probabilities=list(item.probabilities),
            weak=item.weak,
            evidence=list(item.evidence),
            explanation=item.explanation,
            reasons=dict(item.reasons),
            version=item.version,
            strategy=item.strategy,
            wanted=item.wanted,
        )

    def labels(self, dimension: str) -> set[str]:
        if dimension == INTENT_TYPE:
            return set(INTENT_TYPES)
        if self._category_labels:
            return set(self._category_labels)
        with self._db.session() as session:
            return known_labels(session)

    def decide(self, item_id: int, reviewer: str, action: str, label: str | None, seconds: float) -> None:
        try:
            with self._db.session() as session:
                store_review.decide(
                    session,
                    item_id,
                    reviewer,
                    action,
                    label,
                    seconds,
                    purpose=self._settings.purpose,
                    gold_weight=self._settings.gold_weight,
                )
        except store_review.ReviewError as exc:  # revoked meanwhile, item gone: the reviewer's answer
            raise ReviewRequestError(409, str(exc)) from exc

    def undo_last(self, reviewer: str) -> bool:
        with self._db.session() as session:
            undone = store_review.undo_last(
                session, reviewer, purpose=self._settings.purpose, gold_weight=self._settings.gold_weight
            )
        return undone is not None

    def progress(self) -> dict[str, int]:
        with self._db.session() as session:
            return store_review.queue_counts(session)

    def double_reviewed(self) -> list[tuple[str, dict[str, str]]]:
        with self._db.session() as session:
            return store_review.double_reviewed(session, self._settings.dimension)
