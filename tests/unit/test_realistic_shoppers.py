"""Shoppers who type like people (issue 13): paraphrases with held-out phrasings, typos, questions,
brands, model numbers, other languages; at their configured rates, deterministic, and leaving the
easy shop exactly as it was."""

import hashlib
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict

import pytest
from pydantic import ValidationError

from store.taxonomy import normalise_query
from streams.simulator import TAGS, ShopperRealism, SimConfig, Simulation, simulate
from streams.simulator.phrasing import HARD_FOR_ENGINE, Phraser, held_out_phrasings
from streams.simulator.typos import ADJACENT, misspell
from streams.simulator.vocabulary import LEAVES, PHRASINGS
from streams.simulator.world import build_world

# sha256 of SimConfig(seed=3, n_searches=2000)'s events, catalog and truth, recorded from the code
# before realism existed (commit 9fdeb35): the easy shop must stay byte-identical.
EASY_FINGERPRINT = "d2376eb48679fc148d38c59945bee617a158dcd8892c340740f3c6810c2c9693"
_NO_SHAPES = {
    "question_rate": 0.0,
    "brand_only_rate": 0.0,
    "model_number_rate": 0.0,
    "attribute_first_rate": 0.0,
    "other_language_rate": 0.0,
}


def _fingerprint(sim: Simulation) -> str:
    h = hashlib.sha256()
    for topic, key, event in sim.events():
        h.update(repr((topic, key, sorted(event.model_dump(mode="json").items()))).encode())
    for p in sim.catalog:
        h.update(repr((p.product_id, p.category_path, p.title)).encode())
    h.update(repr(sorted(sim.truth.items())).encode())
    h.update(repr(sorted(sim.ambiguous)).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SimConfig(seed=1, n_searches=20_000))


@pytest.fixture(scope="module")
def shares(sim: Simulation) -> dict[str, float]:
    """Per tag, the share of searches whose text carries it."""
    counts = Counter(tag for q in sim.queries for tag in sim.kinds.get(normalise_query(q.query), ()))
    return {tag: counts[tag] / len(sim.queries) for tag in TAGS}


@pytest.mark.parametrize(
    "config", [SimConfig.easy(seed=3, n_searches=2000), SimConfig(seed=3, n_searches=2000, realism=None)]
)
def test_the_easy_shop_is_byte_identical_to_before_realism(config):
    sim = simulate(config)
    assert _fingerprint(sim) == EASY_FINGERPRINT
    assert sim.kinds == {}


def test_realism_is_on_by_default_in_both_profiles():
    assert SimConfig().realism == ShopperRealism()
    assert SimConfig.long_tail(n_searches=100).realism == ShopperRealism()
    assert SimConfig.easy(n_searches=100, seed=4).realism is None
    long_tail = simulate(SimConfig.long_tail(seed=2, n_searches=3_000))
    assert long_tail.kinds and set(long_tail.truth) == {normalise_query(q.query) for q in long_tail.queries}


def test_same_config_same_output_and_another_seed_differs():
    first, again = (
        simulate(SimConfig(seed=2, n_searches=3_000)),
        simulate(SimConfig(seed=2, n_searches=3_000)),
    )
    assert _fingerprint(first) == _fingerprint(again)
    assert first.kinds == again.kinds
    other = simulate(SimConfig(seed=3, n_searches=3_000))
    assert [q.query for q in other.queries] != [q.query for q in first.queries]


def test_each_tag_appears_at_its_configured_rate(shares):
    r = ShopperRealism()
    naming = 1 - r.brand_only_rate - r.other_language_rate  # searches that name the product
    expected = {
        "question": r.question_rate,
        "brand_only": r.brand_only_rate,
        "model_number": r.model_number_rate,
        "attribute_first": r.attribute_first_rate,
        "other_language": r.other_language_rate,
        "paraphrase": r.paraphrase_rate * naming,
        "typo": r.typo_rate * (1 - r.other_language_rate / 4),  # Chinese (1 of 4 languages) gets none
    }
    for tag, rate in expected.items():
        assert shares[tag] == pytest.approx(rate, rel=0.15, abs=0.004), tag
    assert 0.15 < shares["unseen_phrasing"] / shares["paraphrase"] < 0.6


