"""The engine and the shopper for a search with an intent type: which pages show, what is clicked.

With ``SimConfig.intent_types`` on, every search's products are shown and ranked as before; then
:class:`Errands` (its own rng, shared with :class:`streams.simulator.cues.Purposes`) adds pages:

- ask: the leaf's guide, in the top 3 at ``guide_top_rate``, else lower;
- help: the help page of the topic the text names (any topic when it names none) in the top 2,
  and at even odds a second help page in the top 3;
- buy, browse: the leaf's guide at any rank, at ``stray_guide_rate``.

And what the shopper does on them (a click is ``(position, code)``: codes 0-2 are a product's
relevance to the intent as in :mod:`.shoppers`, :data:`PAGE` a page, :data:`LOOK` a long look at a
product while comparing):

- buy: the clicks, carts and purchases of a shop without intent types (drawn by the caller), plus a
  shown guide opened at ``stray_guide_click_rate``;
- browse: 2-4 products, the intent's leaf first, then its top-level category, each looked at at
  length; a shown guide opened as a buyer would; never a cart;
- ask: the guide at ``page_click_rate``, a product at ``ask_product_click_rate``; never a cart;
- help: the first help page at ``page_click_rate``, a product at ``help_product_click_rate``;
  never a cart.
"""

import random
from collections.abc import Sequence

from streams.simulator.pages import HELP_TOPICS, Pages
from streams.simulator.purposes import IntentTypeMix
from streams.weak.intent_types import ASK, BROWSE, HELP

PAGE, LOOK = 3, 4  # click codes beyond a product's relevance (0 other, 1 same top level, 2 same leaf)
_BROWSE_MIN, _BROWSE_SPREAD = 2, 3  # a browser looks at 2 + randrange(3) products
_SECOND_HELP_PAGE = 0.5  # chance a help search is shown a second help page


class Errands:
    """Pages for a typed search and its shopper's clicks on them (``Clicks``: ``(position, code)``)."""

    def __init__(
        self,
        mix: IntentTypeMix,
        rng: random.Random,
        pages: Pages,
        product_leaf: Sequence[int],
        product_top: Sequence[str],
        leaf_top: Sequence[str],
    ) -> None:
        self.mix, self.rng, self.random = mix, rng, rng.random
        self.guide_ids, self.help_ids = pages.guide_ids, pages.help_ids
        self.product_leaf, self.product_top, self.leaf_top = product_leaf, product_top, leaf_top

    def place(
        self, itype: str, intent: int, topic: int | None, shown_ids: list[str]
    ) -> tuple[Sequence[int], int | None, int | None]:
        """Insert the pages into ``shown_ids``; ``(rank -> position of each product, the guide's
        position, the first help page's position)`` (None: not shown)."""
        random_, n = self.random, len(shown_ids)
        inserted: list[tuple[int, str]] = []  # (position, page id), in insertion order
        if itype == ASK:
            top = random_() < self.mix.guide_top_rate or n <= 3
            at = int(random_() * min(3, n)) if top else 3 + int(random_() * (n - 3))
            inserted.append((at, self.guide_ids[intent]))
        elif itype == HELP:
            first = topic if topic is not None else int(random_() * len(HELP_TOPICS))
            inserted.append((int(random_() * 2), self.help_ids[first]))
            if random_() < _SECOND_HELP_PAGE:
                other = (first + 1 + int(random_() * (len(HELP_TOPICS) - 1))) % len(HELP_TOPICS)
                inserted.append((2 + int(random_() * 2), self.help_ids[other]))  # below the first
        elif random_() < self.mix.stray_guide_rate:
            inserted.append((int(random_() * n), self.guide_ids[intent]))
        if not inserted:
            return range(n), None, None
        pos = list(range(n))
        for at, page in inserted:
            shown_ids.insert(at, page)
            pos = [p + (p >= at) for p in pos]
        first_page = shown_ids.index(inserted[0][1])
        if itype == HELP:
            return pos, None, first_page
        return pos, first_page, None

    def clicks(
        self,
        itype: str,
        shown: list[int],
        intent: int,
        pos: Sequence[int],
        guide: int | None,
        help_page: int | None,
        bought: list[tuple[int, int]],
    ) -> list[tuple[int, int]]:
        """The shopper's clicks in position order; ``bought``: a buyer's product clicks by rank."""
        random_, mix = self.random, self.mix
        if itype in (ASK, HELP):
            page = guide if itype == ASK else help_page
            product_rate = mix.ask_product_click_rate if itype == ASK else mix.help_product_click_rate
            out = [(page, PAGE)] if page is not None and random_() < mix.page_click_rate else []
            if random_() < product_rate:
                r, rel = self._first_relevant(shown, intent)
                out.append((pos[r], rel))
        else:
            out = [(pos[r], rel) for r, rel in bought] if itype != BROWSE else self._looks(shown, intent, pos)
            if guide is not None and random_() < mix.stray_guide_click_rate:
                out.append((guide, PAGE))
        out.sort()
        return out

    def _relevance(self, p: int, intent: int) -> int:
        if self.product_leaf[p] == intent:
            return 2
        return 1 if self.product_top[p] == self.leaf_top[intent] else 0

    def _first_relevant(self, shown: list[int], intent: int) -> tuple[int, int]:
        """``(rank, relevance)`` of the best-ranked product of the intent's leaf (else the first)."""
        for r, p in enumerate(shown):
            if self.product_leaf[p] == intent:
                return r, 2
        return 0, self._relevance(shown[0], intent)

    def _looks(self, shown: list[int], intent: int, pos: Sequence[int]) -> list[tuple[int, int]]:
        """A browser's long looks: 2-4 products, the intent's leaf first, then its top level."""
        k = _BROWSE_MIN + int(self.random() * _BROWSE_SPREAD)
        by_relevance = sorted(range(len(shown)), key=lambda r: (-self._relevance(shown[r], intent), r))
        return [(pos[r], LOOK) for r in by_relevance[:k]]
