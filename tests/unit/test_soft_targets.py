"""Training reads what the labels say: soft targets, evidence weights, and a refusal to train on
too little data."""

import pytest
import torch

from store.labels import LabelledQuery
from trainer.batches import soft_targets, weighted_loss
from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError
from trainer.settings import TrainSettings
from trainer.snapshot import Snapshot, check_trainable, to_example

ROW = LabelledQuery("red shoes", "shoes", 0.6, 1.0, 0, {"shoes": 0.6, "socks": 0.3, "hats": 0.1}, 0.5, 1)


def test_examples_take_target_and_weight_as_configured():
    default = to_example(ROW, TrainSettings())
    assert (default.target, default.label) == (None, "shoes")  # hard targets by default (measured)
    assert default.weight == 0.5  # evidence: how far the query's own evidence decides its label
    soft = to_example(ROW, TrainSettings(targets="soft"))
    assert soft.target == (("hats", 0.1), ("shoes", 0.6), ("socks", 0.3))
    assert soft.weight == 0.5
    hard = to_example(ROW, TrainSettings(targets="hard", example_weight="confidence"))
    assert (hard.target, hard.weight, hard.label) == (None, 0.6, "shoes")
    assert to_example(ROW, TrainSettings(example_weight="uniform")).weight == 1.0


def test_soft_targets_keep_trained_labels_only_and_fall_back_to_one_hot():
    ids = {"shoes": 0, "socks": 1}
    examples = [
        to_example(ROW, TrainSettings(targets="soft")),
        Example("gold query", "socks", 1.0, gold=True),
    ]
    t = soft_targets(examples, ids)
    assert t is not None
    assert t[0].tolist() == pytest.approx([0.6 / 0.9, 0.3 / 0.9])  # "hats" has no head row
    assert t[1].tolist() == [0.0, 1.0]
    assert soft_targets([Example("q", "shoes")], ids) is None  # all hard: the plain loss


def test_soft_loss_on_one_hot_targets_is_the_weighted_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = torch.tensor([0, 2])
    weights = torch.tensor([1.0, 0.5])
    hard = weighted_loss(logits, {"labels": labels, "weights": weights}, torch.device("cpu"))
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    soft = weighted_loss(
        logits, {"labels": labels, "weights": weights, "targets": one_hot}, torch.device("cpu")
    )
    assert soft.item() == pytest.approx(hard.item())
    expected = (torch.nn.functional.cross_entropy(logits, labels, reduction="none") * weights).mean()
    assert hard.item() == pytest.approx(expected.item())


def test_too_small_a_training_set_stops_with_the_settings_to_change():
    rows = [Example(f"q{i}", "shoes" if i % 2 else "socks") for i in range(4)]
    data = Snapshot(rows, [Example("v", "shoes")], ["shoes", "socks"], {"source": "x", "queries": 5})
    with pytest.raises(NotEnoughDataError, match="4 training rows < INTENTLOOP_TRAIN__MIN_EXAMPLES 20"):
        check_trainable(data, TrainSettings())
    check_trainable(data, TrainSettings(min_examples=4))  # enough when the user says so
    one_label = Snapshot(rows, [Example("v", "shoes")], ["shoes"], {"source": "x", "queries": 5})
    with pytest.raises(NotEnoughDataError, match="1 label"):
        check_trainable(one_label, TrainSettings(min_examples=1))
