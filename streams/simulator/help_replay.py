"""Real customer-service requests replayed as searches whose shoppers open help pages.

The simulator's help-seekers type templates ("refund broken <product>"); real people write
"I want to know how I can get my money back, my order came damaged". To check the *help* intent
on real text, a file of real requests (the Bitext customer-support sample in ``../shared/data``:
orders, refunds, delivery, payment, invoices, complaints, accounts) is replayed as searches: each
request is typed into the shop's search box, the results show the help pages, and the shopper
opens the one for its topic (or, sometimes, none). The events are ordinary ``SearchQuery`` and
``Feedback`` events, so they go through ingestion, weak labelling and training like any traffic.
"""

import csv
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from store.taxonomy import normalise_query
from streams.events import Feedback, FeedbackType, SearchQuery
from streams.simulator.pages import HELP_TOPIC_INDEX

# A request's category (Bitext's column) -> the help page it leads to (streams.simulator.pages).
TOPIC_OF: dict[str, str] = {
    "ORDER": "track-your-order",
    "REFUND": "returns-and-refunds",
    "DELIVERY": "delivery",
    "SHIPPING_ADDRESS": "delivery",
    "PAYMENT": "payment",
    "INVOICE": "payment",
    "CANCELLATION_FEE": "cancel-an-order",
    "FEEDBACK": "contact-customer-service",  # complaints and reviews of the service
    "CONTACT": "contact-customer-service",
    "ACCOUNT": "account-and-password",
}


@dataclass(frozen=True)
class Request:
    """One real customer-service request and the help topic it is about."""

    text: str  # normalised
    category: str
    topic: str


def read_requests(
    path: Path, text_column: str = "instruction", category_column: str = "category"
) -> list[Request]:
    """The file's requests whose category has a help page (others are left out), distinct texts,
    in file order. ``ValueError`` naming the columns when the file lacks one."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (text_column, category_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} has no column {', '.join(missing)} (its columns: {reader.fieldnames})")
        seen: set[str] = set()
        out = []
        for row in reader:
            text, category = normalise_query(row[text_column] or ""), (row[category_column] or "").strip()
            if text and category in TOPIC_OF and text not in seen:
                seen.add(text)
                out.append(Request(text, category, TOPIC_OF[category]))
    return out


def replay_requests(
    requests: Sequence[Request],
    help_ids: Sequence[str],
    *,
    start: datetime,
    span_s: float,
    seed: int,
    open_rate: float = 0.8,
) -> tuple[list[SearchQuery], list[Feedback]]:
    """One search per request, spread uniformly over ``span_s`` seconds from ``start``: the help
    pages shown (its topic's first), its topic's page opened with chance ``open_rate`` after a few
    seconds (a long read). ``help_ids``: the catalogue's help pages in ``HELP_TOPICS`` order."""
    rng = random.Random(f"help-replay:{seed}")
    queries: list[SearchQuery] = []
    feedback: list[Feedback] = []
    for req in requests:
        ts = start + timedelta(seconds=rng.random() * span_s)
        query_id = str(uuid.UUID(int=rng.getrandbits(128)))
        page = help_ids[HELP_TOPIC_INDEX[req.topic]]
        shown = [page, *(p for p in help_ids if p != page)]
        queries.append(
            SearchQuery(
                query_id=query_id,
                session_id=str(uuid.UUID(int=rng.getrandbits(128))),
                timestamp=ts,
                query=req.text,
                locale="en-GB",
                shown=shown,
            )
        )
        if rng.random() < open_rate:
            feedback.append(
                Feedback(
                    event_id=f"{query_id}-00",
                    query_id=query_id,
                    timestamp=ts + timedelta(seconds=2 + 6 * rng.random()),
                    type=FeedbackType.click,
                    product_id=page,
                    position=0,
                    dwell_ms=int(20_000 + 60_000 * rng.random()),
                )
            )
    queries.sort(key=lambda q: q.timestamp)
    feedback.sort(key=lambda f: f.timestamp)
    return queries, feedback
