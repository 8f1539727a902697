"""Everything the drift dashboard and its Prometheus endpoint show, read in one place.

One function builds one JSON-ready dict from Postgres (drift reports, window volumes, the latest
labeling report, abstentions, the adapter timeline, ingestion health) and Redis (which version
each live worker serves). The HTML page, ``/api/overview`` and ``/metrics`` all render this dict,
so the three can never disagree.
"""

from datetime import timedelta
from typing import Any

from store.db import Database
from store.drift import (
    alert_counts,
    drift_reports,
    latest_window_s,
    volume_window_counts,
    weak_label_window_counts,
)
from store.exceptions import StoreUnavailableError
from store.health import abstention_shares, adapter_timeline, ingest_health
from store.labels import latest_labeling_report
from store.models import DriftReport
from store.registry import RedisRegistry
from store.versions import CHAMPION, recorded_alias
from streams.drift.settings import DriftSettings
from streams.drift.stats import STATISTICS


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
        reports = [_report_dict(r) for r in recent]
        volume: dict[str, dict[str, int]] = {}
        labels: dict[str, dict[str, int]] = {}
        if recent:
            lo = recent[0].window_start
            hi = recent[-1].window_end
            lo = max(lo, hi - timedelta(seconds=window_s * windows))
            vol = volume_window_counts(session, since=lo, until=hi, window_s=window_s)
            lab = weak_label_window_counts(session, since=lo, until=hi, window_s=window_s)
            volume = {k.isoformat(): v for k, v in sorted(vol.items())}
            labels = {k.isoformat(): v for k, v in sorted(lab.items())}
        labeling = latest_labeling_report(session)
        lf_rows = []
        if labeling is not None:
            for row in labeling.report.get("labeling_functions", []):
                lf_rows.append(
                    {
                        "name": row.get("name"),
                        "coverage": row.get("coverage"),
                        "conflict": row.get("conflict"),
                        "overlap": row.get("overlap"),
                        "accuracy": row.get("accuracy"),
                    }
                )
        data: dict[str, Any] = {
            "window_s": window_s,
            "thresholds": {
                "js": settings.js_alert,
                "psi": settings.psi_alert,
                "psi_warn": settings.psi_warn,
                "hellinger": settings.hellinger_alert,
                "linf": settings.linf_alert,
            },
            "reports": reports,
            "alerts_total": [
                {"stream": s, "reference": r, "count": n}
                for (s, r), n in sorted(alert_counts(session).items())
            ],
            "volume": volume,
            "label_volume": labels,
            "labeling": {
                "report_id": labeling.id if labeling else None,
                "computed_at": labeling.computed_at.isoformat() if labeling else None,
                "functions": lf_rows,
                "coverage": labeling.report.get("coverage") if labeling else None,
            },
            "abstentions": abstention_shares(session),
            "timeline": adapter_timeline(session),
            "health": ingest_health(session),
            "champion": recorded_alias(session, CHAMPION),
        }
    data["workers"] = _workers(registry)
    return data


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
