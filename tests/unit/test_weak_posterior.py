"""The posterior label policy: labels for queries seen once, each action once, IPS that cannot
make a deep click outweigh a top one, decay that never erases a backfill, abstention only on no
or contradictory evidence."""

import pytest
from test_weak_aggregate import BUY, CATALOG, C, search

from streams.weak.analysis import bucket_of, evidence_buckets
from streams.weak.functions import DEFAULT_LFS
from streams.weak.policies import (
    CONTRADICTORY,
    NO_EVIDENCE,
    DirichletPosterior,
    Threshold,
    label_all,
    label_prior,
)
from streams.weak.propensity import Propensity
from streams.weak.settings import LabelSettings
from streams.weak.vote_table import tabulate

DEEP = Propensity((1.0, 0.5, 0.3, 0.2, 0.15, 0.1), max_weight=10.0)
PRIOR = {"shoes": 0.5, "socks": 0.3, "hats": 0.2}


def _posterior(records, propensity=None, half_life_s=None, prior=PRIOR, strength=1.0):
    table = tabulate(records, CATALOG, DEFAULT_LFS, propensity, half_life_s=half_life_s)
    return label_all(table, DirichletPosterior(prior, strength)), table


def test_one_click_is_weak_but_real_evidence_at_any_rank():
    top, _ = _posterior([search((C, 0), text="a")], DEEP)
    deep, _ = _posterior([search((C, 3), text="b")], DEEP)  # below skipped ranks: two functions see it
    a, b = top["a"], deep["b"]
    assert not a.abstained and not b.abstained
    assert (a.label, b.label) == ("shoes", "shoes")
    assert a.evidence == b.evidence == 1.0  # one click, counted once, not inflated by IPS
    assert a.weight == b.weight == pytest.approx(0.5)
    assert a.confidence == pytest.approx((1.0 + 0.5) / 2.0)  # half-way from the prior
    assert a.distribution["socks"] == pytest.approx(0.3 / 2.0)
    assert a.searches == 1


def test_a_deep_click_cannot_outvote_a_top_click_by_being_deep():
    deep_shown = ("k1", "s2", "k2", "s1", "zz", "h1")
    records = [search((C, 0), text="q"), search((C, 5), text="q", shown=deep_shown)]
    clip = LabelSettings().max_ips_weight  # the default clip
    dists, _ = _posterior(records, Propensity(DEEP.theta, max_weight=clip))
    q = dists["q"]
    assert q.evidence == 2.0  # two clicks, not inflated by IPS
    assert (q.abstained, q.reason) == (True, CONTRADICTORY)  # one top click vs one deep click: a tie
    threshold = label_all(tabulate(records, CATALOG, DEFAULT_LFS, DEEP), Threshold(2.0, 0.6))["q"]
    assert (threshold.label, threshold.abstained) == ("hats", False)  # the old rule: 10x IPS, two functions
    more = [*records, search((C, 0), text="q")]  # a second top click settles it
    settled, _ = _posterior(more, Propensity(DEEP.theta, max_weight=clip))
    assert (settled["q"].label, settled["q"].abstained) == ("shoes", False)


def test_consistent_evidence_is_strong_and_a_purchase_counts_as_one_action():
    records = [search((C, 0), text="q"), search((C, 0), text="q"), search((C, 0), (BUY, 0), text="q")]
    dists, _ = _posterior(records)
    q = dists["q"]
    assert q.evidence == 1.0 + 1.0 + 3.0  # click, click, purchase (its click and cart are the same action)
    assert q.confidence == pytest.approx((5.0 + 0.5) / 6.0)
    assert q.weight == pytest.approx(5.0 / 6.0)


def test_abstains_only_without_evidence_or_on_contradiction():
    records = [search(text="nothing"), search((C, 0), text="split"), search((C, 1), text="split")]
    dists, _ = _posterior(records)
    assert (dists["nothing"].abstained, dists["nothing"].reason) == (True, NO_EVIDENCE)
    assert (dists["split"].abstained, dists["split"].reason) == (True, CONTRADICTORY)


def test_decay_moves_the_split_but_never_erases_a_backfilled_log():
    old = [search((C, 0), text="old", days_ago=80.0), search((C, 0), text="new", days_ago=0.0)]
    dists, _ = _posterior(old, half_life_s=14 * 86_400.0)
    assert not dists["old"].abstained and dists["old"].evidence == dists["new"].evidence == 1.0
    shifted = [search((C, 0), text="q", days_ago=60.0), search((C, 1), text="q", days_ago=0.0)]
    q, _ = _posterior(shifted, half_life_s=14 * 86_400.0)
    assert q["q"].label == "socks"  # what shoppers click now outweighs what they clicked two months ago


def test_prior_is_the_evidence_mix_and_buckets_report_coverage_and_accuracy():
    records = [search((C, 0), text="a"), search((C, 0), text="a"), search((C, 1), text="b"), search(text="c")]
    table = tabulate(records, CATALOG, DEFAULT_LFS)
    prior = label_prior(table, smoothing=0.0)
    assert prior == pytest.approx({"shoes": 2 / 3, "socks": 1 / 3})
    dists = label_all(table, DirichletPosterior(prior))
    buckets = evidence_buckets(dists, {"a": "shoes", "b": "hats"})
    assert buckets["1"] == {
        "queries": 2,
        "with_evidence": 1,
        "labelled": 1,
        "coverage": 0.5,
        "evidence_coverage": 1.0,
        "n_gold": 1,
        "accuracy": 0.0,
    }
    assert buckets["2-3"]["accuracy"] == 1.0 and buckets["4+"]["queries"] == 0
    assert [bucket_of(n) for n in (0, 1, 2, 3, 4, 50)] == ["1", "1", "2-3", "2-3", "4+", "4+"]
