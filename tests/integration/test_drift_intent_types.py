"""The intent-type stream in the drift job, and the help-surge alert (exact counts)."""

from datetime import UTC, datetime, timedelta

import pytest

from store.catalog import load_catalog
from store.drift import record_prediction_counts
from store.events import write_batch
from store.settings import TaxonomySettings
from streams.drift.job import HELP_SURGE, INTENT_TYPES, PREVIOUS, SERVED_INTENT_TYPES, run_drift_check
from streams.drift.settings import DriftSettings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = 3600
CATALOG = [
    {"product_id": "p1", "category_path": "electronics/chargers", "title": "USB-C charger"},
    {"product_id": "h1", "category_path": "help/returns", "title": "Returns", "kind": "help"},
]


def _seed(db, windows: list[tuple[int, int]]) -> None:
    """Per hour: (buy searches, help searches); buyers purchase p1, help-seekers open h1."""
    queries, feedback = [], []
    for hour, (buys, helps) in enumerate(windows):
        for i in range(buys + helps):
            qid, ts = f"q{hour}-{i}", T0 + timedelta(seconds=hour * HOUR + 10 * i)
            is_help = i >= buys
            text = "return my charger" if is_help else "usb c charger"
            queries.append(
                {
                    "query_id": qid,
                    "session_id": qid,
                    "ts": ts,
                    "text": text,
                    "norm_text": text,
                    "locale": "en-GB",
                    "shown": ["p1", "h1"],
                }
            )
            pid, kind = ("h1", "click") if is_help else ("p1", "purchase")
            feedback.append(
                {
                    "event_id": f"{qid}-0",
                    "query_id": qid,
                    "ts": ts + timedelta(seconds=3),
                    "type": kind,
                    "product_id": pid,
                    "position": 0,
                    "dwell_ms": 30_000 if is_help else None,
                    "weight": 1.0,
                }
            )
    with db.session() as s:
        load_catalog(s, CATALOG, TaxonomySettings())
    with db.session() as s:
        write_batch(s, queries, feedback)


def test_a_help_surge_alerts_once_and_the_stream_is_compared(db) -> None:
    # three quiet hours (5% help), then a surge (40%), then back to normal
    _seed(db, [(95, 5), (95, 5), (95, 5), (60, 40), (95, 5)])
    settings = DriftSettings(
        window_s=HOUR, clock="events", settle_s=0, lookback_windows=5, min_samples=50, min_reference=50
    )
    result = run_drift_check(
        db, settings, since=T0 + timedelta(hours=1), dimensions=("category", "intent_type")
    )
    rows = [r for r in result.reports if r["stream"] == INTENT_TYPES]
    surges = [r for r in rows if r["reference"] == HELP_SURGE]
    assert [r["window_start"] for r in surges] == [T0 + timedelta(hours=h) for h in (1, 2, 3, 4)]
    assert [r["alert"] for r in surges] == [False, False, True, False]
    surge = surges[2]
    assert surge["n"] == 100 and surge["reasons"][0].startswith("help surge: 40.0% of 100 searches")
    assert [a["reference"] for a in result.alerts if a["stream"] == INTENT_TYPES].count(HELP_SURGE) == 1
    previous = [r for r in rows if r["reference"] == PREVIOUS]
    assert len(previous) == 4 and previous[2]["alert"]  # the distribution moved too
    # a second check finds the same alert already raised: nothing new
    again = run_drift_check(
        db, settings, since=T0 + timedelta(hours=1), dimensions=("category", "intent_type")
    )
    assert not [a for a in again.alerts if a["stream"] == INTENT_TYPES]
    # what the intent-type heads served is its own stream, window against window
    with db.session() as s:
        for hour, help_share in enumerate((5, 5, 5, 40, 5)):
            at = T0 + timedelta(hours=hour)
            record_prediction_counts(
                s, at, "v1", {"buy": 100 - help_share, "help": help_share}, "intent_type"
            )
            record_prediction_counts(s, at, "v1", {"electronics": 100})  # the category head's, apart
    served = run_drift_check(
        db, settings, since=T0 + timedelta(hours=1), dimensions=("category", "intent_type")
    )
    rows = [r for r in served.reports if r["stream"] == SERVED_INTENT_TYPES]
    assert [(r["window_start"].hour, r["n"], r["alert"]) for r in rows] == [
        (1, 100, False),
        (2, 100, False),
        (3, 100, True),
        (4, 100, True),
    ]
    category = [r for r in served.reports if r["stream"] == "predictions" and r["reference"] == PREVIOUS]
    assert {r["n"] for r in category} == {100}  # the intent-type counts are not the category's
    # single-dimension deployments see no intent-type rows at all
    plain = run_drift_check(db, settings, since=T0 + timedelta(hours=1))
    assert not [r for r in plain.reports if r["stream"] == INTENT_TYPES]


def test_the_dashboard_shows_searches_per_intent_type_and_the_surge(db) -> None:
    from intentloop.dashboard.page import render_page
    from streams.drift.overview import build_overview

    _seed(db, [(95, 5), (95, 5), (60, 40)])
    settings = DriftSettings(window_s=HOUR, clock="events", settle_s=0, lookback_windows=3, min_samples=50)
    run_drift_check(db, settings, since=T0 + timedelta(hours=1), dimensions=("category", "intent_type"))
    data = build_overview(db, None, settings)
    assert data["intent_volume"] == {
        (T0 + timedelta(hours=1)).isoformat(): {"buy": 95, "help": 5},
        (T0 + timedelta(hours=2)).isoformat(): {"buy": 60, "help": 40},
    }
    page = render_page(data)
    assert "Intent types: searches per window" in page and "help surge" in page
