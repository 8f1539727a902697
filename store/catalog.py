"""The product catalog: products and the intent label each one's category path maps to."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.models import Product
from store.settings import TaxonomySettings
from store.taxonomy import label_for_category


def load_catalog(session: Session, products: Sequence[dict[str, Any]], taxonomy: TaxonomySettings) -> int:
    """Upsert catalog rows, deriving each product's intent label from its category path; an entry
    without a ``kind`` is a product (catalogues written before kinds existed load unchanged). A help
    page (returns, order status) has no category label whatever its path: a click on it says what
    the shopper wanted to do, not which part of the catalogue they meant."""
    rows = [{"kind": "product", **p} for p in products]
    rows = [
        r | {"label": None if r["kind"] == "help" else label_for_category(r["category_path"], taxonomy)}
        for r in rows
    ]
    if not rows:
        return 0
    stmt = insert(Product)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Product.product_id],
        set_={
            "category_path": stmt.excluded.category_path,
            "label": stmt.excluded.label,
            "title": stmt.excluded.title,
            "kind": stmt.excluded.kind,
        },
    )
    for start in range(0, len(rows), 5000):
        session.execute(stmt, rows[start : start + 5000])
    return len(rows)
