"""The shop's pages that are not products: a buying guide per leaf and a few help pages.

With ``SimConfig.intent_types`` on, the catalogue lists them after the products (product ids and
indices unchanged) with the catalogue contract's ``kind``: ``content`` for a guide (its category is
its leaf's, so a click on it still says which part of the catalogue the search was about) and
``help`` for a help page (category ``help/<topic>``: a help page says nothing about a product
category, so ``streams.simulator.labels.catalog_labels`` leaves it out). Nothing here draws from an
rng: the pages are fixed by the taxonomy.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from streams.events import ItemKind, Product
from streams.simulator.vocabulary import Leaf

# Help topics, in id order (H-000001 is the first): what a shop's customer service pages cover.
HELP_TOPICS: tuple[tuple[str, str], ...] = (
    ("returns-and-refunds", "Returns and refunds"),
    ("track-your-order", "Track your order"),
    ("delivery", "Delivery options and times"),
    ("payment", "Payment methods and problems"),
    ("cancel-an-order", "Cancel an order"),
    ("warranty-and-repairs", "Warranty and repairs"),
    ("contact-customer-service", "Contact customer service"),
    ("account-and-password", "Your account and password"),
)
HELP_TOPIC_INDEX = {slug: i for i, (slug, _) in enumerate(HELP_TOPICS)}


@dataclass(frozen=True)
class Pages:
    """The pages as catalogue entries, with the index tables the engine needs."""

    products: list[Product]  # guides in leaf order, then help pages in HELP_TOPICS order
    guide_ids: list[str]  # leaf index -> its guide's id
    help_ids: list[str]  # HELP_TOPICS index -> the page's id


def guide_title(leaf: Leaf) -> str:
    """``"How to choose running shoes: buying guide and FAQ"``."""
    return f"How to choose {leaf.nouns[0]}: buying guide and FAQ"


def build_pages(leaves: Sequence[Leaf]) -> Pages:
    """One guide per leaf (``C-000001``...) and one page per help topic (``H-000001``...)."""
    guides = [
        Product(
            product_id=f"C-{i + 1:06d}",
            category_path=leaf.path,
            title=guide_title(leaf),
            kind=ItemKind.content,
        )
        for i, leaf in enumerate(leaves)
    ]
    helps = [
        Product(product_id=f"H-{i + 1:06d}", category_path=f"help/{slug}", title=title, kind=ItemKind.help)
        for i, (slug, title) in enumerate(HELP_TOPICS)
    ]
    return Pages(guides + helps, [p.product_id for p in guides], [p.product_id for p in helps])
