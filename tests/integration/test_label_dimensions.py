"""Label dimensions in the store: one query holds a category and an intent type, each with its own
distributions, gold labels and report; rows from before dimensions are category rows."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from store.catalog import load_catalog
from store.db import Database
from store.dimensions import ASK, BROWSE, BUY, CATEGORY, HELP, INTENT_TYPE
from store.events import write_batch
from store.labels import (
    catalog_kinds,
    catalog_labels,
    distribution_snapshot,
    gold_by_purpose,
    latest_labeling_report,
    upsert_gold,
)
from store.migrate import upgrade
from store.models import Base, LabelDistribution
from store.settings import TaxonomySettings
from store.status import store_counts
from streams.labels_job import run_aggregation
from streams.weak.settings import LabelSettings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
CATALOG = [
    {"product_id": "p1", "category_path": "electronics/chargers", "title": "20W USB-C charger"},
    {"product_id": "p2", "category_path": "electronics/chargers", "title": "65W GaN charger"},
    {"product_id": "p3", "category_path": "garden/hoses", "title": "Garden hose 25m"},
    {
        "product_id": "g1",
        "category_path": "electronics/chargers",
        "title": "Which charger?",
        "kind": "content",
    },
    {"product_id": "h1", "category_path": "help/returns", "title": "Returns and refunds", "kind": "help"},
]
# (text, [(type, product, dwell ms)]): what each search's shopper did
SEARCHES = [
    ("usb c charger", [("click", "p1", 9_000), ("add_to_cart", "p1", None), ("purchase", "p1", None)]),
    ("usb c charger", [("click", "p1", 7_000), ("purchase", "p1", None)]),
    ("best charger", [("click", "p1", 40_000), ("click", "p2", 30_000), ("click", "p3", 16_000)]),
    ("best charger", [("click", "p2", 25_000), ("click", "p1", 20_000), ("click", "p3", 18_000)]),
    ("which charger do i need", [("click", "g1", 60_000)]),
    ("which charger do i need", [("click", "g1", 45_000)]),
    ("return broken charger", [("click", "h1", 20_000)]),
    ("return broken charger", [("click", "h1", 15_000), ("click", "p1", 2_000)]),
    ("garden hose", [("click", "p3", 8_000), ("purchase", "p3", None)]),
]


def _seed(db: Database) -> None:
    queries, feedback = [], []
    for i, (query, acts) in enumerate(SEARCHES):
        qid, ts = f"q{i}", T0 + timedelta(minutes=i)
        queries.append(
            {
                "query_id": qid,
                "session_id": f"s{i}",
                "ts": ts,
                "text": query,
                "norm_text": query,
                "locale": "en-GB",
                "shown": ["p1", "p2", "p3", "g1", "h1"],
            }
        )
        for k, (kind, pid, dwell) in enumerate(acts):
            feedback.append(
                {
                    "event_id": f"{qid}-{k}",
                    "query_id": qid,
                    "ts": ts + timedelta(seconds=5 + k),
                    "type": kind,
                    "product_id": pid,
                    "position": ["p1", "p2", "p3", "g1", "h1"].index(pid),
                    "dwell_ms": dwell,
                    "weight": 1.0,
                }
            )
    with db.session() as s:
        load_catalog(s, CATALOG, TaxonomySettings())
    with db.session() as s:
        write_batch(s, queries, feedback)


def test_the_migrated_schema_is_exactly_the_models(pg_url) -> None:
    """Alembic's own comparison: a column or key a migration forgot (or added twice) shows here."""
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_one_query_has_a_label_per_dimension(db) -> None:
    _seed(db)
    with db.session() as s:
        assert "h1" not in catalog_labels(s)  # a help page is about no part of the catalogue
        assert catalog_kinds(s) == {"g1": "content", "h1": "help"}
        upsert_gold(s, [("best charger", BROWSE)], dimension=INTENT_TYPE)
        upsert_gold(s, [("best charger", "electronics")])
    result = run_aggregation(db, LabelSettings(), dimensions=(CATEGORY, INTENT_TYPE), progress=False)
    assert set(result.dimensions) == {CATEGORY, INTENT_TYPE}
    types = {q: d.label for q, d in result.dimensions[INTENT_TYPE].distributions.items() if not d.abstained}
    assert types == {
        "usb c charger": BUY,
        "best charger": BROWSE,
        "which charger do i need": ASK,
        "return broken charger": HELP,
        "garden hose": BUY,
    }
    assert result.dimensions[INTENT_TYPE].report["gold_accuracy"] == 1.0
    assert result.summary()["dimensions"][INTENT_TYPE]["labelled"] == 5
    with db.session() as s:
        rows = s.execute(select(LabelDistribution.dimension, LabelDistribution.norm_text)).all()
        assert len(rows) == 10 and {d for d, _ in rows} == {CATEGORY, INTENT_TYPE}
        category = {r.norm_text: r.label for r in distribution_snapshot(s)}
        intent = {r.norm_text: r.label for r in distribution_snapshot(s, dimension=INTENT_TYPE)}
        assert category["best charger"] == "electronics" and intent["best charger"] == BROWSE
        assert gold_by_purpose(s).eval == {"best charger": "electronics"}
        assert gold_by_purpose(s, INTENT_TYPE).eval == {"best charger": BROWSE}
        report = latest_labeling_report(s, INTENT_TYPE)
        assert report is not None and report.report["dimension"] == INTENT_TYPE
        functions = {f["name"]: f for f in report.report["labeling_functions"]}
        counts = store_counts(s)  # `intentloop status`: the category's labels, then each other dimension's
        assert counts.labelled == result.summary()["labelled"] and counts.labelled_by_dimension == {
            INTENT_TYPE: 5
        }
        assert functions["opened_help"]["coverage"] == pytest.approx(1 / 5)

    # a category-only run (a single-dimension deployment) rewrites category rows only
    run_aggregation(db, LabelSettings(), progress=False)
    with db.session() as s:
        assert len(distribution_snapshot(s, dimension=INTENT_TYPE)) == 5
        assert s.scalar(text("SELECT count(*) FROM labeling_reports")) == 3


def test_rows_from_before_dimensions_become_category_rows(servers) -> None:
    """Upgrade a database holding a gold label and a distribution at 0006: both are category rows."""
    admin_url = servers[0]
    name = f"intentloop_dim_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url, "0006")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO gold_labels (norm_text, label, source) VALUES ('hose', 'garden', 'm')")
            )
            conn.execute(
                text(
                    "INSERT INTO label_distributions (norm_text, label, confidence, evidence, distribution,"
                    " abstained, reason, method)"
                    " VALUES ('hose', 'garden', 0.9, 3, '{\"garden\": 0.9}', false, '', 'm')"
                )
            )
        upgrade(url)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT dimension, norm_text FROM gold_labels")).all() == [
                ("category", "hose")
            ]
            assert conn.execute(text("SELECT dimension FROM label_distributions")).scalar_one() == "category"
            # the same query may now hold an intent type beside its category
            conn.execute(
                text(
                    "INSERT INTO gold_labels (dimension, norm_text, label, source)"
                    " VALUES ('intent_type', 'hose', 'buy', 'm')"
                )
            )
        engine.dispose()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
