"""The drift job on simulated traffic in real Postgres: an injected drift is detected soon after its
onset, stationary traffic raises nothing, alerts reach Kafka, the log and Redis exactly once."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from drift_helpers import seed_champion, seed_traffic
from kafka import KafkaConsumer
from sqlalchemy import func, select

from store.drift import record_prediction_counts
from store.models import DriftReport, PredictionCount
from store.registry import RedisRegistry
from streams import topics
from streams.drift.job import PREVIOUS, TRAINING, WEAK_LABELS, KafkaAlertSink, run_drift_check
from streams.drift.settings import DriftSettings
from streams.kafka import ensure_topics
from streams.simulator import DriftInjection, SimConfig, simulate

pytestmark = pytest.mark.integration

WINDOW_S = 20
SETTINGS = DriftSettings(window_s=WINDOW_S, clock="events", settle_s=0, refresh_on_alert=True)


def _alerts(reports, reference=None):
    return [r for r in reports if r["alert"] and (reference is None or r["reference"] == reference)]


def test_injected_drift_is_detected_within_a_window_of_its_onset(
    db, redis_url, redis_prefix, kafka_bootstrap, caplog
):
    sim = simulate(
        SimConfig(seed=7, n_searches=6000, drift=DriftInjection(at=0.5, surge="garden", new="pets"))
    )
    onset = sim.drift_onset
    assert onset is not None
    seed_traffic(db, sim)
    seed_champion(db, sim, trained_at=onset)
    ensure_topics(kafka_bootstrap, partitions=1)
    sink = KafkaAlertSink(kafka_bootstrap)
    seen: list[dict] = []
    with RedisRegistry(redis_url, prefix=redis_prefix) as registry, caplog.at_level(logging.WARNING):
        result = run_drift_check(
            db, SETTINGS, since=sim.queries[0].timestamp, sinks=[sink, seen.append], registry=registry
        )
        sink.close()
        refresh = registry.pending_refresh()

    before = [r for r in result.reports if r["window_end"] <= onset]
    assert before, "windows before the onset were compared"
    assert _alerts(before) == [], [r["reasons"] for r in _alerts(before)]
    judged_before = [r for r in before if r["status"] != "insufficient"]
    assert len(judged_before) >= 2

    first_prev = min(_alerts(result.reports, PREVIOUS), key=lambda r: r["window_end"])
    assert first_prev["window_start"] <= onset < first_prev["window_end"] or (
        first_prev["window_start"] - onset < timedelta(seconds=WINDOW_S)
    )
    assert first_prev["window_end"] - onset <= timedelta(seconds=2 * WINDOW_S)
    assert first_prev["stream"] == WEAK_LABELS
    moved = {m["label"]: m["delta"] for m in first_prev["details"]["moves"]}
    assert moved["garden"] > 0.05  # the surge moved most (or nearly)
    assert moved["pets"] > 0.02

    after_training = [r for r in _alerts(result.reports, TRAINING) if r["window_start"] >= onset]
    assert after_training, "post-onset windows alert against the pre-onset training snapshot"
    assert any("pets" in r["new_labels"] or "psi" in " ".join(r["reasons"]) for r in after_training)

    # every first-time alert went everywhere once
    assert len(seen) == len(_alerts(result.reports)) == len(result.alerts)
    assert sum("drift alert:" in rec.getMessage() for rec in caplog.records) == len(seen)
    assert refresh is not None and refresh["champion"] == "c0ffee00c0ffee00"
    consumer = KafkaConsumer(
        topics.ALERTS,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    published = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert sorted(a["report_id"] for a in published) == sorted(a["report_id"] for a in seen)
    assert {a["type"] for a in published} == {"label_drift"}

    # a second check recomputes the same windows and raises nothing new
    again = run_drift_check(db, SETTINGS, since=sim.queries[0].timestamp)
    assert again.alerts == []
    with db.session() as session:
        stored = session.scalar(select(func.count()).select_from(DriftReport))
    assert stored == len(result.reports) == len(again.reports)


def test_stationary_traffic_raises_no_alert(db):
    sim = simulate(SimConfig(seed=7, n_searches=6000))
    seed_traffic(db, sim)
    mid = sim.queries[len(sim.queries) // 2].timestamp
    seed_champion(db, sim, trained_at=mid)
    result = run_drift_check(db, SETTINGS, since=sim.queries[0].timestamp)
    judged = [r for r in result.reports if r["status"] != "insufficient"]
    assert {r["reference"] for r in judged} == {PREVIOUS, TRAINING}
    assert len(judged) >= 8
    assert _alerts(result.reports) == [], [r["reasons"] for r in _alerts(result.reports)]
    assert result.alerts == []


def test_prediction_counts_are_summed_into_windows_and_compared(db):
    t0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    with db.session() as session:
        for minute in range(4):
            counts = {"fashion": 300, "garden": 100} if minute < 3 else {"fashion": 100, "garden": 300}
            record_prediction_counts(session, t0 + timedelta(minutes=minute), "v1", counts)
        record_prediction_counts(session, t0, "v1", {"fashion": 10})  # a second flush adds up
        record_prediction_counts(session, t0, "v1", {})  # nothing to add
    with db.session() as session:
        first = session.scalar(
            select(PredictionCount.count).where(
                PredictionCount.window_start == t0, PredictionCount.label == "fashion"
            )
        )
    assert first == 310
    settings = DriftSettings(window_s=60, clock="events", settle_s=0)
    result = run_drift_check(db, settings, since=t0, until=t0 + timedelta(minutes=4))
    prev = [r for r in result.reports if r["stream"] == "predictions" and r["reference"] == PREVIOUS]
    assert [r["alert"] for r in prev] == [False, False, True]
