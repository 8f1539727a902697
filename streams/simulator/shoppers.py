"""Searches and the feedback they get: an imperfect engine and position-biased shoppers.

Per search: a text is drawn from a Zipf popularity; the shopper's intent from the text's mixture;
the engine fills the shown slots mostly from the text's leaves (it does not know the intent of an
ambiguous text), some from sibling leaves and some at random, ranked by a noisy score. The shopper
examines rank ``r`` with probability ``1/(r+1)**0.7`` and clicks an examined item with a probability
that depends on its relevance to the intent (same leaf, same top-level category, other); relevant
clicks dwell longer and lead to carts, purchases and the occasional return. Click, cart and purchase
chances are the config's (``SimConfig.attractiveness``, ``cart_rate``, ``purchase_rate``).
"""

import itertools
import math
import random
from bisect import bisect
from datetime import UTC, datetime
from operator import itemgetter

from streams.events import Feedback, FeedbackType, SearchQuery
from streams.simulator.config import NEW_SESSION_RATE, SimConfig
from streams.simulator.vocabulary import LOCALES
from streams.simulator.world import World

EXAMINATION_DECAY = 0.7
RETURN_RATE = 0.06  # after purchase
_DWELL_MEDIAN_MS = (4_000.0, 15_000.0, 45_000.0)
_ENGINE_SIBLING_SHARE = 0.15
_ENGINE_SCORE = (0.0, 0.5, 1.0)  # + uniform noise in [0, 1.2): irrelevant items sometimes rank high
_SESSION_SLOTS = 64


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


