import hashlib
import itertools
import random
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from store.settings import TaxonomySettings
from store.taxonomy import label_for_category, normalise_query
from streams import topics
from streams.codec import encode
from streams.events import FeedbackType
from streams.simulator import DriftInjection, SimConfig, Simulation, simulate, unknown_product_feedback
from streams.simulator.labels import catalog_labels, truth_labels
from streams.simulator.vocabulary import AMBIGUOUS, LEAVES, TAXONOMY
from streams.simulator.world import build_world


@pytest.fixture(scope="module")
def sim():
    """The easy shop: these tests are about its mechanics (popularity, ambiguous terms, clicks);
    realistic shoppers are tested in test_realistic_shoppers.py."""
    return simulate(SimConfig.easy(seed=11, n_searches=8_000))


def _stream(seed: int, n: int = 1_500) -> list[tuple[str, str, bytes]]:
    return [
        (topic, key, encode(event))
        for topic, key, event in simulate(SimConfig(seed=seed, n_searches=n)).events()
    ]


def test_same_seed_gives_identical_events_and_another_seed_does_not():
    first = _stream(5)
    assert first == _stream(5)
    other = _stream(6)
    assert other != first
    assert not {key for _, key, _ in first} & {key for _, key, _ in other}  # ids never collide across seeds


def _fingerprint(sim: Simulation) -> str:
    """Every field of every event, product and truth entry (not the wire format: codec changes
    must not move it)."""
    h = hashlib.sha256()
    for q in sim.queries:
        h.update(
            repr((q.query_id, q.session_id, q.timestamp.isoformat(), q.query, q.locale, q.shown)).encode()
        )
    for f in sim.feedback:
        fields = (f.event_id, f.query_id, f.timestamp.isoformat(), f.type.value, f.product_id, f.position)
        h.update(repr((*fields, f.dwell_ms)).encode())
    for p in sim.catalog:
        h.update(repr((p.product_id, p.category_path, p.title)).encode())
    h.update(repr(sorted(sim.truth.items())).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SimConfig.easy(seed=5, n_searches=500), "ad67d8d2337a780e"),
        (SimConfig.easy(seed=5, n_searches=500, n_products=300, drift=DriftInjection()), "5a45fdae33435241"),
        (SimConfig.easy(seed=5, n_searches=500, impressions=False), "b58183cb5bad2b41"),
    ],
)
def test_the_shop_profile_makes_the_same_events_as_before_the_long_tail_profile(config, expected):
    """Pinned output: new knobs must leave the easy shop's traffic as it was (realistic shoppers,
    the default since issue 13, draw from their own rng). A deliberate change of the shop's traffic
    updates these (and says so in its commit)."""
    assert _fingerprint(simulate(config)) == expected


def test_catalog_covers_the_taxonomy_with_unique_ids(sim):
    ids = [p.product_id for p in sim.catalog]
    assert len(ids) == len(set(ids)) == sim.config.n_products
    assert all(re.fullmatch(r"p\d{6}", i) for i in ids)
    assert {p.category_path for p in sim.catalog} == {leaf.path for leaf in LEAVES}
    assert len(TAXONOMY) == 12
    assert all(2 <= len(subs) <= 3 for subs in TAXONOMY.values())


