"""Seeding Postgres for the drift tests straight from a simulation (no Kafka, no worker: fast).

Rows are what ingestion would have stored: every search, and every feedback event with its
labeling-function weight and its product's label (``voted`` when some function fired).
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from store.db import Database
from store.models import (
    AdapterVersion,
    AliasEvent,
    FeedbackEvent,
    GateRecord,
    LabelDistribution,
    LabelingReport,
    SearchQuery,
    TrainingRun,
)
from store.settings import TaxonomySettings
from store.taxonomy import label_for_category, normalise_query
from streams.ingestion.votes import vote_weight
from streams.simulator import Simulation
from streams.simulator.labels import catalog_labels

TAX = TaxonomySettings()


def seed_traffic(db: Database, sim: Simulation) -> None:
    labels = catalog_labels(sim, TAX)  # as ingestion sees the catalog: help pages vote for no category
    queries = [
        {
            "query_id": q.query_id,
            "session_id": q.session_id,
            "ts": q.timestamp,
            "text": q.query,
            "norm_text": normalise_query(q.query),
            "locale": q.locale,
            "shown": list(q.shown),
        }
        for q in sim.queries
    ]
    feedback: list[dict[str, Any]] = []
    for f in sim.feedback:
        weight = vote_weight(f)
        feedback.append(
            {
                "event_id": f.event_id,
                "query_id": f.query_id,
                "ts": f.timestamp,
                "type": f.type.value,
                "product_id": f.product_id,
                "position": f.position,
                "dwell_ms": f.dwell_ms,
                "weight": weight,
                "status": "voted" if weight > 0 and labels.get(f.product_id) else "no_vote",
                "label": labels.get(f.product_id),
            }
        )
    with db.session() as session:
        for start in range(0, len(queries), 5000):
            session.execute(insert(SearchQuery), queries[start : start + 5000])
        for start in range(0, len(feedback), 5000):
            session.execute(insert(FeedbackEvent), feedback[start : start + 5000])


def seed_champion(
    db: Database, sim: Simulation, *, trained_at: datetime, version: str = "c0ffee00c0ffee00"
) -> str:
    """A champion trained at ``trained_at`` on the true labels of the queries searched before it,
    with a gate verdict and a promotion (what the trainer and ``registry promote`` record)."""
    seen = {normalise_query(q.query) for q in sim.queries if q.timestamp <= trained_at}
    rows = [
        {
            "norm_text": norm,
            "label": label_for_category(sim.truth[norm], TAX),
            "confidence": 1.0,
            "evidence": 5.0,
            "distribution": {},
            "abstained": False,
            "reason": "",
            "method": "majority",
        }
        for norm in sorted(seen)
    ]
    with db.session() as session:
        session.execute(insert(LabelDistribution), rows)
        run = TrainingRun(
            started_at=trained_at,
            finished_at=trained_at + timedelta(minutes=2),
            status="succeeded",
            trigger="test",
            params={"min_confidence": 0.6},
            snapshot={"source": "label_distributions", "queries": len(rows), "min_confidence": 0.6},
            metrics={"val_macro_f1": 0.93},
            version=version,
        )
        session.add(run)
        session.flush()
        session.add(
            AdapterVersion(
                version=version,
                created_at=trained_at + timedelta(minutes=2),
                base_model="tiny",
                labels={"labels": sorted({r["label"] for r in rows})},
                metrics={"val_macro_f1": 0.93},
                artifact_uri="/nowhere",
                training_run_id=run.id,
            )
        )
        session.flush()
        session.add(
            GateRecord(
                run_id=run.id,
                candidate=version,
                champion=None,
                blessed=True,
                reasons=["first champion"],
                details={},
            )
        )
        session.add(
            AliasEvent(
                alias="champion",
                version=version,
                previous=None,
                action="promote",
                actor="test",
                reason="seeded",
                at=trained_at + timedelta(minutes=3),
            )
        )
        session.add(
            LabelingReport(
                report={
                    "coverage": 0.77,
                    "labeling_functions": [
                        {
                            "name": "purchase",
                            "coverage": 0.21,
                            "conflict": 0.02,
                            "overlap": 0.2,
                            "accuracy": 0.99,
                        },
                        {
                            "name": "click_dwell",
                            "coverage": 0.66,
                            "conflict": 0.08,
                            "overlap": 0.3,
                            "accuracy": 0.95,
                        },
                    ],
                }
            )
        )
    return version
