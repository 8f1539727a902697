"""Cohen's kappa (intentloop.review.agreement) against scikit-learn's, and the per-pair figures."""

import random

import pytest
from sklearn.metrics import cohen_kappa_score

from intentloop.review.agreement import agreement, kappa


@pytest.mark.parametrize("seed", range(20))
def test_kappa_equals_sklearn_on_random_label_pairs(seed):
    rng = random.Random(seed)
    labels = ["fashion", "garden", "grocery", "toys"][: rng.randint(2, 4)]
    n = rng.randint(2, 60)
    a = [rng.choice(labels) for _ in range(n)]
    b = [x if rng.random() < 0.6 else rng.choice(labels) for x in a]
    if len(set(a) | set(b)) == 1:
        b[0] = next(x for x in labels if x != a[0])
    assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_kappa_known_value_and_edges():
    assert kappa(["a", "b", "a", "c"], ["a", "b", "b", "c"]) == pytest.approx(0.6363636, abs=1e-6)
    assert kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert kappa([], []) is None
    assert kappa(["a", "a"], ["a", "a"]) is None  # chance agreement certain: undefined
    with pytest.raises(ValueError, match="same items"):
        kappa(["a"], ["a", "b"])


def test_agreement_per_pair_and_pooled():
    rows = [
        ("q1", {"ann": "x", "bob": "x"}),
        ("q2", {"ann": "x", "bob": "y"}),
        ("q3", {"ann": "y", "bob": "y", "cy": "y"}),
        ("q4", {"bob": "x", "cy": "y"}),
    ]
    result = agreement(rows)
    pairs = {(p.first, p.second): p for p in result.pairs}
    assert set(pairs) == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    ab = pairs["ann", "bob"]
    assert ab.items == 3 and ab.agreement == pytest.approx(2 / 3)
    assert ab.kappa == pytest.approx(cohen_kappa_score(["x", "x", "y"], ["x", "y", "y"]))
    assert pairs["ann", "cy"].items == 1 and pairs["ann", "cy"].kappa is None
    # pooled: the first two reviewers by name of each query
    assert result.items == 4
    assert result.agreement == pytest.approx(2 / 4)
    pooled = cohen_kappa_score(["x", "x", "y", "x"], ["x", "y", "y", "y"])
    assert result.kappa == pytest.approx(pooled)


def test_agreement_of_nothing():
    result = agreement([])
    assert result.pairs == [] and result.items == 0
    assert result.agreement is None and result.kappa is None
