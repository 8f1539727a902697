"""Searches and the feedback they get: an imperfect engine and position-biased shoppers.

Per search: a text is drawn from a Zipf popularity; the shopper's intent from the text's mixture;
the engine fills the shown slots mostly from the text's leaves (it does not know the intent of an
ambiguous text), some from sibling leaves and some at random, ranked by a noisy score. The shopper
examines rank ``r`` with probability ``1/(r+1)**0.7`` and clicks an examined item with a probability
that depends on its relevance to the intent (same leaf, same top-level category, other); relevant
clicks dwell longer and lead to carts, purchases and the occasional return. Click, cart and purchase
chances are the config's (``SimConfig.attractiveness``, ``cart_rate``, ``purchase_rate``).

With ``SimConfig.realism`` on, the shopper types the text as people do (:mod:`.phrasing`), and the
engine, being lexical, fills fewer slots from the intent for a hard text (``hard_query_precision``).
With ``SimConfig.intent_types`` on as well, each search's shopper has an intent type: buyers are the
shoppers above; the others type a cue (:mod:`.cues`), are shown guides or help pages and act on
them (:mod:`.errands`), all drawn from a second rng so the main rng's draws do not move.
"""

import itertools
import math
import random
from bisect import bisect
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter

from streams.events import Feedback, FeedbackType, SearchQuery
from streams.simulator.config import NEW_SESSION_RATE, SimConfig
from streams.simulator.cues import Purposes
from streams.simulator.errands import PAGE, Errands
from streams.simulator.pages import Pages
from streams.simulator.phrasing import Phraser
from streams.simulator.typed import TypedTexts
from streams.simulator.vocabulary import LOCALES
from streams.simulator.world import QueryText, World
from streams.weak.intent_types import BUY

EXAMINATION_DECAY = 0.7
RETURN_RATE = 0.06  # after purchase
# By click code: irrelevant, same top level, same leaf product; a page read; a browser's long look.
_DWELL_MEDIAN_MS = (4_000.0, 15_000.0, 45_000.0, 40_000.0, 40_000.0)
_ENGINE_SIBLING_SHARE = 0.15
_ENGINE_SCORE = (0.0, 0.5, 1.0)  # + uniform noise in [0, 1.2): irrelevant items sometimes rank high
_SESSION_SLOTS = 64
_PAGE_CODE = PAGE  # click codes from here on are pages and long looks: no cart follows them
_NOISE_DWELL_SHIFT = 0.7  # a noise click's log-dwell median sits this far below an irrelevant click's
_IMPRESSION, _CLICK, _CART, _PURCHASE, _RETURN = (
    FeedbackType.impression.value,
    FeedbackType.click.value,
    FeedbackType.add_to_cart.value,
    FeedbackType.purchase.value,
    FeedbackType.return_.value,
)


_Pending = tuple[
    float, str, str, str, str, int, int | None
]  # time, event id, query id, type, product, rank, dwell


def _uuid(rng: random.Random) -> str:
    """A random UUID-formatted id drawn from ``rng`` (so it is reproducible for a seed)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _variant(rng: random.Random, text: str) -> str:
    """The same text as a shopper might type it: different case, stray whitespace."""
    k = rng.randrange(6)
    if k == 0:
        return text.upper()
    if k == 1:
        return text.title()
    if k == 2:
        return text.capitalize()
    if k == 3:
        return f"  {text} "
    if k == 4:
        return text.replace(" ", "  ", 1) if " " in text else f"{text} "
    return "\t" + text.title()


def _picks(config: SimConfig, world: World, rng: random.Random) -> list[int]:
    """The text index of every search, drawn from a Zipf popularity over the texts (most popular first)."""
    s, q = config.zipf_exponent, config.zipf_offset
    popularity = [1.0 / (r + q) ** s for r in range(len(world.texts))]
    if config.drift is None:
        cum_weights = list(itertools.accumulate(popularity))
        return rng.choices(range(len(popularity)), cum_weights=cum_weights, k=config.n_searches)
    return _drifted_picks(config, world, rng, popularity)


def _drifted_picks(config: SimConfig, world: World, rng: random.Random, popularity: list[float]) -> list[int]:
    """Text indices drawn from the stationary popularity up to the onset and the drifted one after.

    Before the onset no text that may mean the ``new`` category is searched; after it, those
    texts get their plain popularity and the ``surge`` category's texts (by majority intent)
    ``surge_factor`` times theirs.
    """
    drift = config.drift
    assert drift is not None
    paths = [leaf.path for leaf in world.leaves]
    before = [
        0.0 if any(drift.in_new(paths[li]) for li in entry.leaves) else pop
        for entry, pop in zip(world.texts, popularity, strict=True)
    ]
    after = [
        pop * drift.surge_factor if drift.in_surge(paths[entry.truth]) else pop
        for entry, pop in zip(world.texts, popularity, strict=True)
    ]
    onset = drift.onset_index(config.n_searches)
    n = range(len(popularity))
    picks = rng.choices(n, cum_weights=list(itertools.accumulate(before)), k=onset)
    return picks + rng.choices(n, cum_weights=list(itertools.accumulate(after)), k=config.n_searches - onset)


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` made."""

    queries: list[SearchQuery]  # in time order
    feedback: list[Feedback]  # in time order
    intents: dict[str, str]  # query id -> the drawn intent's leaf path
    typed: TypedTexts | None  # (``realism`` on) what the shoppers typed, text by text
    query_types: dict[str, str]  # query id -> its shopper's intent type (empty: intent types off)