def test_query_popularity_has_a_long_tail(sim):
    counts = Counter(normalise_query(q.query) for q in sim.queries)
    top = sum(n for _, n in counts.most_common(max(1, len(counts) // 100)))
    assert top / len(sim.queries) > 0.2  # the top 1% of texts take a big share
    assert sum(1 for n in counts.values() if n == 1) / len(counts) > 0.3  # many texts seen once
    assert len(counts) > 2_000


def test_texts_come_in_case_and_whitespace_variants(sim):
    variants = [q.query for q in sim.queries if q.query != normalise_query(q.query)]
    assert 0.05 < len(variants) / len(sim.queries) < 0.2


def test_truth_covers_every_query_text_with_a_catalog_category(sim):
    assert set(sim.truth) == {normalise_query(q.query) for q in sim.queries}
    assert set(sim.truth.values()) <= {p.category_path for p in sim.catalog}


def test_ambiguous_texts_mix_intents_and_truth_is_the_majority(sim):
    by_text = defaultdict(list)
    for q in sim.queries:
        by_text[normalise_query(q.query)].append(sim.intents[q.query_id])
    assert sim.ambiguous
    assert 0.02 < len(sim.ambiguous) / len(sim.truth) < 0.1
    for text, intents in by_text.items():
        if text not in sim.ambiguous:
            assert set(intents) == {sim.truth[text]}
    mixed = [t for t in sim.ambiguous if len(set(by_text[t])) > 1]
    assert mixed
    # Texts of one ambiguous term ("apple", "cheap apple") share its mixture: pool them.
    by_term = defaultdict(list)
    for text in sim.ambiguous:
        term = next(w for w in text.split() if w in AMBIGUOUS)
        by_term[term].extend(by_text[text])
        assert sim.truth[text] in AMBIGUOUS[term]
    # Pooled over all ambiguous searches, the truth is what most shoppers meant.
    searches = [i for t in sim.ambiguous for i in by_text[t]]
    truths = [sim.truth[t] for t in sim.ambiguous for _ in by_text[t]]
    agree = sum(i == t for i, t in zip(searches, truths, strict=True)) / len(searches)
    assert 0.5 < agree < 0.85


def test_the_truth_of_an_ambiguous_text_is_its_largest_intent():
    world = build_world(random.Random(0), 500, 0.05)
    ambiguous = [e for e in world.texts if e.ambiguous]
    assert {e.text for e in ambiguous} >= set(AMBIGUOUS)
    for entry in ambiguous:
        weights = [b - a for a, b in zip((0.0, *entry.cum_weights), entry.cum_weights, strict=False)]
        assert entry.truth == entry.leaves[weights.index(max(weights))]
        assert len({world.leaves[i].top for i in entry.leaves}) == len(entry.leaves)


def test_clicks_are_position_biased(sim):
    by_type = defaultdict(Counter)
    for f in sim.feedback:
        by_type[f.type][f.position] += 1
    clicks, shown = by_type[FeedbackType.click], by_type[FeedbackType.impression]
    assert clicks[0] > clicks[5] > clicks[9]
    assert clicks[0] / shown[0] > clicks[5] / shown[5]


def test_clicks_mostly_match_the_intent_and_purchases_follow_relevant_clicks(sim):
    category = {p.product_id: p.category_path for p in sim.catalog}
    on_intent = Counter((f.type, category[f.product_id] == sim.intents[f.query_id]) for f in sim.feedback)
    for kind, floor in ((FeedbackType.click, 0.8), (FeedbackType.purchase, 0.9)):
        hits, misses = on_intent[(kind, True)], on_intent[(kind, False)]
        assert hits / (hits + misses) > floor
    assert all(f.dwell_ms is not None for f in sim.feedback if f.type is FeedbackType.click)
    assert on_intent[(FeedbackType.return_, True)] + on_intent[(FeedbackType.return_, False)] > 0


def test_every_feedback_refers_to_a_shown_product_of_an_earlier_query(sim):
    queries = {q.query_id: q for q in sim.queries}
    assert len(queries) == len(sim.queries)
    assert len({f.event_id for f in sim.feedback}) == len(sim.feedback)
    for f in sim.feedback:
        q = queries[f.query_id]
        assert q.shown[f.position] == f.product_id
        assert f.timestamp > q.timestamp
    assert all(len(q.shown) == 10 and len(set(q.shown)) == 10 for q in sim.queries)


def test_events_merge_both_topics_in_time_order_keyed_by_query_id(sim):
    events = list(sim.events())
    assert len(events) == len(sim.queries) + len(sim.feedback) == len(sim)
    stamps = [e.timestamp for _, _, e in events]
    assert stamps == sorted(stamps)
    assert all(s.tzinfo is not None and s.utcoffset().total_seconds() == 0 for s in stamps[:100])
    seen = set()
    for topic, key, event in events:
        assert key == event.query_id
        if topic == topics.QUERIES:
            seen.add(key)
        else:
            assert topic == topics.FEEDBACK and key in seen


def test_search_rate_sets_the_timestamp_spacing():
    start = datetime(2025, 3, 1, tzinfo=UTC)
    sim = simulate(SimConfig(seed=1, n_searches=2_000, searches_per_second=20, start=start))
    span = (sim.queries[-1].timestamp - sim.queries[0].timestamp).total_seconds()
    assert sim.queries[0].timestamp >= start
    assert 80 < span < 120  # 2,000 searches at 20/s: about 100 s


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"n_products": len(LEAVES) - 1}, "greater than or equal"),
        ({"ambiguity_share": 0.9}, "less than or equal"),
        ({"searches_per_second": 0}, "greater than"),
        ({"no_such_option": True}, "Extra inputs"),
    ],
)
def test_config_rejects_bad_values(changes, error):
    with pytest.raises(ValidationError, match=error):
        SimConfig(**changes)


def test_config_reads_a_naive_start_as_utc():
    assert SimConfig(start=datetime(2025, 1, 1)).start.tzinfo is UTC


@pytest.mark.parametrize(("impressions", "expected"), [(True, True), (False, False)])
def test_impressions_can_be_switched_off(impressions, expected):
    sim = simulate(SimConfig(seed=2, n_searches=300, impressions=impressions))
    assert any(f.type is FeedbackType.impression for f in sim.feedback) is expected
    assert any(f.type is FeedbackType.click for f in sim.feedback)


