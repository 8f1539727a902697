"""A simulation read without a database equals what the aggregation job reads after ingestion.

Benchmarks run the labeling functions on ``records_from_simulation`` and
``streams.simulator.labels.catalog_labels``; this proves they see what ``run_aggregation`` would,
for both traffic profiles: the events go in through the ingestion worker's own row builders and
``write_batch``, the catalog through ``load_catalog``.
"""

import pytest

from store.catalog import load_catalog
from store.db import Database
from store.events import write_batch
from store.labels import catalog_labels as stored_catalog_labels
from store.labels import iter_search_rows
from store.settings import TaxonomySettings
from streams.ingestion.batch import feedback_row, query_row
from streams.simulator import SimConfig, Simulation, simulate
from streams.simulator.labels import catalog_labels
from streams.weak.records import records_from_search_rows, records_from_simulation

pytestmark = pytest.mark.integration


def _ingest(db: Database, sim: Simulation, taxonomy: TaxonomySettings) -> None:
    with db.session() as s:
        load_catalog(s, [p.model_dump() for p in sim.catalog], taxonomy)
        write_batch(s, [query_row(q) for q in sim.queries], [feedback_row(f) for f in sim.feedback])


@pytest.mark.parametrize(
    ("config", "taxonomy"),
    [
        (SimConfig(seed=8, n_searches=800, n_products=300), TaxonomySettings()),
        (
            SimConfig.long_tail(seed=8, n_searches=800, n_products=300),
            TaxonomySettings(depth=2, labels=["electronics/audio", "home/kitchen"]),
        ),
    ],
    ids=["shop", "long_tail"],
)
def test_simulated_records_and_catalog_labels_equal_the_stored_ones(db, config, taxonomy):
    sim = simulate(config)
    _ingest(db, sim, taxonomy)
    with db.session() as s:
        from_store = records_from_search_rows(iter_search_rows(s, since=sim.config.start))
        stored = stored_catalog_labels(s)
    assert from_store == records_from_simulation(sim)
    assert stored == catalog_labels(sim, taxonomy)
    assert any(r.next_norm_text for r in from_store)  # sessions link across the stored searches