@pytest.mark.parametrize(
    ("field", "gone"),
    [
        ("paraphrase_rate", {"paraphrase"}),  # a slip may still make one ("face wash" -> "facewash")
        ("held_out_share", {"unseen_phrasing"}),
        ("typo_rate", {"typo"}),
        ("question_rate", {"question"}),
        ("brand_only_rate", {"brand_only"}),
        ("model_number_rate", {"model_number"}),
        ("attribute_first_rate", {"attribute_first"}),
        ("other_language_rate", {"other_language"}),
    ],
)
def test_a_zero_rate_produces_no_such_tag(field, gone):
    sim = simulate(SimConfig(seed=5, n_searches=3_000, realism=ShopperRealism(**{field: 0.0})))
    seen = {tag for tags in sim.kinds.values() for tag in tags}
    assert not seen & gone
    if field == "paraphrase_rate":
        assert all("typo" in tags for tags in sim.kinds.values() if "unseen_phrasing" in tags)
    assert seen  # the other kinds are still there


def test_every_shape_off_and_no_slips_types_the_catalogue_texts():
    quiet = ShopperRealism(paraphrase_rate=0, typo_rate=0, hard_query_precision=1, **_NO_SHAPES)
    sim = simulate(SimConfig(seed=3, n_searches=2_000, realism=quiet, intent_types=None))
    assert sim.kinds == {}
    assert _fingerprint(sim) == EASY_FINGERPRINT  # same draws, same texts, same truth


