"""Everything the drift dashboard and its Prometheus endpoint show, read in one place.

One function builds one JSON-ready dict from Postgres (drift reports, window volumes, the latest
labeling report, abstentions, the adapter timeline, ingestion health, the newest global view of
explanations) and Redis (which version each live worker serves). The HTML page, ``/api/overview``
and ``/metrics`` all render this dict, so the three can never disagree.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.drift import (
    alert_counts,
    drift_reports,
    latest_window_s,
    volume_window_counts,
    weak_label_window_counts,
)
from store.exceptions import StoreUnavailableError
from store.explanations import GlobalView, latest_global_view
from store.health import abstention_shares, adapter_timeline, ingest_health
from store.labels import latest_labeling_report
from store.models import DriftReport
from store.registry import RedisRegistry
from store.versions import CHAMPION, recorded_alias
from streams.drift.settings import DriftSettings
from streams.drift.stats import STATISTICS

HELP_SURGE_REFERENCE = "help_surge"  # the drift job's reference of a help-surge row


def _report_dict(r: DriftReport) -> dict[str, Any]:
    return {
        "id": r.id,
        "stream": r.stream,
        "reference": r.reference,
        "window_start": r.window_start.isoformat(),
        "window_end": r.window_end.isoformat(),
        "version": r.version,
        "n": r.n,
        "n_reference": r.n_reference,
        **{k: getattr(r, k) for k in STATISTICS},
        "p_value": r.p_value,
        "status": r.status,
        "alert": r.alert,
        "alerted_at": r.alerted_at.isoformat() if r.alerted_at else None,
        "new_labels": list(r.new_labels),
        "vanished_labels": list(r.vanished_labels),
        "reasons": list(r.reasons),
        "moves": list(r.details.get("moves", [])),
        "psi_band": r.details.get("psi_band"),
    }


def build_overview(
    db: Database, registry: RedisRegistry | None, settings: DriftSettings, *, windows: int = 96
) -> dict[str, Any]:
    """The dashboard's data: the last ``windows`` windows of the newest report's window length."""
    with db.session() as session:
        window_s = latest_window_s(session) or settings.window_s
        recent = drift_reports(session, limit=windows * 4, window_s=window_s)
        volume, labels = _window_volumes(session, recent, window_s, windows)
        data: dict[str, Any] = {
            "window_s": window_s,
            "thresholds": {
                "js": settings.js_alert,
                "psi": settings.psi_alert,
                "psi_warn": settings.psi_warn,
                "hellinger": settings.hellinger_alert,
                "linf": settings.linf_alert,
            },
            "reports": [_report_dict(r) for r in recent],
            "alerts_total": [
                {"stream": s, "reference": r, "count": n}
                for (s, r), n in sorted(alert_counts(session).items())
            ],
            "volume": volume,
            "label_volume": labels,
            "labeling": _labeling(session),
            "labeling_intent_type": _labeling(session, INTENT_TYPE),
            "intent_volume": {
                r.window_start.isoformat(): dict(r.details.get("counts") or {})
                for r in recent
                if r.reference == HELP_SURGE_REFERENCE
            },
            "abstentions": abstention_shares(session),
            "timeline": adapter_timeline(session),
            "health": ingest_health(session),
            "champion": recorded_alias(session, CHAMPION),
            "explanations": explanations_dict(latest_global_view(session)),
        }
    data["workers"] = _workers(registry)
    return data


def _window_volumes(
    session: Session, recent: list[DriftReport], window_s: int, windows: int
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Searches and weak labels per window (ISO start -> counts) over the reports' span, at most
    ``windows`` windows back from the newest."""
    if not recent:
        return {}, {}
    hi = recent[-1].window_end
    lo = max(recent[0].window_start, hi - timedelta(seconds=window_s * windows))
    vol = volume_window_counts(session, since=lo, until=hi, window_s=window_s)
    lab = weak_label_window_counts(session, since=lo, until=hi, window_s=window_s)
    return {k.isoformat(): v for k, v in sorted(vol.items())}, {
        k.isoformat(): v for k, v in sorted(lab.items())
    }


def _labeling(session: Session, dimension: str = CATEGORY) -> dict[str, Any]:
    """The latest labeling report's per-function coverage, conflict, overlap and accuracy."""
    labeling = latest_labeling_report(session, dimension)
    functions = [
        {key: row.get(key) for key in ("name", "coverage", "conflict", "overlap", "accuracy")}
        for row in (labeling.report.get("labeling_functions", []) if labeling is not None else [])
    ]
    return {
        "report_id": labeling.id if labeling else None,
        "computed_at": labeling.computed_at.isoformat() if labeling else None,
        "functions": functions,
        "coverage": labeling.report.get("coverage") if labeling else None,
    }


EXPLAINED_WORDS = 8  # words shown per label, largest total push first
EXPLAINED_EXAMPLES = 6  # example queries shown, most searched first


def explanations_dict(view: GlobalView | None) -> dict[str, Any] | None:
    """The newest global view per label, cut to what the dashboard shows (``None`` when none was
    computed): per label its top words by total push, and the most searched explained queries."""
    if view is None:
        return None
    labels: dict[str, list[dict[str, Any]]] = {}
    for w in view.words:  # ordered by label, then total push, largest first
        shown = labels.setdefault(w.label, [])
        if len(shown) < EXPLAINED_WORDS:
            shown.append(
                {
                    "word": w.word,
                    "attribution": w.attribution,
                    "total": w.total,
                    "queries": w.queries,
                    "searches": w.searches,
                    "share": w.share,
                }
            )
    return {
        "version": view.version,
        "method": view.method,
        "computed_at": view.computed_at.isoformat(timespec="seconds"),
        "labels": labels,
        "examples": [
            {
                "query": e.query,
                "label": e.label,
                "probability": e.probability,
                "words": [[word, a] for word, a in e.words],
            }
            for e in view.examples[:EXPLAINED_EXAMPLES]
        ],
    }


def _workers(registry: RedisRegistry | None) -> dict[str, Any]:
    """Live workers from their Redis heartbeats (gone after 30 s without one)."""
    if registry is None:
        return {"available": False, "workers": []}
    try:
        live = registry.workers()
    except StoreUnavailableError as exc:
        return {"available": False, "error": str(exc), "workers": []}
    return {
        "available": True,
        "workers": [
            {
                "worker": wid,
                "version": info.get("version"),
                "aliases": info.get("aliases") or {},
                "at": info.get("at"),
            }
            for wid, info in sorted(live.items())
        ],
    }


def latest_per_pair(reports: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest judged window's report of each (stream, reference) pair.

    A window with too few samples to judge (a quiet hour, the trickle of late purchases after a
    replay) says nothing about drift, so the newest one with enough samples stands for the pair;
    only a pair that never had one shows its newest insufficient window.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reports:  # oldest first: later ones overwrite
        key = (r["stream"], r["reference"])
        if r["status"] != "insufficient" or out.get(key, r)["status"] == "insufficient":
            out[key] = r
    return out
