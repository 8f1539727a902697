import random

import numpy as np
import pytest

from streams.weak import label_model
from streams.weak.policies import LabelDistribution

LABELS = ("books", "garden", "pets", "toys")


def synthetic_outputs(n=600, seed=0):
    """Answers of three functions with known behaviour, and the truth.

    ``good`` is right 90% of the time on 70% of queries; ``shifted`` always answers the next label
    (a consistent confusion a learned model can invert, a vote cannot); ``against`` votes against
    the true label (like a negative function whose trigger is anti-correlated with failure).
    """
    rng = random.Random(seed)
    outputs, truth = {}, {}
    for i in range(n):
        q, y = f"q{i}", rng.randrange(len(LABELS))
        truth[q] = LABELS[y]
        answers = {}
        if rng.random() < 0.7:
            answers["good"] = (LABELS[y] if rng.random() < 0.9 else rng.choice(LABELS), 1)
        if rng.random() < 0.6:
            answers["shifted"] = (LABELS[(y + 1) % len(LABELS)], 1)
        if rng.random() < 0.5:
            answers["against"] = (LABELS[y], -1)
        if answers:
            outputs[q] = answers
    return outputs, truth


def test_dawid_skene_learns_each_functions_confusion():
    outputs, truth = synthetic_outputs()
    model = label_model.fit(outputs)
    assert model.labels == LABELS
    assert model.lfs == ("against", "good", "shifted")
    posteriors = model.predict(outputs)
    assert set(posteriors) == set(outputs)
    assert all(sum(p.values()) == pytest.approx(1.0) for p in posteriors.values())
    predicted = {q: max(p, key=p.__getitem__) for q, p in posteriors.items()}
    only_shifted = [q for q, a in outputs.items() if set(a) == {"shifted"}]
    assert only_shifted and all(predicted[q] == truth[q] for q in only_shifted)
    accuracy = np.mean([predicted[q] == truth[q] for q in outputs])
    assert accuracy > 0.95
    k = len(LABELS)
    against = model.confusion[model.lfs.index("against")]
    assert np.all(np.argmax(against, axis=1) == k + np.arange(k))  # "against j" is learned to mean j


def test_predict_ignores_queries_without_known_answers():
    model = label_model.fit({"a": {"good": ("books", 1)}, "b": {"good": ("toys", 1)}})
    assert set(model.predict({"a": {"good": ("books", 1)}, "c": {"unknown": ("toys", 1)}})) == {"a"}


def _majority(labels: dict[str, str | None]) -> dict[str, LabelDistribution]:
    return {
        q: LabelDistribution(q, label, 1.0, 3.0, {label: 1.0} if label else {}, label is None)
        for q, label in labels.items()
    }


GOLD = {f"q{i}": "books" for i in range(10)}


@pytest.mark.parametrize(
    ("majority_right", "model_right", "model_covered", "use"),
    [
        (8, 10, 10, "dawid_skene"),
        (9, 9, 10, "majority"),  # as good is not good enough
        (10, 8, 10, "majority"),
    ],
)
def test_compare_uses_the_model_only_when_it_beats_the_vote(majority_right, model_right, model_covered, use):
    majority = _majority({q: "books" if i < majority_right else "toys" for i, q in enumerate(GOLD)})
    posteriors = {
        q: {"books": 0.9, "toys": 0.1} if i < model_right else {"books": 0.1, "toys": 0.9}
        for i, q in enumerate(list(GOLD)[:model_covered])
    }
    report = label_model.compare(GOLD, majority, posteriors)
    assert report["use"] == use
    assert report["majority"]["accuracy"] == majority_right / 10
    assert report["dawid_skene"]["accuracy"] == model_right / model_covered


def test_compare_scores_both_on_the_queries_both_label():
    majority = _majority({"q0": "books", "q1": None, "q2": "toys"})  # q1 abstains
    posteriors = {
        "q1": {"books": 1.0},
        "q2": {"books": 0.55, "toys": 0.45},
        "q3": {"toys": 0.4, "books": 0.6},
    }
    report = label_model.compare({"q0": "books", "q1": "books", "q2": "books"}, majority, posteriors)
    assert report["common"] == {"n": 1, "majority_accuracy": 0.0, "dawid_skene_accuracy": 1.0}
    assert report["majority"] == {"n": 2, "coverage": 2 / 3, "accuracy": 0.5}
    assert report["dawid_skene"] == {"n": 2, "coverage": 2 / 3, "accuracy": 1.0}
    strict = label_model.compare({"q2": "books"}, majority, posteriors, min_confidence=0.6)
    assert strict["dawid_skene"]["n"] == 0 and strict["use"] == "majority"