def test_held_out_phrasings_are_stable_and_a_share_of_each_leaf():
    code = (
        "from streams.simulator.phrasing import Phraser; from streams.simulator.vocabulary import LEAVES; "
        "from streams.simulator.realism import ShopperRealism; "
        "print(sorted(s for w in Phraser(ShopperRealism(), LEAVES, 0).words for s in w.held_out))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1  # not Python's salted hash, not an rng
    phraser = Phraser(ShopperRealism(), LEAVES, seed=9)
    assert all(1 <= len(w.held_out) < len(w.synonyms) for w in phraser.words)
    assert held_out_phrasings("a/b/c", ["x", "y", "z"], 0.0) == frozenset()
    names = ["kicks", "sneakers", "runners", "plimsolls"]
    assert held_out_phrasings("a/b/c", names, 0.5) == held_out_phrasings("a/b/c", names[::-1], 0.5)


def test_every_text_with_a_held_out_phrasing_is_tagged_unseen_and_its_word_is_new(sim):
    held = {
        leaf.path: w.held_out
        for leaf, w in zip(LEAVES, Phraser(ShopperRealism(), LEAVES, 0).words, strict=True)
    }
    unseen = sim.tagged("unseen_phrasing")
    assert unseen
    for text, path in sim.truth.items():
        if any(f" {phrase} " in f" {text} " for phrase in held[path]):
            assert text in unseen, text
    # Kept out of training, they take their words away with them: each has a word no training
    # text of its intent uses (misspellings aside: "plant er" can be a slip on "planter").
    training = defaultdict(set)
    for text, path in sim.truth.items():
        if not {"unseen_phrasing", "typo"} & sim.kinds.get(text, set()):
            training[path].update(text.split())
    clean = [t for t in unseen if "typo" not in sim.kinds[t]]
    assert all(set(t.split()) - training[sim.truth[t]] for t in clean)


def test_typos_differ_from_what_was_meant_and_keep_its_truth():
    """Typos only, the engine unchanged: the same draws as the easy shop, search for search."""
    only_typos = ShopperRealism(typo_rate=1.0, paraphrase_rate=0, hard_query_precision=1, **_NO_SHAPES)
    typed = simulate(SimConfig(seed=6, n_searches=2_000, realism=only_typos, intent_types=None))
    easy = simulate(SimConfig.easy(seed=6, n_searches=2_000))
    assert len(typed.queries) == len(easy.queries)
    for slip, meant in zip(typed.queries, easy.queries, strict=True):
        wrong, right = normalise_query(slip.query), normalise_query(meant.query)
        assert wrong != right
        assert "typo" in typed.kinds[wrong]
        assert typed.kinds[wrong] <= {"typo", "unseen_phrasing"}
        assert typed.intents[slip.query_id] == easy.intents[meant.query_id]
        if wrong not in typed.ambiguous:
            assert typed.truth[wrong] == easy.truth[right]
    assert sum(n == 1 for n in Counter(normalise_query(q.query) for q in typed.queries).values()) > 1_000


@pytest.mark.parametrize("text", ["running shoes for men", "adidas sneakers", "tv", "a b", "sony wh-1000xm5"])
def test_misspell_always_changes_the_text_a_little(text):
    rng = random.Random(0)
    for _ in range(200):
        slip = misspell(rng, text)
        assert slip != text
        assert abs(len(slip) - len(text)) <= 3
    assert set(ADJACENT["s"]) == set("adwezx")


def test_other_language_queries_leave_ascii_and_chinese_is_tagged(sim):
    foreign = sim.tagged("other_language")
    assert foreign
    assert sum(not t.isascii() for t in foreign) / len(foreign) > 0.3
    chinese = {t for t in sim.truth if any("\u4e00" <= c <= "\u9fff" for c in t)}
    assert chinese and chinese <= foreign
    assert {"无线耳机", "跑步鞋"} <= {PHRASINGS[p]["translations"]["zh"] for p in PHRASINGS}


def test_truth_covers_every_text_and_brands_are_ambiguous(sim):
    assert set(sim.truth) == {normalise_query(q.query) for q in sim.queries}
    by_text = defaultdict(set)
    for q in sim.queries:
        by_text[normalise_query(q.query)].add(sim.intents[q.query_id])
    for text, intents in by_text.items():
        if text not in sim.ambiguous:
            assert intents == {sim.truth[text]}, text
    brands = sim.tagged("brand_only")
    assert len(brands & sim.ambiguous) > len(brands) / 4  # "sony": headphones, earbuds or speakers


def test_queries_are_short_with_a_long_tail_of_rare_texts(sim):
    texts = [normalise_query(q.query) for q in sim.queries]
    counts = Counter(texts)
    assert 2.0 < sum(len(t.split()) for t in texts) / len(texts) < 3.6
    assert sum(n == 1 for n in counts.values()) / len(counts) > 0.6
    assert max(len(t.split()) for t in sim.tagged("question")) >= 8


def test_the_lexical_engine_shows_fewer_relevant_products_for_hard_texts(sim):
    category = {p.product_id: p.category_path for p in sim.catalog}
    relevant: dict[bool, list[float]] = {True: [], False: []}
    for q in sim.queries:
        tags = sim.kinds.get(normalise_query(q.query), frozenset())
        share = sum(category[p] == sim.intents[q.query_id] for p in q.shown) / len(q.shown)
        relevant[not HARD_FOR_ENGINE.isdisjoint(tags)].append(share)
    hard, plain = (sum(v) / len(v) for v in (relevant[True], relevant[False]))
    assert hard < 0.75 * plain


def test_shape_rates_must_fit_in_one_draw():
    with pytest.raises(ValidationError, match="shape rates"):
        ShopperRealism(question_rate=0.6, model_number_rate=0.5)
    with pytest.raises(ValidationError):
        ShopperRealism(typo_rate=1.5)


def test_the_phraser_only_uses_its_own_rng():
    world = build_world(random.Random(0), 200, 0.05)
    entry = world.texts[0]
    a, b = Phraser(ShopperRealism(), world.leaves, 1), Phraser(ShopperRealism(), world.leaves, 1)
    shared = random.getstate()
    first = [a.phrase(entry, entry.truth) for _ in range(50)]
    assert random.getstate() == shared  # the module-level rng is untouched
    assert first == [b.phrase(entry, entry.truth) for _ in range(50)]
    assert any(p is not None for p in first) and any(p is None for p in first)


def test_every_leaf_has_alternative_names_models_and_translations():
    assert set(PHRASINGS) == {leaf.path for leaf in LEAVES}
    for leaf in LEAVES:
        extra = PHRASINGS[leaf.path]
        assert len(extra["synonyms"]) >= 4 and extra["models"], leaf.path
        assert set(extra["translations"]) == {"es", "de", "fr", "zh"}, leaf.path
        assert not set(extra["synonyms"]) & set(leaf.nouns), leaf.path  # alternatives, not the catalogue's
