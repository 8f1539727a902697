"""Operational health for the dashboard: ingestion rates, dead letters, abstentions, the adapter timeline."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.dimensions import CATEGORY
from store.models import (
    AdapterVersion,
    AliasEvent,
    DeadLetter,
    FeedbackEvent,
    GateRecord,
    LabelDistribution,
    SearchQuery,
)


def ingest_health(session: Session, *, minutes: float = 15.0) -> dict[str, Any]:
    """Ingestion over the last ``minutes`` by ingest (wall) time, and the dead-letter rate ever.

    Events per minute counts stored feedback (the bulk of the stream; searches carry no ingest
    time); the dead-letter rate is dead letters over everything that arrived.
    """
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    recent_fb = session.scalar(select(func.count()).where(FeedbackEvent.ingested_at >= since)) or 0
    recent_dl = session.scalar(select(func.count()).where(DeadLetter.created_at >= since)) or 0
    total_fb = session.scalar(select(func.count()).select_from(FeedbackEvent)) or 0
    total_q = session.scalar(select(func.count()).select_from(SearchQuery)) or 0
    total_dl = session.scalar(select(func.count()).select_from(DeadLetter)) or 0
    arrived = total_fb + total_q + total_dl
    return {
        "minutes": minutes,
        "feedback_per_minute": round(recent_fb / minutes, 2),
        "dead_letters_per_minute": round(recent_dl / minutes, 2),
        "events_total": int(total_fb + total_q),
        "dead_letters_total": int(total_dl),
        "dead_letter_rate": round(total_dl / arrived, 6) if arrived else 0.0,
    }


def abstention_shares(session: Session) -> dict[str, Any]:
    """The latest aggregation's abstentions of the category dimension: total share and by reason."""
    rows = session.execute(
        select(LabelDistribution.abstained, LabelDistribution.reason, func.count())
        .where(LabelDistribution.dimension == CATEGORY)
        .group_by(LabelDistribution.abstained, LabelDistribution.reason)
    ).all()
    total = sum(int(n) for _, _, n in rows)
    by_reason = {str(reason or "?"): int(n) for abstained, reason, n in rows if abstained}
    abstained = sum(by_reason.values())
    return {
        "queries": total,
        "abstained": abstained,
        "share": round(abstained / total, 4) if total else None,
        "by_reason": dict(sorted(by_reason.items())),
    }


def adapter_timeline(session: Session, *, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Versions (with their latest gate verdict, if gated) and every alias move, oldest first."""
    versions = list(
        session.scalars(select(AdapterVersion).order_by(AdapterVersion.created_at.desc()).limit(limit))
    )
    verdicts: dict[str, tuple[bool, list[str]]] = {}
    for rec in session.scalars(select(GateRecord).order_by(GateRecord.id)):
        verdicts[rec.candidate] = (rec.blessed, list(rec.reasons))
    moves = list(session.scalars(select(AliasEvent).order_by(AliasEvent.id.desc()).limit(limit)))
    return {
        "versions": [
            {
                "version": v.version,
                "created_at": v.created_at.isoformat(),
                "val_macro_f1": v.metrics.get("val_macro_f1"),
                "gate": None
                if v.version not in verdicts
                else ("blessed" if verdicts[v.version][0] else "rejected"),
                "gate_reasons": verdicts.get(v.version, (None, []))[1],
            }
            for v in reversed(versions)
        ],
        "alias_events": [
            {
                "alias": m.alias,
                "version": m.version,
                "previous": m.previous,
                "action": m.action,
                "actor": m.actor,
                "reason": m.reason,
                "at": m.at.isoformat(),
            }
            for m in reversed(moves)
        ],
    }