def generate(
    config: SimConfig, world: World, rng: random.Random
) -> tuple[list[SearchQuery], list[Feedback], dict[str, str]]:
    """Queries (in time order), feedback (in time order) and each query's drawn intent leaf path.

    The hot loop keeps to ``rng.random()`` and plain tuples: 100,000 searches make ~700,000 events.
    """
    random_ = rng.random
    gauss = rng.gauss

    texts = world.texts
    n_texts = len(texts)
    s, q = config.zipf_exponent, config.zipf_offset
    popularity = [1.0 / (r + q) ** s for r in range(n_texts)]
    if config.drift is None:
        picks = rng.choices(
            range(n_texts), cum_weights=list(itertools.accumulate(popularity)), k=config.n_searches
        )
    else:
        picks = _drifted_picks(config, world, rng, popularity)

    leaves = world.leaves
    leaf_paths = [leaf.path for leaf in leaves]
    leaf_top = [leaf.top for leaf in leaves]
    product_leaf = world.product_leaf
    product_top = [leaf_top[li] for li in product_leaf]
    leaf_products = world.leaf_products
    siblings = world.siblings
    product_ids = world.product_ids
    n_products = len(product_ids)
    n_shown = min(config.shown_per_search, n_products)
    exam = [1.0 / (r + 1) ** EXAMINATION_DECAY for r in range(n_shown)]
    dwell_mu = [math.log(m) for m in _DWELL_MEDIAN_MS]
    noise_dwell_mu = dwell_mu[0] - 0.7
    locales = [code for code, _ in LOCALES]
    locale_cum = list(itertools.accumulate(w for _, w in LOCALES))
    precision = config.engine_precision
    sibling_cut = precision + _ENGINE_SIBLING_SHARE
    fold = min(config.fold, n_shown)
    impressions = config.impressions
    noise_rate = config.noise_rate
    variant_rate = config.variant_rate
    max_return = config.max_return_delay_s
    attractiveness = config.attractiveness
    cart_rate = config.cart_rate
    purchase_rate = config.purchase_rate
    mean_gap = 1.0 / config.searches_per_second
    # One session at a time (``session_gap_s``): short gaps within a session, long ones between.
    serial = config.session_gap_s is not None
    within_gap, between_gap = config.session_gap_s or 0.0, config.between_sessions_s
    epoch = config.start.timestamp()
    tz = UTC
    fromtimestamp = datetime.fromtimestamp
    impression, click, cart, purchase, return_ = (
        FeedbackType.impression.value,
        FeedbackType.click.value,
        FeedbackType.add_to_cart.value,
        FeedbackType.purchase.value,
        FeedbackType.return_.value,
    )

    score_other, score_sibling, score_target = _ENGINE_SCORE

    def new_session() -> tuple[str, str]:
        return _uuid(rng), locales[bisect(locale_cum, random_() * locale_cum[-1])]

    # The validators themselves: model_validate's keyword handling costs ~1 us on each of ~700k events.
    validate_query = SearchQuery.__pydantic_validator__.validate_python
    validate_feedback = Feedback.__pydantic_validator__.validate_python
    sessions = [new_session() for _ in range(_SESSION_SLOTS)]
    queries: list[SearchQuery] = []
    pending: list[tuple[float, str, str, str, str, int, int | None]] = []  # sorted by time
    intents: dict[str, str] = {}
    t = 0.0
    for i, ti in enumerate(picks):
        entry = texts[ti]
        if serial:
            fresh = i == 0 or random_() < NEW_SESSION_RATE
            t -= math.log(1.0 - random_()) * (between_gap if fresh else within_gap)
            if fresh:
                sessions[0] = new_session()
            session_id, locale = sessions[0]
        else:
            t -= math.log(1.0 - random_()) * mean_gap  # exponential gaps: Poisson arrivals
            slot = int(random_() * _SESSION_SLOTS)
            if random_() < NEW_SESSION_RATE:
                sessions[slot] = new_session()
            session_id, locale = sessions[slot]
        query_id = _uuid(rng)
        cand = entry.leaves
        cum = entry.cum_weights
        single = len(cand) == 1
        intent = cand[0] if single else cand[bisect(cum, random_() * cum[-1])]

        # The engine: fill slots, then rank by a noisy relevance-to-the-text score.
        scores: dict[int, float] = {}  # product -> score
        sib = siblings[cand[0]]
        target_pool = leaf_products[cand[0]]
        for _ in range(n_shown):
            u = random_()
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
        shown = [p for _, p in scored]
        shown_ids = [product_ids[p] for p in shown]
        text = entry.text if random_() >= variant_rate else _variant(rng, entry.text)
        queries.append(
            validate_query(
                {
                    "query_id": query_id,
                    "session_id": session_id,
                    "timestamp": fromtimestamp(epoch + t, tz),
                    "query": text,
                    "locale": locale,
                    "shown": shown_ids,
                }
            )
        )
        intents[query_id] = leaf_paths[intent]

        # The shopper: examines rank r with probability exam[r], clicks by relevance to the intent.
        itop = leaf_top[intent]
        clicks: list[tuple[int, int]] = []  # (position, relevance); relevance -1: a noise click
        for r in range(n_shown):
            u = random_()
            e = exam[r]
            if u < e:
                p = shown[r]
                rel = 2 if product_leaf[p] == intent else (1 if product_top[p] == itop else 0)
                if u < e * attractiveness[rel]:
                    clicks.append((r, rel))
        if random_() < noise_rate:
            r = int(random_() * n_shown)
            if all(c[0] != r for c in clicks):
                clicks.append((r, -1))
                clicks.sort()

        # Event ids: the query id and a per-query counter.
        # Impressions for the viewed positions: above the fold, and down to the deepest click.
        if impressions:
            k = max(fold, clicks[-1][0] + 1) if clicks else fold
            pending.extend(
                [
                    (t + 0.15 + 0.1 * r, f"{query_id}-{r:02d}", query_id, impression, shown_ids[r], r, None)
                    for r in range(k)
                ]
            )
        else:
            k = 0
        tc = t + 1.5 + 4.5 * random_()
        for r, rel in clicks:
            dwell = int(math.exp(gauss(dwell_mu[rel] if rel >= 0 else noise_dwell_mu, 0.6)))
            pid = shown_ids[r]
            pending.append((tc, f"{query_id}-{k:02d}", query_id, click, pid, r, dwell))
            k += 1
            if rel >= 0 and random_() < cart_rate[rel]:
                tcart = tc + dwell / 1000.0 * (0.3 + 0.6 * random_())
                pending.append((tcart, f"{query_id}-{k:02d}", query_id, cart, pid, r, None))
                k += 1
                if random_() < purchase_rate:
                    tbuy = tcart + 20.0 + 880.0 * random_()
                    pending.append((tbuy, f"{query_id}-{k:02d}", query_id, purchase, pid, r, None))
                    k += 1
                    if random_() < RETURN_RATE:
                        tret = tbuy + 600.0 + (max_return - 600.0) * random_()
                        pending.append((tret, f"{query_id}-{k:02d}", query_id, return_, pid, r, None))
                        k += 1
            tc += dwell / 1000.0 + 1.0 + 3.0 * random_()

    pending.sort(key=itemgetter(0))  # stable: simultaneous events keep their generation order
    feedback = [
        validate_feedback(
            {
                "event_id": eid,
                "query_id": qid,
                "timestamp": fromtimestamp(epoch + ts, tz),
                "type": typ,
                "product_id": pid,
                "position": pos,
                "dwell_ms": dwell,
            }
        )
        for ts, eid, qid, typ, pid, pos, dwell in pending
    ]
    return queries, feedback, intents