def generate(config: SimConfig, world: World, rng: random.Random, pages: Pages | None = None) -> Generated:
    """Every search and its feedback; ``pages`` (needed with ``intent_types`` on) are the catalogue's
    guides and help pages."""
    picks = _picks(config, world, rng)
    traffic = _Traffic(config, world, rng, pages)
    texts = world.texts
    search = traffic.search
    for i, ti in enumerate(picks):
        search(i, texts[ti])
    return Generated(traffic.queries, traffic.feedback(), traffic.intents, traffic.typed, traffic.query_types)


class _Traffic:
    """One :func:`generate` run: the world's tables and the config's rates bound once, and what the
    searches so far produced.

    Every step draws from the one ``rng`` and, per search, they run in a fixed order (session,
    query id, intent, engine, text variant, clicks, feedback after the clicks): that order is part
    of what a seed means, so reordering draws changes every event. The hot paths keep to
    ``rng.random()``, plain tuples and local names: 100,000 searches make ~700,000 events.
    """

    def __init__(self, config: SimConfig, world: World, rng: random.Random, pages: Pages | None) -> None:
        self.rng = rng
        self.random = rng.random
        self.leaf_paths = [leaf.path for leaf in world.leaves]
        self.leaf_top = [leaf.top for leaf in world.leaves]
        self.product_leaf = world.product_leaf
        self.product_top = [self.leaf_top[li] for li in world.product_leaf]
        self.leaf_products = world.leaf_products
        self.siblings = world.siblings
        self.product_ids = world.product_ids
        self.n_shown = min(config.shown_per_search, len(world.product_ids))
        self.exam = [1.0 / (r + 1) ** EXAMINATION_DECAY for r in range(self.n_shown)]
        self.dwell_mu = [math.log(m) for m in _DWELL_MEDIAN_MS]
        self.noise_dwell_mu = self.dwell_mu[0] - _NOISE_DWELL_SHIFT
        self.locales = [code for code, _ in LOCALES]
        self.locale_cum = list(itertools.accumulate(w for _, w in LOCALES))
        self.fold = min(config.fold, self.n_shown)
        self.config = config
        self.epoch = config.start.timestamp()
        # One session at a time (``session_gap_s``): short gaps within a session, long ones between.
        self.serial = config.session_gap_s is not None
        self.within_gap, self.between_gap = config.session_gap_s or 0.0, config.between_sessions_s
        self.mean_gap = 1.0 / config.searches_per_second
        # The validators themselves: model_validate's keyword handling costs ~1 us on each of ~700k events.
        self.validate_query = SearchQuery.__pydantic_validator__.validate_python
        self.validate_feedback = Feedback.__pydantic_validator__.validate_python
        self.sessions = [self._new_session() for _ in range(_SESSION_SLOTS)]
        self.queries: list[SearchQuery] = []
        self.pending: list[_Pending] = []  # feedback not yet validated, sorted at the end
        self.intents: dict[str, str] = {}
        self.t = 0.0  # seconds since config.start
        realism, mix = config.realism, config.intent_types
        self.query_types: dict[str, str] = {}
        self.purposes = self.errands = None
        if mix is not None:
            if pages is None or realism is None:
                raise ValueError("intent types need realism and the catalogue's pages")
            self.purposes = Purposes(mix, config.seed)
            self.errands = Errands(
                mix, self.purposes.rng, pages, world.product_leaf, self.product_top, self.leaf_top
            )
        phraser = None if realism is None else Phraser(realism, world.leaves, config.seed)
        self.typed = None if phraser is None else TypedTexts(phraser, self.purposes)
        self.hard_precision = config.engine_precision * (realism.hard_query_precision if realism else 1.0)

    def _new_session(self) -> tuple[str, str]:
        locale_cum = self.locale_cum
        return _uuid(self.rng), self.locales[bisect(locale_cum, self.random() * locale_cum[-1])]

    def search(self, i: int, entry: QueryText) -> None:
        """The ``i``-th search, of ``entry``: the query event, then its feedback (pending)."""
        session_id, locale = self._session(i)
        query_id = _uuid(self.rng)
        cand, cum = entry.leaves, entry.cum_weights
        intent = cand[0] if len(cand) == 1 else cand[bisect(cum, self.random() * cum[-1])]
        typed, precision = entry.text, self.config.engine_precision
        itype = topic = None
        if self.typed is not None:  # its own rng: the easy shop's draws stay as they were
            if self.purposes is not None:  # so has this one
                itype = self.purposes.draw()
            typed, hard, topic = self.typed.type(entry, intent, itype)
            if hard:
                precision = self.hard_precision
        shown = self._shown(entry, precision)
        shown_ids = [self.product_ids[p] for p in shown]
        text = typed if self.random() >= self.config.variant_rate else _variant(self.rng, typed)
        if itype is not None:
            self._typed_search(query_id, session_id, locale, text, shown, shown_ids, intent, itype, topic)
            return
        self._emit_query(query_id, session_id, locale, text, shown_ids, intent)
        self._feedback_after(query_id, shown_ids, self._clicks(shown, intent))

    def _typed_search(
        self,
        query_id: str,
        session_id: str,
        locale: str,
        text: str,
        shown: list[int],
        shown_ids: list[str],
        intent: int,
        itype: str,
        topic: int | None,
    ) -> None:
        """The rest of a search with an intent type: its pages, the query event, then its feedback."""
        errands = self.errands
        assert errands is not None
        pos, guide, help_page = errands.place(itype, intent, topic, shown_ids)
        self._emit_query(query_id, session_id, locale, text, shown_ids, intent)
        self.query_types[query_id] = itype
        buys = itype == BUY
        bought = self._clicks(shown, intent) if buys else []  # the main rng's draws, as without types
        if buys and guide is None:  # most searches: a buyer shown no guide
            clicks = bought
        else:
            clicks = errands.clicks(itype, shown, intent, pos, guide, help_page, bought)
        self._feedback_after(query_id, shown_ids, clicks, buys)

    def _emit_query(
        self, query_id: str, session_id: str, locale: str, text: str, shown_ids: list[str], intent: int
    ) -> None:
        """The query event, and the intent its shopper had."""
        self.queries.append(
            self.validate_query(
                {
                    "query_id": query_id,
                    "session_id": session_id,
                    "timestamp": datetime.fromtimestamp(self.epoch + self.t, UTC),
                    "query": text,
                    "locale": locale,
                    "shown": shown_ids,
                }
            )
        )
        self.intents[query_id] = self.leaf_paths[intent]

    def _session(self, i: int) -> tuple[str, str]:
        """Advance the clock to the ``i``-th search and pick its ``(session_id, locale)``."""
        random_ = self.random
        if self.serial:
            fresh = i == 0 or random_() < NEW_SESSION_RATE
            self.t -= math.log(1.0 - random_()) * (self.between_gap if fresh else self.within_gap)
            if fresh:
                self.sessions[0] = self._new_session()
            return self.sessions[0]
        self.t -= math.log(1.0 - random_()) * self.mean_gap  # exponential gaps: Poisson arrivals
        slot = int(random_() * _SESSION_SLOTS)
        if random_() < NEW_SESSION_RATE:
            self.sessions[slot] = self._new_session()
        return self.sessions[slot]

    def _shown(self, entry: QueryText, precision: float) -> list[int]:
        """The engine: fill slots, ``precision`` of them from the text's leaves, then rank by a noisy
        relevance-to-the-text score (product indices)."""
        random_ = self.random
        leaf_products = self.leaf_products
        n_products = len(self.product_ids)
        sibling_cut = precision + _ENGINE_SIBLING_SHARE
        score_other, score_sibling, score_target = _ENGINE_SCORE
        cand, cum = entry.leaves, entry.cum_weights
        single = len(cand) == 1
        scores: dict[int, float] = {}  # product -> score
        sib = self.siblings[cand[0]]
        target_pool = leaf_products[cand[0]]
        for _ in range(self.n_shown):
            u = random_()
            pool: list[int] | None
            if u < precision:
                pool = target_pool if single else leaf_products[cand[bisect(cum, random_() * cum[-1])]]
                base = score_target
            elif u < sibling_cut and sib:
                pool = leaf_products[sib[int(random_() * len(sib))]]
                base = score_sibling
            else:
                pool = None
                base = score_other
            p = pool[int(random_() * len(pool))] if pool else int(random_() * n_products)
            if p in scores and pool:
                p = pool[int(random_() * len(pool))]
            while p in scores:
                p = int(random_() * n_products)
            scores[p] = base + 1.2 * random_()
        scored = sorted(zip(scores.values(), scores, strict=True), reverse=True)
        return [p for _, p in scored]

    def _clicks(self, shown: list[int], intent: int) -> list[tuple[int, int]]:
        """The shopper: examines rank r with chance ``exam[r]``, clicks by relevance to the intent.

        ``(position, relevance)`` in position order; relevance -1 is a noise click.
        """
        random_ = self.random
        exam, attractiveness = self.exam, self.config.attractiveness
        product_leaf, product_top, itop = self.product_leaf, self.product_top, self.leaf_top[intent]
        clicks: list[tuple[int, int]] = []
        for r in range(self.n_shown):
            u = random_()
            e = exam[r]
            if u < e:
                p = shown[r]
                rel = 2 if product_leaf[p] == intent else (1 if product_top[p] == itop else 0)
                if u < e * attractiveness[rel]:
                    clicks.append((r, rel))
        if random_() < self.config.noise_rate:
            r = int(random_() * self.n_shown)
            if all(c[0] != r for c in clicks):
                clicks.append((r, -1))
                clicks.sort()
        return clicks

    def _feedback_after(
        self, query_id: str, shown_ids: list[str], clicks: list[tuple[int, int]], buys: bool = True
    ) -> None:
        """Impressions for the viewed positions (above the fold, and down to the deepest click),
        then each click and what may follow it (carts only when the shopper ``buys``; never on a
        page). Event ids: the query id and a per-query counter."""
        t, pending = self.t, self.pending
        if self.config.impressions:
            k = max(self.fold, clicks[-1][0] + 1) if clicks else self.fold
            pending.extend(
                [
                    (t + 0.15 + 0.1 * r, f"{query_id}-{r:02d}", query_id, _IMPRESSION, shown_ids[r], r, None)
                    for r in range(k)
                ]
            )
        else:
            k = 0
        tc = t + 1.5 + 4.5 * self.random()
        for r, rel in clicks:
            mu = self.dwell_mu[rel] if rel >= 0 else self.noise_dwell_mu
            dwell = int(math.exp(self.rng.gauss(mu, 0.6)))
            pending.append((tc, f"{query_id}-{k:02d}", query_id, _CLICK, shown_ids[r], r, dwell))
            k += 1
            if 0 <= rel < _PAGE_CODE and buys:
                k = self._after_click(tc, query_id, k, shown_ids[r], r, rel, dwell)
            tc += dwell / 1000.0 + 1.0 + 3.0 * self.random()

    def _after_click(self, tc: float, query_id: str, k: int, pid: str, r: int, rel: int, dwell: int) -> int:
        """The cart, purchase and return a relevant click may lead to; the next event counter."""
        random_, pending = self.random, self.pending
        if random_() >= self.config.cart_rate[rel]:
            return k
        tcart = tc + dwell / 1000.0 * (0.3 + 0.6 * random_())
        pending.append((tcart, f"{query_id}-{k:02d}", query_id, _CART, pid, r, None))
        k += 1
        if random_() >= self.config.purchase_rate:
            return k
        tbuy = tcart + 20.0 + 880.0 * random_()
        pending.append((tbuy, f"{query_id}-{k:02d}", query_id, _PURCHASE, pid, r, None))
        k += 1
        if random_() >= RETURN_RATE:
            return k
        tret = tbuy + 600.0 + (self.config.max_return_delay_s - 600.0) * random_()
        pending.append((tret, f"{query_id}-{k:02d}", query_id, _RETURN, pid, r, None))
        return k + 1

    def feedback(self) -> list[Feedback]:
        """Every pending feedback event, validated, in time order."""
        self.pending.sort(key=itemgetter(0))  # stable: simultaneous events keep their generation order
        epoch, validate = self.epoch, self.validate_feedback
        return [
            validate(
                {
                    "event_id": eid,
                    "query_id": qid,
                    "timestamp": datetime.fromtimestamp(epoch + ts, UTC),
                    "type": typ,
                    "product_id": pid,
                    "position": pos,
                    "dwell_ms": dwell,
                }
            )
            for ts, eid, qid, typ, pid, pos, dwell in self.pending
        ]
