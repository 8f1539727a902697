"""Shoppers with an intent type (issue 14): buy, browse, ask or help, at the mix's shares; a
catalogue with a guide per leaf and help pages; behaviour the intent-type labeling functions can
read, but not perfectly (the measured numbers are printed with ``-s`` and quoted in
docs/simulator.md)."""

from collections import Counter, defaultdict

import pytest
from pydantic import ValidationError

from store.settings import TaxonomySettings
from streams.events import FeedbackType, ItemKind
from streams.simulator import IntentTypeMix, SimConfig, Simulation, simulate
from streams.simulator.labels import catalog_kinds, catalog_labels, intent_type_truth
from streams.simulator.pages import HELP_TOPICS
from streams.simulator.vocabulary import LEAVES
from streams.weak.intent_types import ASK, BROWSE, BUY, HELP, INTENT_TYPES, type_votes
from streams.weak.records import records_from_simulation

N_PRODUCTS = 5_000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SimConfig(seed=4, n_searches=5_000))


@pytest.fixture(scope="module")
def by_query(sim: Simulation) -> dict[str, list]:
    """query id -> its feedback events."""
    out: dict[str, list] = defaultdict(list)
    for f in sim.feedback:
        out[f.query_id].append(f)
    return out


def _events(sim: Simulation) -> list[tuple]:
    return [(t, k, e.model_dump(mode="json")) for t, k, e in sim.events()]


def test_intent_types_are_on_by_default_and_off_in_the_easy_shop():
    assert SimConfig().intent_types == IntentTypeMix()
    assert SimConfig.long_tail(n_searches=10).intent_types == IntentTypeMix()
    assert SimConfig.easy().intent_types is None
    assert SimConfig(realism=None).intent_types is None  # realism=None is the easy shop too
    with pytest.raises(ValidationError, match="needs realism"):
        SimConfig(realism=None, intent_types=IntentTypeMix())
    easy = simulate(SimConfig.easy(seed=2, n_searches=300))
    assert easy.intent_types == {} and easy.query_types == {}
    assert all(p.kind is ItemKind.product for p in easy.catalog)


def test_the_mix_must_sum_to_one_and_every_field_says_where_it_comes_from():
    with pytest.raises(ValidationError, match="sum to"):
        IntentTypeMix(buy=0.8)
    with pytest.raises(ValidationError):
        IntentTypeMix.model_validate({"shopping": 1.0})  # extra="forbid"
    assert IntentTypeMix(buy=0.25, browse=0.25, ask=0.25, help=0.25).cuts == (0.25, 0.5, 0.75)
    for name, info in IntentTypeMix.model_fields.items():
        assert info.description and "Design choice" in info.description, name  # no published figure


def test_same_seed_same_traffic_and_another_seed_differs():
    first, again = (simulate(SimConfig(seed=9, n_searches=1_500)) for _ in range(2))
    assert _events(first) == _events(again)
    assert first.intent_types == again.intent_types and first.query_types == again.query_types
    other = simulate(SimConfig(seed=10, n_searches=1_500))
    assert [q.query for q in other.queries] != [q.query for q in first.queries]


def test_only_buyers_without_guides_make_exactly_the_traffic_of_a_shop_without_intent_types():
    """The types draw from their own rng: with every shopper a buyer and no stray guide, the events
    are those of ``intent_types=None`` (whose events are today's realistic shop), pages aside."""
    buyers = IntentTypeMix(buy=1.0, browse=0.0, ask=0.0, help=0.0, stray_guide_rate=0.0)
    typed = simulate(SimConfig(seed=5, n_searches=1_500, intent_types=buyers))
    plain = simulate(SimConfig(seed=5, n_searches=1_500, intent_types=None))
    assert _events(typed) == _events(plain)
    assert typed.truth == plain.truth and typed.kinds == plain.kinds
    assert typed.catalog[:N_PRODUCTS] == plain.catalog and len(plain.catalog) == N_PRODUCTS
    assert set(typed.intent_types.values()) == {BUY} and plain.intent_types == {} == plain.query_types


def test_the_catalogue_gains_a_guide_per_leaf_and_help_pages_after_the_products(sim):
    products, pages = sim.catalog[:N_PRODUCTS], sim.catalog[N_PRODUCTS:]
    assert all(p.kind is ItemKind.product and p.product_id.startswith("p") for p in products)
    guides = [p for p in pages if p.kind is ItemKind.content]
    helps = [p for p in pages if p.kind is ItemKind.help]
    assert len(guides) == len(LEAVES) and len(helps) == len(HELP_TOPICS) == 8
    assert [p.category_path for p in guides] == [leaf.path for leaf in LEAVES]
    assert guides[0].product_id == "C-000001" and helps[0].product_id == "H-000001"
    assert all(p.title.startswith("How to choose ") for p in guides)
    assert all(p.category_path.startswith("help/") for p in helps)
    kinds = catalog_kinds(sim)
    assert kinds == {p.product_id: p.kind for p in pages}  # products are absent: absent means product


def test_help_pages_vote_for_no_category_but_guides_vote_for_their_leaf(sim):
    taxonomy = TaxonomySettings(depth=1)
    labels = catalog_labels(sim, taxonomy)
    assert not {p.product_id for p in sim.catalog if p.kind is ItemKind.help} & set(labels)
    guide = next(p for p in sim.catalog if p.kind is ItemKind.content)
    assert labels[guide.product_id] == guide.category_path.split("/")[0]


