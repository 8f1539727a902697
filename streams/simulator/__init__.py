"""Synthetic e-commerce search traffic with known ground truth, deterministic for a seed.

>>> sim = simulate(SimConfig(seed=7, n_searches=1_000))
>>> for topic, key, event in sim.events():  # time order; both topics keyed by query_id
...     producer.send(topic, key, codec.encode(event))

``sim.truth`` maps each normalised query text seen to the full category path of its majority intent
(``store.taxonomy.label_for_category`` turns that into a label at the configured depth;
``streams.simulator.labels`` does it for the catalog and the truth at once).

Two traffic profiles: ``SimConfig()`` is a busy shop's few minutes, head queries repeated many
times; ``SimConfig.long_tail(...)`` is ten weeks of a click log, most queries searched once. In
both, shoppers type like people (``SimConfig.realism``: paraphrases, typos, questions, brands,
model numbers, other languages; ``streams.simulator.phrasing`` says how), and ``sim.kinds`` tags
each such text: ``paraphrase``, ``unseen_phrasing`` (uses a held-out phrasing: keep it out of
training), ``typo``, ``question``, ``brand_only``, ``model_number``, ``attribute_first``,
``other_language``. ``SimConfig.easy(...)`` is the old shop, whose queries only recombine the
catalogue's words, byte-identical for a seed to what it was before realism.

Shoppers also come with an intent type (``SimConfig.intent_types``, issue 14): buy, browse, ask or
help, per search; the catalogue then gains a guide per leaf (``kind`` content) and help pages
(``kind`` help) after the products, ``sim.query_types`` says each search's type and
``sim.intent_types`` each text's majority type (``streams.simulator.labels.intent_type_truth``).
"""

import gc
import heapq
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from store.taxonomy import normalise_query
from streams import topics
from streams.events import Feedback, Product, SearchQuery
from streams.simulator.config import DriftInjection, SimConfig
from streams.simulator.faults import (
    MALFORMED_KINDS,
    malformed_event,
    malformed_events,
    unknown_product_feedback,
)
from streams.simulator.pages import build_pages
from streams.simulator.phrasing import TAGS
from streams.simulator.purposes import IntentTypeMix
from streams.simulator.realism import ShopperRealism
from streams.simulator.shoppers import generate
from streams.simulator.world import World, build_world

__all__ = [
    "MALFORMED_KINDS",
    "TAGS",
    "DriftInjection",
    "IntentTypeMix",
    "ShopperRealism",
    "SimConfig",
    "Simulation",
    "malformed_event",
    "malformed_events",
    "simulate",
    "unknown_product_feedback",
]


@dataclass(frozen=True)
class Simulation:
    """What one simulated stretch of traffic produced, with its ground truth."""

    config: SimConfig
    catalog: list[Product] = field(repr=False)
    queries: list[SearchQuery] = field(repr=False)  # in timestamp order
    feedback: list[Feedback] = field(repr=False)  # in timestamp order
    truth: dict[str, str] = field(repr=False)  # normalised query text -> full path of the majority intent
    intents: dict[str, str] = field(repr=False)  # query_id -> category path this shopper meant
    ambiguous: frozenset[str] = field(default=frozenset(), repr=False)  # seen texts with several intents
    # normalised text -> its tags (streams.simulator.phrasing.TAGS); untagged texts are absent
    kinds: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    # normalised text -> majority intent type of its searches (buy, browse, ask, help); empty when
    # SimConfig.intent_types is None
    intent_types: dict[str, str] = field(default_factory=dict, repr=False)
    query_types: dict[str, str] = field(default_factory=dict, repr=False)  # query_id -> its shopper's type

    def events(self) -> Iterator[tuple[str, str, SearchQuery | Feedback]]:
        """``(topic, key, event)`` for queries and feedback merged in timestamp order.

        A query comes before every event about it (its feedback is strictly later).
        """
        q = ((topics.QUERIES, e.query_id, e) for e in self.queries)
        f = ((topics.FEEDBACK, e.query_id, e) for e in self.feedback)
        return heapq.merge(q, f, key=lambda rec: rec[2].timestamp)

    def __len__(self) -> int:
        return len(self.queries) + len(self.feedback)

    def tagged(self, tag: str) -> frozenset[str]:
        """The normalised texts carrying ``tag`` (``sim.tagged("unseen_phrasing")``: keep out of training)."""
        return frozenset(text for text, tags in self.kinds.items() if tag in tags)

    @property
    def drift_onset(self) -> datetime | None:
        """When the first search of an injected drift happened (``None``: stationary traffic)."""
        drift = self.config.drift
        if drift is None:
            return None
        i = drift.onset_index(self.config.n_searches)
        return self.queries[i].timestamp if i < len(self.queries) else None


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of acyclic objects: without this the cyclic GC rescans the growing heap (~40% of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def simulate(config: SimConfig | None = None) -> Simulation:
    """Generate a catalog, searches and feedback for ``config`` (defaults: seed 0, 10,000 searches)."""
    config = config or SimConfig()
    rng = random.Random(config.seed)
    with _gc_paused():
        world = build_world(rng, config.n_products, config.ambiguity_share, tail_texts=config.tail_texts)
        pages = None if config.intent_types is None else build_pages(world.leaves)
        made = generate(config, world, rng, pages)
    queries, feedback, intents, typed = made.queries, made.feedback, made.intents, made.typed
    if typed is not None:
        return Simulation(
            config,
            world.products if pages is None else world.products + pages.products,
            queries,
            feedback,
            typed.truth(world.leaves),
            intents,
            typed.ambiguous(),
            typed.kinds(),
            typed.intent_types(),
            made.query_types,
        )
    truth, ambiguous = _catalogue_truth(world, queries)
    return Simulation(config, world.products, queries, feedback, truth, intents, ambiguous)


def _catalogue_truth(world: World, queries: list[SearchQuery]) -> tuple[dict[str, str], frozenset[str]]:
    """The easy shop's truth: every text is a catalogue entry, truth its majority intent."""
    by_text = {e.text: e for e in world.texts}
    truth: dict[str, str] = {}
    ambiguous: set[str] = set()
    for q in queries:
        norm = normalise_query(q.query)
        if norm not in truth:
            entry = by_text[norm]
            truth[norm] = world.leaves[entry.truth].path
            if entry.ambiguous:
                ambiguous.add(norm)
    return truth, frozenset(ambiguous)
