"""The one definition of each metric (trainer/metrics.py), on hand-computed cases."""

import pytest

from trainer.metrics import accuracy, macro_f1, per_class

TRUE = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]


def test_accuracy_counts_exact_matches():
    assert accuracy(TRUE, PRED) == pytest.approx(4 / 6)
    assert accuracy([], []) == 0.0


def test_per_class_hand_computed():
    scores = per_class(TRUE, PRED)
    assert list(scores) == ["a", "b", "c"]
    # a: tp 2, predicted 2, true 3
    assert scores["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    # b: tp 1, predicted 2, true 2
    assert scores["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # c: tp 1, predicted 2, true 1
    assert scores["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


def test_macro_f1_is_the_unweighted_mean():
    assert macro_f1(TRUE, PRED) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # A label predicted but never true costs the true class its recall, and is not averaged in.
    assert macro_f1(["a", "a", "b"], ["a", "c", "b"]) == pytest.approx((2 / 3 + 1) / 2)
    assert macro_f1(["a", "a"], ["b", "b"]) == 0.0
    assert macro_f1(["x", "y"], ["x", "y"]) == 1.0
    assert macro_f1([], []) == 0.0


def test_zero_division_counts_as_zero():
    scores = per_class(["a", "a"], ["b", "b"])
    assert scores["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2.0}
    assert scores["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0.0}
    assert list(per_class(["a"], ["b"], labels=["b"])) == ["b"]
    assert per_class([], []) == {}


def test_length_mismatch_is_an_error():
    for metric in (accuracy, macro_f1, per_class):
        with pytest.raises(ValueError, match="items"):
            metric(["a"], ["a", "b"])
