from datetime import UTC, datetime

import numpy as np
import pytest

from streams.events import FeedbackType
from streams.simulator import SimConfig, simulate
from streams.simulator.shoppers import EXAMINATION_DECAY
from streams.weak.propensity import (
    Impressions,
    Propensity,
    estimate_propensity,
    fit_harvest,
    fit_pbm,
    impressions_from_records,
)
from streams.weak.records import Interaction, SearchRecord, records_from_simulation

T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("theta", "rank", "weight"),
    [
        ((1.0, 0.5, 0.25), 0, 1.0),
        ((1.0, 0.5, 0.25), 1, 2.0),
        ((1.0, 0.5, 0.25), 7, 4.0),  # past the end: the last rank's value
        ((1.0, 0.01), 1, 10.0),  # clipped at max_weight
        ((1.0, 2.0), 1, 0.5),  # a rank seen more than the top one (a grid layout) weighs less
        ((), 3, 1.0),  # nothing estimated: no correction
    ],
)
def test_weight_is_clipped_inverse_propensity(theta, rank, weight):
    assert Propensity(theta).weight(rank) == pytest.approx(weight)


def synthetic_pbm(theta, n=300_000, n_pairs=6_000, seed=0):
    """Impressions of a true PBM: random pair at a random rank, click = examined and attractive."""
    rng = np.random.default_rng(seed)
    theta = np.asarray(theta)
    pair = rng.integers(0, n_pairs, n)
    rank = rng.integers(0, len(theta), n)
    gamma = rng.beta(1.0, 3.0, n_pairs)
    return Impressions(pair, rank, rng.random(n) < theta[rank] * gamma[pair])


@pytest.mark.parametrize("fit", [fit_pbm, fit_harvest])
@pytest.mark.parametrize("decay", [0.7, 1.0])
def test_estimators_recover_a_known_theta(fit, decay):
    theta = 1.0 / (np.arange(10) + 1.0) ** decay
    estimated = fit(synthetic_pbm(theta))
    assert estimated.theta[0] == 1.0
    np.testing.assert_allclose(estimated.theta, theta, atol=0.03)


def test_pairs_seen_at_one_rank_only_are_not_informative():
    imp = Impressions(
        pair=np.array([7, 7, 3, 3, 3, 9]),
        rank=np.array([0, 2, 1, 1, 1, 0]),  # pair 3 only ever at rank 1, pair 9 once
        clicked=np.array([1, 0, 1, 0, 1, 0], dtype=bool),
    )
    kept = imp.informative()
    assert kept.pair.tolist() == [0, 0]
    assert kept.rank.tolist() == [0, 2]
    assert fit_pbm(Impressions(np.array([0, 1]), np.array([0, 1]), np.array([True, False]))).theta == ()


def _record(text, shown, clicks=(), impressions=0):
    interactions = [Interaction(FeedbackType.impression, shown[r], r, None, T0) for r in range(impressions)]
    interactions += [Interaction(FeedbackType.click, shown[r], r, 20_000, T0) for r in clicks]
    return SearchRecord("id", "s", T0, text, tuple(shown), tuple(interactions))


@pytest.mark.parametrize(
    ("policy", "ranks", "clicked"),
    [
        ("shown", [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("viewed", [0, 1, 0, 1, 2, 3, 4, 5], [0, 1, 0, 0, 0, 0, 0, 1]),
    ],
)
def test_impressions_from_records(policy, ranks, clicked):
    records = [
        _record("a", "uvwxyz", clicks=[1], impressions=2),
        _record("b", "uvwxyz", clicks=[5]),  # no impression events: fold (2) down to the deepest click
    ]
    imp = impressions_from_records(records, policy=policy, fold=2)
    assert imp.rank.tolist() == ranks
    assert imp.clicked.astype(int).tolist() == clicked
    assert len(set(imp.pair.tolist())) == len(imp)  # (text, product) pairs: all distinct here


def test_group_pools_products_into_one_attractiveness():
    records = [_record("a", "uvwxyz")]
    imp = impressions_from_records(records, group={"u": "shoes", "v": "shoes", "w": "socks"})
    assert imp.pair.tolist() == [0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize(("method", "by_category"), [("harvest", False), ("pbm", True)])
def test_on_simulated_traffic_theta_falls_with_rank(method, by_category):
    # The easy shop, where the estimators were tuned (issue 11). On realistic shoppers (issue 13)
    # harvest reads the deep ranks high (0.28 for 0.20 at rank 10, 20,000 searches): left for later.
    sim = simulate(SimConfig.easy(seed=5, n_searches=5_000))
    group = {p.product_id: p.category_path for p in sim.catalog} if by_category else None
    theta = estimate_propensity(records_from_simulation(sim), method=method, group=group).theta
    truth = 1.0 / (np.arange(10) + 1.0) ** EXAMINATION_DECAY
    assert theta[0] > theta[1] > theta[2] > theta[3]
    assert np.mean(theta[5:]) < np.mean(theta[1:5])
    np.testing.assert_allclose(theta, truth, atol=0.1)
