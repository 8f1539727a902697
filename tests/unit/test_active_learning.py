"""Active-learning scores (trainer.active_learning): what makes a query worth a person's label."""

import numpy as np
import pytest

from store.review import Candidate
from trainer.active_learning import (
    Weights,
    char_ngram_vectors,
    entropy_uncertainty,
    js_divergence,
    margin_uncertainty,
    random_pick,
    score,
    spread,
)

LABELS = ["fashion", "garden", "grocery"]


def cand(
    query: str = "q",
    searches: int = 10,
    weak: str | None = "fashion",
    distribution: dict[str, float] | None = None,
    confidence: float | None = 0.9,
    abstained: bool = False,
    reason: str | None = None,
) -> Candidate:
    dist = {"fashion": 1.0} if distribution is None else distribution
    return Candidate(query, searches, weak, dist, confidence, abstained, reason, 3.0)


def probs(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def by_index(scored):
    return {s.index: s for s in scored}


def test_margin_and_entropy_bounds():
    assert margin_uncertainty(np.array([0.5, 0.5, 0.0])) == pytest.approx(1.0)
    assert margin_uncertainty(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0)
    assert entropy_uncertainty(np.full(3, 1 / 3)) == pytest.approx(1.0)
    assert entropy_uncertainty(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0)


def test_js_divergence_bounds_and_symmetry():
    assert js_divergence({"a": 1.0}, {"a": 1.0}) == pytest.approx(0.0)
    assert js_divergence({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    a, b = {"a": 0.7, "b": 0.3}, {"a": 0.2, "b": 0.5, "c": 0.3}
    assert js_divergence(a, b) == pytest.approx(js_divergence(b, a))
    assert js_divergence({}, b) == 0.0


def test_score_falls_as_the_margin_grows():
    cands = [cand(str(i)) for i in range(4)]
    p = probs([0.5, 0.5, 0.0], [0.7, 0.3, 0.0], [0.9, 0.1, 0.0], [1.0, 0.0, 0.0])
    scored = score(cands, p, LABELS, drift_labels=set(), weights=Weights(disagreement=0.0))
    assert [s.index for s in scored] == [0, 1, 2, 3]
    assert scored[0].components["uncertainty"] == pytest.approx(1.0)
    assert "champion unsure" in scored[0].why[0]
    assert scored[-1].score == pytest.approx(0.0)


def test_score_grows_with_traffic_logarithmically():
    cands = [cand(str(n), searches=n) for n in (1, 10, 100)]
    p = probs(*([[0.5, 0.5, 0.0]] * 3))
    s = by_index(score(cands, p, LABELS, drift_labels=set(), weights=Weights(disagreement=0.0)))
    assert s[0].score < s[1].score < s[2].score
    assert s[2].score / s[1].score == pytest.approx(np.log1p(100) / np.log1p(10))


def test_entropy_uncertainty_is_an_option():
    cands = [cand("flat"), cand("peaked")]
    p = probs([1 / 3, 1 / 3, 1 / 3], [0.8, 0.1, 0.1])
    scored = score(cands, p, LABELS, drift_labels=set(), uncertainty="entropy")
    assert scored[0].index == 0 and scored[0].components["uncertainty"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="margin"):
        score(cands, p, LABELS, drift_labels=set(), uncertainty="variance")


def test_disagreement_between_clicks_and_model():
    agree = cand("agree", distribution={"fashion": 1.0})
    clash = cand("clash", distribution={"garden": 1.0}, weak="garden")
    p = probs([0.9, 0.1, 0.0], [0.9, 0.1, 0.0])
    s = by_index(score([agree, clash], p, LABELS, drift_labels=set()))
    assert s[1].components["disagreement"] > 0.5 > s[0].components["disagreement"]
    assert s[1].score > s[0].score
    assert any("clicks disagree" in w for w in s[1].why)


def test_abstained_bonus_only_for_busy_queries():
    busy = cand("busy", searches=5, abstained=True, reason="contradictory", distribution={})
    quiet = cand("quiet", searches=2, abstained=True, reason="contradictory", distribution={})
    plain = cand("plain", searches=5, distribution={})
    p = probs(*([[0.9, 0.1, 0.0]] * 3))
    s = by_index(score([busy, quiet, plain], p, LABELS, drift_labels=set(), busy_min_searches=3))
    assert s[0].components["abstained"] == 1.0 and s[1].components["abstained"] == 0.0
    assert s[0].score - s[2].score == pytest.approx(np.log1p(5) * 0.5)
    assert any("abstained (contradictory)" in w for w in s[0].why)


def test_drift_bonus_for_the_model_or_the_weak_label():
    by_model = cand("m", weak=None, distribution={})
    by_weak = cand("w", weak="grocery", distribution={})
    neither = cand("n", weak="fashion", distribution={})
    p = probs([0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0])
    s = by_index(score([by_model, by_weak, neither], p, LABELS, drift_labels={"garden", "grocery"}))
    assert [s[i].components["drift"] for i in range(3)] == [1.0, 1.0, 0.0]
    assert s[1].score - s[2].score == pytest.approx(np.log1p(10) * 0.5)
    assert any("'grocery'" in w for w in s[1].why)


def test_without_a_champion_weak_confidence_is_the_uncertainty():
    sure = cand("sure", confidence=0.95)
    unsure = cand("unsure", confidence=0.4)
    abstained = cand("abst", confidence=0.8, abstained=True, reason="min_evidence", searches=1)
    s = by_index(score([sure, unsure, abstained], None, [], drift_labels=set()))
    assert s[0].components["uncertainty"] == pytest.approx(0.05)
    assert s[1].components["uncertainty"] == pytest.approx(0.6)
    assert s[2].components["uncertainty"] == pytest.approx(1.0)  # abstained: the label means nothing
    assert all(v.components["disagreement"] == 0.0 for v in s.values())


def test_score_checks_the_probability_shape():
    with pytest.raises(ValueError, match="shape"):
        score([cand()], probs([0.5, 0.5]), LABELS, drift_labels=set())


def test_spread_drops_near_duplicates_and_records_similarity():
    cands = [cand(str(i), searches=10 - i) for i in range(4)]
    scored = score(cands, probs(*([[0.5, 0.5, 0.0]] * 4)), LABELS, drift_labels=set())
    v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.6, 0.8]])
    chosen = spread(scored, v, budget=3, max_similarity=0.9)
    assert [s.index for s in chosen] == [0, 2, 3]  # 1 is a near-duplicate of 0
    assert chosen[0].components["nearest_similarity"] == 0.0
    assert chosen[2].components["nearest_similarity"] == pytest.approx(0.8)
    assert [s.index for s in spread(scored, v, budget=2)] == [0, 2]
    assert [s.index for s in spread(scored, None, budget=2)] == [0, 1]
    assert spread(scored, v, budget=0) == []


def test_spread_accepts_unembedded_rows_unchecked():
    cands = [cand(str(i), searches=10 - i) for i in range(3)]
    scored = score(cands, probs(*([[0.5, 0.5, 0.0]] * 3)), LABELS, drift_labels=set())
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    chosen = spread(scored, v, budget=3)
    assert [s.index for s in chosen] == [0, 2]
    assert "nearest_similarity" not in chosen[1].components


def test_random_pick_is_deterministic_per_seed():
    a = random_pick(100, 10, seed=7)
    assert a == random_pick(100, 10, seed=7)
    assert a != random_pick(100, 10, seed=8)
    assert len(set(a)) == 10 and all(0 <= i < 100 for i in a)
    assert sorted(random_pick(5, 10, seed=1)) == [0, 1, 2, 3, 4]
    assert random_pick(5, 0, seed=1) == []


def test_char_ngram_vectors_see_near_duplicates():
    v = char_ngram_vectors(["red running shoes", "red runing shoes", "oat milk"])
    assert np.linalg.norm(v, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert float(v[0] @ v[1]) > 0.7 > float(v[0] @ v[2])
