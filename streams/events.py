"""The event contract (docs/schemas/*.json is generated from these models and checked in CI).

Both input topics are keyed by ``query_id`` so a query and its feedback land on the same partition
number and are joined by one worker.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class FeedbackType(StrEnum):
    """What the shopper did with a shown product."""

    impression = "impression"
    click = "click"
    add_to_cart = "add_to_cart"
    purchase = "purchase"
    return_ = "return"


class ItemKind(StrEnum):
    """What a catalogue page is, so that a click on it says what the shopper wanted: buy, read, get help."""

    product = "product"
    content = "content"
    help = "help"


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class SearchQuery(_Event):
    """One search as the engine answered it (topic ``search.queries``)."""

    query_id: str = Field(min_length=1, max_length=128)
    session_id: str = Field(min_length=1, max_length=128)
    timestamp: datetime
    query: str = Field(min_length=1, max_length=512)
    locale: str = Field(default="en-US", min_length=2, max_length=16)
    shown: list[str] = Field(default_factory=list, max_length=200, description="ranked product ids")


class Feedback(_Event):
    """One interaction with a shown product (topic ``search.feedback``)."""

    event_id: str = Field(min_length=1, max_length=128)
    query_id: str = Field(min_length=1, max_length=128)
    timestamp: datetime
    type: FeedbackType
    product_id: str = Field(min_length=1, max_length=128)
    position: int = Field(ge=0, le=10_000, description="0-based rank in the shown list")
    # The store keeps dwell in an int4 column, whose binary COPY would wrap a larger value silently.
    dwell_ms: int | None = Field(default=None, ge=0, le=2**31 - 1)


class Product(_Event):
    """A catalog entry: product id -> category path and title (loaded with ``intentloop catalog load``)."""

    product_id: str = Field(min_length=1, max_length=128)
    category_path: str = Field(min_length=1, max_length=512, description="e.g. fashion/shoes/running")
    title: str = Field(min_length=1, max_length=512)
    kind: ItemKind = Field(
        default=ItemKind.product,
        description="what the page is: product (something to buy; the default when absent), content "
        "(a guide, review or FAQ a shopper reads) or help (order status, returns, contact); a click "
        "on it says what the shopper wanted to do",
    )
