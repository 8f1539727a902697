"""What evaluation reads from the store (query frequencies) and what the gate writes (its decisions)."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import GateRecord, SearchQuery


def query_frequencies(session: Session) -> dict[str, int]:
    """Searches per normalised query over every stored search: the traffic that defines the
    head/torso/tail slices (one row per distinct query, so memory grows with the vocabulary)."""
    stmt = select(SearchQuery.norm_text, func.count()).group_by(SearchQuery.norm_text)
    return {str(text): int(n) for text, n in session.execute(stmt)}


def record_gate_decision(
    session: Session,
    *,
    run_id: int | None,
    candidate: str,
    champion: str | None,
    blessed: bool,
    reasons: Sequence[str],
    details: dict[str, Any],
) -> int:
    """Store one decision (blessed or rejected) and return its id."""
    row = GateRecord(
        run_id=run_id,
        candidate=candidate,
        champion=champion,
        blessed=blessed,
        reasons=list(reasons),
        details=details,
    )
    session.add(row)
    session.flush()
    return row.id


def gate_decisions(session: Session, candidate: str | None = None, limit: int = 50) -> list[GateRecord]:
    """Decisions, newest first; only those on ``candidate`` when given."""
    stmt = select(GateRecord).order_by(GateRecord.id.desc()).limit(limit)
    if candidate is not None:
        stmt = stmt.where(GateRecord.candidate == candidate)
    return list(session.scalars(stmt).all())


def latest_gate_by_version(session: Session) -> dict[str, bool]:
    """Each judged version's latest verdict (True: blessed), for listings."""
    latest = select(func.max(GateRecord.id)).group_by(GateRecord.candidate)
    stmt = select(GateRecord.candidate, GateRecord.blessed).where(GateRecord.id.in_(latest))
    return {str(version): bool(blessed) for version, blessed in session.execute(stmt)}
