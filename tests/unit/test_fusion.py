"""Fusion (trainer/fusion/): beats members whose errors differ, ignores noise, round-trips as JSON."""

import json

import numpy as np
import pytest

from trainer.calibration import softmax
from trainer.exceptions import NotEnoughDataError
from trainer.fusion import Fusion, RowFeatures, aligned, fit_fusion
from trainer.members.memory import build_memory

K = 6
LABELS = [f"label{i}" for i in range(K)]


def _member(rng, y, right):
    """Probabilities peaked on the true label where ``right``, on a wrong one elsewhere."""
    n = y.shape[0]
    wrong = (y + rng.integers(1, K, n)) % K
    z = rng.normal(0.0, 0.5, (n, K))
    z[np.arange(n), np.where(right, y, wrong)] += 3.0
    return softmax(z)


def _rows(n=1500, seed=0, noise_member=False, memory_share=0.3):
    """Two members right on different, partly overlapping rows (70% each), an optional pure-noise
    member, and a memory that knows ``memory_share`` of the queries (and the prior elsewhere)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    u = rng.random(n)
    probs = {"encoder": _member(rng, y, u < 0.7), "lexical": _member(rng, y, u > 0.3)}
    if noise_member:
        probs["noise"] = rng.dirichlet(np.full(K, 0.3), n)
    known = rng.random(n) < memory_share
    memory = _member(rng, y, rng.random(n) < 0.9)
    memory[~known] = 1.0 / K
    probs["memory"] = memory
    evidence = np.where(known, rng.gamma(2.0, 5.0, n) + 3.0, 0.0)
    features = RowFeatures(rng.poisson(evidence + 1.0), evidence, rng.integers(1, 6, n))
    return probs, features, y


def _accuracy(p, y):
    return float((np.asarray(p).argmax(axis=1) == y).mean())


@pytest.mark.parametrize("method", ["loglinear", "stacking"])
def test_fusion_beats_every_member_whose_errors_differ(method):
    probs, features, y = _rows(seed=1)
    test_probs, test_features, test_y = _rows(seed=2)
    fusion = fit_fusion(probs, features, [LABELS[i] for i in y], LABELS, method=method)
    fused = _accuracy(fusion.predict_proba(test_probs, test_features), test_y)
    best_member = max(_accuracy(p, test_y) for p in test_probs.values())
    assert fused > best_member + 0.05, (fused, best_member)
    assert fusion.report["method"] == method
    assert set(fusion.member_weights()) == {"encoder", "lexical", "memory"}


def test_loglinear_weight_of_a_pure_noise_member_goes_to_zero():
    probs, features, y = _rows(seed=3, noise_member=True)
    fusion = fit_fusion(probs, features, [LABELS[i] for i in y], LABELS, method="loglinear")
    weights = fusion.member_weights()
    assert weights["noise"] < 0.02
    assert min(weights["encoder"], weights["lexical"]) > 0.3


def test_auto_picks_the_lower_cv_nll_and_records_both():
    probs, features, y = _rows(seed=4)
    fusion = fit_fusion(probs, features, [LABELS[i] for i in y], LABELS)
    cv = fusion.report["cv_nll"]
    assert set(cv) == {"loglinear", "stacking"}
    assert fusion.report["method"] == min(cv, key=cv.get) == fusion.method
    assert fusion.report["rows"] == len(y) and fusion.report["temperature"] == fusion.temperature
    assert {"ece_before", "ece_after"} <= set(fusion.report)


@pytest.mark.parametrize("method", ["loglinear", "stacking"])
def test_json_round_trip_gives_identical_predictions(method, tmp_path):
    probs, features, y = _rows(seed=5)
    fusion = fit_fusion(probs, features, [LABELS[i] for i in y], LABELS, method=method)
    again = Fusion.from_json(fusion.to_json())
    assert np.array_equal(again.predict_proba(probs, features), fusion.predict_proba(probs, features))
    assert again.to_json() == fusion.to_json()
    fusion.save(tmp_path)
    assert Fusion.load(tmp_path).to_json() == fusion.to_json()
    assert json.loads(fusion.to_json())["method"] == method


def test_fit_is_deterministic_for_a_seed():
    probs, features, y = _rows(seed=6)
    gold = [LABELS[i] for i in y]
    assert (
        fit_fusion(probs, features, gold, LABELS).to_json()
        == fit_fusion(probs, features, gold, LABELS).to_json()
    )


@pytest.mark.parametrize("method", ["loglinear", "stacking"])
def test_rows_where_the_memory_knows_nothing_do_not_break_the_fusion(method):
    probs, features, y = _rows(seed=7, memory_share=0.0)
    fusion = fit_fusion(probs, features, [LABELS[i] for i in y], LABELS, method=method)
    p = fusion.predict_proba(probs, features)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0)
    assert fusion.report["memory_rows"] == 0
    # encoder and lexical disagree only where exactly one is right, equally sure: a coin flip
    assert _accuracy(p, y) >= max(_accuracy(probs[m], y) for m in ("encoder", "lexical")) - 0.03
    if method == "loglinear":
        assert fusion.member_weights()["memory"] == 0.0  # never present: no weight to report


def test_row_features_come_from_the_memory_artifact():
    memory = build_memory({"usb cable": {"b": 5.0}}, ["a", "b"], searches={"usb cable": 12, "lego": 2})
    features = RowFeatures.of_queries(["USB cable", "lego", "what charger do i need"], memory)
    assert features.searches.tolist() == [12.0, 2.0, 0.0]
    assert features.memory_evidence.tolist() == [5.0, 0.0, 0.0]
    assert features.memory_present.tolist() == [True, False, False]
    assert features.matrix()[:, 3].tolist() == [2.0, 1.0, 5.0]


def test_inputs_are_checked():
    probs, features, y = _rows(n=60, seed=8)
    gold = [LABELS[i] for i in y]
    with pytest.raises(ValueError, match="outside the label list"):
        fit_fusion(probs, features, ["nope", *gold[1:]], LABELS)
    with pytest.raises(NotEnoughDataError):
        fit_fusion({m: p[:5] for m, p in probs.items()}, features.take(np.arange(5)), gold[:5], LABELS)
    fusion = fit_fusion(probs, features, gold, LABELS, method="loglinear")
    with pytest.raises(ValueError, match="expects members"):
        fusion.predict_proba({"encoder": probs["encoder"]}, features)


def test_aligned_reorders_member_columns_onto_the_fusion_labels():
    probs = np.array([[0.7, 0.3], [0.1, 0.9]])
    out = aligned(probs, ["b", "a"], ["a", "b", "c"])
    assert out.tolist() == [[0.3, 0.7, 0.0], [0.9, 0.1, 0.0]]


@pytest.mark.parametrize("seen", [[0, 1], [0, 1, 2, 3]])  # two labels: scikit-learn's binary layout
def test_stacking_still_predicts_a_label_the_fusion_rows_never_showed(seen):
    probs, features, y = _rows(seed=9)
    keep = np.isin(y, seen)
    fusion = fit_fusion(
        {m: p[keep] for m, p in probs.items()},
        features.take(np.flatnonzero(keep)),
        [LABELS[i] for i in y[keep]],
        LABELS,
        method="stacking",
    )
    sure_of_5 = np.full((1, K), 0.01)
    sure_of_5[0, 5] = 0.95
    one_row = RowFeatures(np.array([3.0]), np.array([10.0]), np.array([2.0]))
    p = fusion.predict_proba({m: sure_of_5 for m in probs}, one_row)
    assert p[0].argmax() == 5
