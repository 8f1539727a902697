"""A simulation as the label aggregation job sees it, without a database (benchmarks, tests).

The job (``streams.labels_job.run_aggregation``) reads three things from Postgres: the window's
searches as ``SearchRecord`` objects, each catalog product's intent label and the gold labels. For
a simulation they are:

- records: ``streams.weak.records.records_from_simulation(sim)`` (one join of events into records;
  equal to what ``records_from_search_rows(iter_search_rows(...))`` reads back after ingestion,
  see tests/integration/test_simulator_store.py);
- :func:`catalog_labels`: what ``store.labels.catalog_labels`` reads after ``load_catalog``;
- :func:`truth_labels`: the ground truth, at the same depth, to score the labels (or as gold).

For the intent type (issue 14): :func:`catalog_kinds` is what the type labeling functions read for
the catalogue's pages, :func:`intent_type_truth` the ground truth to score them against.
"""

from typing import TYPE_CHECKING

from store.settings import TaxonomySettings
from store.taxonomy import label_for_category
from streams.events import ItemKind

if TYPE_CHECKING:  # the package imports nothing from here; keep it that way at run time too
    from streams.simulator import Simulation


def catalog_labels(sim: "Simulation", taxonomy: TaxonomySettings) -> dict[str, str]:
    """product_id -> intent label, for the products whose category has one under ``taxonomy``.

    What ``store.events.load_catalog`` stores and ``store.labels.catalog_labels`` reads back: a
    product outside a closed label set has no label and is left out, and so is a help page (its
    ``help/<topic>`` path names no product category: a click on it must not vote for one).
    """
    return {
        p.product_id: label
        for p in sim.catalog
        if p.kind is not ItemKind.help
        and (label := label_for_category(p.category_path, taxonomy)) is not None
    }


def catalog_kinds(sim: "Simulation") -> dict[str, ItemKind]:
    """product_id -> kind of every catalogue entry that is not a product (absent means product,
    as in the catalogue contract): the ``kinds`` the intent-type labeling functions take."""
    return {p.product_id: p.kind for p in sim.catalog if p.kind is not ItemKind.product}


def intent_type_truth(sim: "Simulation") -> dict[str, str]:
    """Normalised query text -> the majority intent type of its searches (buy, browse, ask, help);
    empty when the simulation had no intent types."""
    return dict(sim.intent_types)


def truth_labels(sim: "Simulation", taxonomy: TaxonomySettings) -> dict[str, str]:
    """Normalised query text -> the label of its majority intent under ``taxonomy``.

    Keyed like ``SearchRecord.norm_text`` and the aggregated distributions; texts whose intent has
    no label under a closed label set are left out.
    """
    return {
        text: label
        for text, path in sim.truth.items()
        if (label := label_for_category(path, taxonomy)) is not None
    }
