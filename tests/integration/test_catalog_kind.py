"""Catalogue entries carry a kind (product, content, help); an entry without one is a product."""

import json

import pytest
from sqlalchemy import select

from store.catalog import load_catalog
from store.models import Product
from store.settings import TaxonomySettings
from streams.codec import read_catalog_jsonl
from streams.exceptions import MalformedEventError

pytestmark = pytest.mark.integration

ENTRIES = [
    {"product_id": "p1", "category_path": "electronics/chargers", "title": "20W USB-C charger"},
    {
        "product_id": "g1",
        "category_path": "electronics/chargers",
        "title": "Which charger?",
        "kind": "content",
    },
    {
        "product_id": "h1",
        "category_path": "electronics/chargers",
        "title": "Return a charger",
        "kind": "help",
    },
]


def _kinds(db) -> dict[str, str]:
    with db.session() as s:
        return {pid: kind for pid, kind in s.execute(select(Product.product_id, Product.kind))}


def test_kinds_load_from_a_jsonl_file_and_absent_means_product(db, tmp_path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in ENTRIES) + "\n", encoding="utf-8")
    with db.session() as s:
        assert load_catalog(s, [p.model_dump() for p in read_catalog_jsonl(path)], TaxonomySettings()) == 3
    assert _kinds(db) == {"p1": "product", "g1": "content", "h1": "help"}

    # a page reloaded as another kind is updated, and a plain dict without a kind is a product
    with db.session() as s:
        load_catalog(
            s, [{**ENTRIES[1], "kind": "help"}, {k: ENTRIES[2][k] for k in ENTRIES[0]}], TaxonomySettings()
        )
    assert _kinds(db) == {"p1": "product", "g1": "help", "h1": "product"}


def test_an_unknown_kind_is_refused_with_the_line_named(db, tmp_path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps({**ENTRIES[0], "kind": "blog"}) + "\n", encoding="utf-8")
    with pytest.raises(MalformedEventError, match=r"catalog\.jsonl:1"):
        list(read_catalog_jsonl(path))
    assert _kinds(db) == {}
