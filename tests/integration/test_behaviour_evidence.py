"""store.labels.behaviour_evidence on real Postgres: the memory's evidence from either label table."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from store.labels import behaviour_evidence
from store.models import LabelDistribution, SearchQuery, WeakLabel

pytestmark = pytest.mark.integration

_NOW = datetime(2025, 3, 1, tzinfo=UTC)


def _searches(text: str, n: int) -> list[dict]:
    return [
        {
            "query_id": f"{text}#{k}",
            "session_id": "s",
            "ts": _NOW,
            "text": text,
            "norm_text": text,
            "locale": "en-US",
            "shown": [],
        }
        for k in range(n)
    ]


def test_weak_labels_give_their_positive_votes_and_every_query_its_searches(db):
    with db.session() as s:
        s.execute(
            insert(WeakLabel),
            [
                {"norm_text": "red shoe", "label": "fashion", "votes": 4.0, "events": 2, "last_ts": _NOW},
                {"norm_text": "red shoe", "label": "garden", "votes": 1.0, "events": 1, "last_ts": _NOW},
                {"norm_text": "red shoe", "label": "toys", "votes": -2.0, "events": 1, "last_ts": _NOW},
            ],
        )
        s.execute(insert(SearchQuery), _searches("red shoe", 3) + _searches("hose", 1))
    with db.session() as s:
        got = behaviour_evidence(s, "weak_labels")
    assert got.evidence == {"red shoe": {"fashion": 4.0, "garden": 1.0}}
    assert got.searches == {"red shoe": 3, "hose": 1}
    assert got.source == "weak_labels"


def test_aggregated_labels_give_distribution_times_evidence(db):
    common = {"method": "posterior", "reason": "", "searches": 2, "weight": 0.8}
    with db.session() as s:
        s.execute(
            insert(LabelDistribution),
            [
                {
                    "norm_text": "usb",
                    "label": "electronics",
                    "confidence": 0.75,
                    "evidence": 4.0,
                    "distribution": {"electronics": 0.75, "fashion": 0.25},
                    "abstained": False,
                    **common,
                },
                {
                    "norm_text": "mixed",
                    "label": None,
                    "confidence": 0.0,
                    "evidence": 5.0,
                    "distribution": {},
                    "abstained": True,
                    **common,
                },
                {
                    "norm_text": "thin",
                    "label": "garden",
                    "confidence": 0.6,
                    "evidence": 1.0,
                    "distribution": {"garden": 0.6, "fashion": 0.4},
                    "abstained": True,
                    **common,
                },
            ],
        )
    with db.session() as s:
        got = behaviour_evidence(s, "label_distributions")
    assert got.evidence == {
        "usb": {"electronics": 3.0, "fashion": 1.0},
        "thin": {"garden": 0.6, "fashion": 0.4},  # kept: the memory's min_evidence decides
    }
    assert got.searches == {}
