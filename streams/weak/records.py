"""What weak labeling reads: one search with everything the shopper did about it.

Labeling functions judge a *search*, not a single event: "a click below skipped results" or "a
reformulation after no click" only make sense with the shown list, every interaction and the
session's next query in view. These records are that join, built once from the event contract
(:func:`records_from_events`) by whoever holds the events (the ingestion store, the simulator).
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from store.taxonomy import normalise_query
from streams.events import Feedback, FeedbackType, SearchQuery

if TYPE_CHECKING:  # only for the annotation: building records needs no simulator
    from streams.simulator import Simulation


@dataclass(frozen=True, slots=True)
class Interaction:
    """One thing the shopper did with a shown product (``position`` is the 0-based rank)."""

    type: FeedbackType
    product_id: str
    position: int
    dwell_ms: int | None
    ts: datetime


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """A search as the labeling functions see it.

    ``next_norm_text`` / ``next_gap_s`` describe the same session's next search (``None`` when this
    was the session's last one): what a reformulation looks like.
    """

    query_id: str
    session_id: str
    ts: datetime
    norm_text: str
    shown: tuple[str, ...]
    interactions: tuple[Interaction, ...] = ()
    next_norm_text: str | None = None
    next_gap_s: float | None = None

    def of_type(self, kind: FeedbackType) -> tuple[Interaction, ...]:
        """The interactions of one kind, in the order they happened."""
        return tuple(i for i in self.interactions if i.type is kind)

    def clicked_positions(self) -> frozenset[int]:
        """The ranks that got at least one click."""
        return frozenset(i.position for i in self.interactions if i.type is FeedbackType.click)

    def viewed_depth(self, fold: int) -> int:
        """How many leading positions were plausibly looked at.

        The impression events when the log has them; otherwise the fold, extended down to the deepest
        interaction (a shopper who clicked rank 7 scrolled past ranks 0-6).
        """
        deepest = max((i.position + 1 for i in self.interactions), default=0)
        if any(i.type is FeedbackType.impression for i in self.interactions):
            return min(len(self.shown), deepest)
        return min(len(self.shown), max(fold, deepest))


def records_from_events(queries: Iterable[SearchQuery], feedback: Iterable[Feedback]) -> list[SearchRecord]:
    """Join queries with their feedback and link each search to its session's next search.

    Feedback for unknown queries is dropped (the store keeps it pending; here there is nothing to
    label it with). Duplicate events (at-least-once delivery) are dropped by ``event_id``. Records
    come back in query time order.
    """
    by_query: dict[str, list[Interaction]] = defaultdict(list)
    seen: set[str] = set()
    for event in feedback:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        by_query[event.query_id].append(
            Interaction(event.type, event.product_id, event.position, event.dwell_ms, event.timestamp)
        )
    ordered = sorted({q.query_id: q for q in queries}.values(), key=lambda q: (q.timestamp, q.query_id))
    follower = _next_in_session(ordered)
    records = []
    for q in ordered:
        nxt = follower.get(q.query_id)
        interactions = sorted(by_query.get(q.query_id, ()), key=lambda i: (i.ts, i.position))
        records.append(
            SearchRecord(
                query_id=q.query_id,
                session_id=q.session_id,
                ts=q.timestamp,
                norm_text=normalise_query(q.query),
                shown=tuple(q.shown),
                interactions=tuple(interactions),
                next_norm_text=normalise_query(nxt.query) if nxt else None,
                next_gap_s=(nxt.timestamp - q.timestamp).total_seconds() if nxt else None,
            )
        )
    return records


def _next_in_session(ordered: list[SearchQuery]) -> dict[str, SearchQuery]:
    """query_id -> the next search of the same session (``ordered`` is in time order)."""
    last: dict[str, SearchQuery] = {}
    follower: dict[str, SearchQuery] = {}
    for q in ordered:
        previous = last.get(q.session_id)
        if previous is not None:
            follower[previous.query_id] = q
        last[q.session_id] = q
    return follower


def records_from_search_rows(rows: Iterable[Sequence[Any]]) -> list[SearchRecord]:
    """Records from the store's flat (search x interaction) rows (``store.labels.iter_search_rows``).

    Each row is ``(query_id, session_id, ts, norm_text, shown, type, product_id, position,
    dwell_ms, feedback_ts)``, the feedback columns ``None`` for a search without any. Rows must come
    grouped by session, its searches in ``(ts, query_id)`` order, so that one pass can link every
    search to the session's next one without holding the rows. The result is the same as
    :func:`records_from_events` on the same events: same order, same interactions, same links.
    """
    records: list[SearchRecord] = []
    session: list[tuple[Sequence[Any], list[Interaction]]] = []  # the current session's searches

    def flush() -> None:
        for k, (head, interactions) in enumerate(session):
            nxt = session[k + 1][0] if k + 1 < len(session) else None
            records.append(
                SearchRecord(
                    query_id=head[0],
                    session_id=head[1],
                    ts=head[2],
                    norm_text=head[3],
                    shown=tuple(head[4] or ()),
                    interactions=tuple(sorted(interactions, key=lambda i: (i.ts, i.position))),
                    next_norm_text=nxt[3] if nxt is not None else None,
                    next_gap_s=(nxt[2] - head[2]).total_seconds() if nxt is not None else None,
                )
            )
        session.clear()

    for row in rows:
        if not session or session[-1][0][0] != row[0]:
            if session and session[-1][0][1] != row[1]:
                flush()
            session.append((row, []))
        if row[5] is not None:
            session[-1][1].append(Interaction(FeedbackType(row[5]), row[6], row[7], row[8], row[9]))
    flush()
    records.sort(key=lambda r: (r.ts, r.query_id))
    return records


def records_from_simulation(sim: "Simulation") -> list[SearchRecord]:
    """The records of a simulated stretch of traffic (for tests and the labeling benchmark)."""
    return records_from_events(sim.queries, sim.feedback)