def test_unknown_product_feedback_is_valid_but_outside_the_catalog(sim):
    extra = unknown_product_feedback(random.Random(3), sim.queries, 20)
    catalog = {p.product_id for p in sim.catalog}
    queries = {q.query_id for q in sim.queries}
    assert len(extra) == 20
    assert all(f.product_id not in catalog and f.query_id in queries for f in extra)
    assert unknown_product_feedback(random.Random(3), [], 5) == []


@pytest.fixture(scope="module")
def long_tail() -> Simulation:
    return simulate(SimConfig.long_tail(seed=3, n_searches=5_000))


def _tail_stats(sim: Simulation) -> dict[str, float]:
    """Per normalised text: searches, clicks, purchases (the reviewer's real-log statistics)."""
    text = {q.query_id: normalise_query(q.query) for q in sim.queries}
    searches = Counter(text.values())
    clicks = Counter(text[f.query_id] for f in sim.feedback if f.type is FeedbackType.click)
    bought = {text[f.query_id] for f in sim.feedback if f.type is FeedbackType.purchase}
    return {
        "searched_once": sum(n == 1 for n in searches.values()) / len(searches),
        "median_clicks": statistics.median(clicks.values()),
        "clicked_with_purchase": len(bought & set(clicks)) / len(clicks),
        "span_days": (sim.queries[-1].timestamp - sim.queries[0].timestamp) / timedelta(days=1),
    }


def test_long_tail_profile_looks_like_a_real_click_log(long_tail):
    stats = _tail_stats(long_tail)
    assert stats["searched_once"] >= 0.5  # most distinct queries searched once
    assert stats["median_clicks"] == 1  # a clicked query is clicked once
    assert stats["clicked_with_purchase"] < 0.1  # and mostly never bought from
    assert 60 < stats["span_days"] < 80  # ten weeks, by default


@pytest.mark.slow
def test_long_tail_profile_keeps_most_queries_rare_at_fifty_thousand_searches():
    stats = _tail_stats(simulate(SimConfig.long_tail(seed=4, n_searches=50_000, days=56)))
    assert stats["searched_once"] >= 0.5
    assert stats["median_clicks"] == 1
    assert 50 < stats["span_days"] < 62


def test_long_tail_sessions_are_a_few_searches_seconds_apart(long_tail):
    by_session = defaultdict(list)
    for q in long_tail.queries:
        by_session[q.session_id].append(q.timestamp)
    gaps = [(b - a).total_seconds() for ts in by_session.values() for a, b in itertools.pairwise(ts)]
    assert 2 < len(long_tail.queries) / len(by_session) < 5
    assert 10 < statistics.median(gaps) < 120
    assert max(gaps) < 3_600  # sessions never interleave across days


def test_long_tail_takes_overrides_and_rejects_sessions_longer_than_the_rate_allows():
    config = SimConfig.long_tail(n_searches=100, days=7, impressions=False, cart_rate=(0, 0, 0.5))
    assert config.searches_per_second == pytest.approx(100 / (7 * 86_400))
    assert not config.impressions and config.cart_rate == (0, 0, 0.5) and config.tail_texts
    with pytest.raises(ValidationError, match="session_gap_s"):
        SimConfig(searches_per_second=1.0, session_gap_s=2.0)
    with pytest.raises(ValueError, match="days"):
        SimConfig.long_tail(days=0)


def test_tail_texts_extend_the_vocabulary_after_the_short_texts():
    short = build_world(random.Random(0), 200, 0.05).texts
    extended = build_world(random.Random(0), 200, 0.05, tail_texts=True).texts
    assert len(extended) > 5 * len(short)
    meaning = {e.text: e.truth for e in extended}
    assert all(meaning[e.text] == e.truth for e in short if not e.ambiguous)  # no short text changes leaf


@pytest.mark.parametrize(
    "taxonomy", [TaxonomySettings(), TaxonomySettings(depth=2, labels=["books/fiction"])]
)
def test_catalog_and_truth_labels_are_what_the_store_would_hold(sim, taxonomy):
    catalog, truth = catalog_labels(sim, taxonomy), truth_labels(sim, taxonomy)
    for p in sim.catalog:
        assert catalog.get(p.product_id) == label_for_category(p.category_path, taxonomy)
    assert truth == {
        q: label for q, path in sim.truth.items() if (label := label_for_category(path, taxonomy)) is not None
    }
    assert set(truth.values()) <= set(catalog.values())


def test_streams_never_imports_the_ml_stack():
    code = (
        "import sys, streams.simulator, streams.codec, streams.exceptions; "
        "bad = {'torch', 'transformers', 'sklearn', 'peft'} & set(sys.modules); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