def test_types_come_at_the_mix_shares_and_every_text_has_both_truths(sim):
    mix = IntentTypeMix()
    shares = Counter(sim.query_types.values())
    n = len(sim.queries)
    print({t: round(shares[t] / n, 3) for t in INTENT_TYPES})
    for itype, share in ((BUY, mix.buy), (BROWSE, mix.browse), (ASK, mix.ask), (HELP, mix.help)):
        assert shares[itype] / n == pytest.approx(share, abs=0.02), itype
    assert set(sim.query_types) == {q.query_id for q in sim.queries}
    assert set(intent_type_truth(sim)) == set(sim.truth)  # every text: a category and a type
    assert set(sim.intent_types.values()) == set(INTENT_TYPES)


def test_buyers_cart_at_the_configured_rates_and_nobody_else_carts(sim, by_query):
    category = {p.product_id: p.category_path for p in sim.catalog}
    clicks = carts = purchases = 0
    for q in sim.queries:
        events = by_query[q.query_id]
        carted = [f for f in events if f.type is FeedbackType.add_to_cart]
        if sim.query_types[q.query_id] != BUY:
            assert not carted and not any(f.type is FeedbackType.purchase for f in events)
            continue
        intent = sim.intents[q.query_id]
        clicks += sum(f.type is FeedbackType.click and category[f.product_id] == intent for f in events)
        carts += sum(category[f.product_id] == intent for f in carted)
        purchases += sum(f.type is FeedbackType.purchase for f in events)
    config = sim.config
    assert carts / clicks == pytest.approx(config.cart_rate[2], rel=0.2)
    assert purchases / carts == pytest.approx(config.purchase_rate, abs=0.08)


def test_askers_read_the_guide_and_help_seekers_open_a_help_page(sim, by_query):
    mix, kind = IntentTypeMix(), catalog_kinds(sim)
    opened: dict[str, list[bool]] = defaultdict(list)
    guide_top: list[bool] = []
    for q in sim.queries:
        itype = sim.query_types[q.query_id]
        clicked = {kind.get(f.product_id) for f in by_query[q.query_id] if f.type is FeedbackType.click}
        if itype == ASK:
            guide = next(i for i, pid in enumerate(q.shown) if kind.get(pid) is ItemKind.content)
            guide_top.append(guide < 3)
            opened[ASK].append(ItemKind.content in clicked)
        elif itype == HELP:
            assert kind.get(q.shown[0]) is ItemKind.help or kind.get(q.shown[1]) is ItemKind.help
            opened[HELP].append(ItemKind.help in clicked)
        else:
            assert not any(kind.get(pid) is ItemKind.help for pid in q.shown)
            opened[itype].append(ItemKind.content in clicked)
    assert sum(guide_top) / len(guide_top) == pytest.approx(mix.guide_top_rate, abs=0.06)
    for itype in (ASK, HELP):
        assert sum(opened[itype]) / len(opened[itype]) == pytest.approx(mix.page_click_rate, abs=0.06)
    stray = sum(opened[BUY]) / len(opened[BUY])  # a guide click is not a perfect sign of asking
    assert 0 < stray < 2 * mix.stray_guide_rate * mix.stray_guide_click_rate


def test_browsers_look_at_several_products_at_length(sim, by_query):
    kind = catalog_kinds(sim)
    compared = []
    for q in sim.queries:
        if sim.query_types[q.query_id] != BROWSE:
            continue
        long_looks = {
            f.product_id
            for f in by_query[q.query_id]
            if f.type is FeedbackType.click and f.product_id not in kind and (f.dwell_ms or 0) >= 15_000
        }
        compared.append(len(long_looks) >= 2)
    assert 0.8 < sum(compared) / len(compared) < 1.0


def test_texts_carry_cues_imperfectly(sim):
    """Some browsing texts are what buyers type too; asking and help texts mostly say so."""
    texts: dict[str, set[str]] = defaultdict(set)
    for q in sim.queries:
        texts[sim.query_types[q.query_id]].add(q.query.strip().lower())
    assert texts[BROWSE] & texts[BUY]
    assert sum(t.startswith(("how", "what", "which", "is ")) for t in texts[ASK]) / len(texts[ASK]) > 0.3
    assert any(t.startswith("return ") or t.endswith(" warranty") for t in texts[HELP])
    assert any(not t.isascii() for t in texts[ASK] | texts[BROWSE] | texts[HELP])  # other languages too


def test_the_intent_type_labeling_functions_are_good_but_not_perfect_on_it(sim):
    """Majority of the weighted votes per text against the text's majority type."""
    kinds, truth = catalog_kinds(sim), intent_type_truth(sim)
    score: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for record in records_from_simulation(sim):
        for vote in type_votes(record, kinds):
            score[record.norm_text][vote.label] += vote.weight
    covered, right = Counter[str](), Counter[str]()
    for text, itype in truth.items():
        if score[text]:
            covered[itype] += 1
            votes = score[text]
            right[itype] += max(votes, key=votes.__getitem__) == itype
    coverage = sum(covered.values()) / len(truth)
    accuracy = sum(right.values()) / sum(covered.values())
    per_type = {t: round(right[t] / covered[t], 3) for t in INTENT_TYPES}
    print(f"coverage {coverage:.3f} accuracy {accuracy:.3f} per type {per_type}")
    assert coverage > 0.7
    assert 0.65 < accuracy < 0.97  # good, and the labels still have something to learn
    assert per_type[ASK] > 0.85 and per_type[HELP] > 0.85 and per_type[BROWSE] > 0.7
    assert per_type[BUY] > 0.5
