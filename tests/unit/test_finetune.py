import math
import random

import numpy as np
import pytest

from trainer.artifact import load_for_inference, save_adapter
from trainer.classifier import resolve_base_dir
from trainer.dataset import Example, label_counts
from trainer.exceptions import NotEnoughDataError, TrainerError
from trainer.finetune import at_least_min_steps, fit
from trainer.settings import TrainSettings

LABELS = ["electronics", "fashion"]
FAST = TrainSettings(min_steps=0, epochs=4, batch_size=16, learning_rate=5e-3, patience=2, seed=13)
_FASHION = ["red shoe", "blue dress", "leather boots", "denim jacket", "wool scarf"]
_ELECTRONICS = ["usb cable", "hdmi adapter", "phone charger", "wireless mouse", "laptop stand"]


def _examples(n: int, seed: int = 0) -> list[Example]:
    """Separable synthetic queries: a fashion or electronics product plus a size/number."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = LABELS[i % 2]
        product = rng.choice(_FASHION if label == "fashion" else _ELECTRONICS)
        out.append(Example(f"{product} {rng.randint(1, 99)}", label, weight=rng.choice([0.7, 0.9, 1.0])))
    return out


@pytest.fixture(scope="module")
def data():
    examples = _examples(200)
    return examples[:160], examples[160:]


@pytest.fixture(scope="module")
def fitted(tiny_encoder_dir, data):
    train, val = data
    return fit(train, val, LABELS, tiny_encoder_dir, FAST, max_length=16, progress=False)


def test_fit_learns_a_separable_task_within_its_step_budget(fitted):
    m = fitted.metrics
    assert m["val_accuracy"] > 0.9
    assert m["val_macro_f1"] > 0.9
    # what the old wall-clock bound stood for: one optimizer step per batch, no hidden extra passes
    rows = m["train_examples"] + m["typo_copies"]  # the misspelt copies train too
    assert m["typo_copies"] > 0
    assert m["steps"] == m["epochs_run"] * math.ceil(rows / FAST.batch_size)
    assert set(m) == {
        "val_macro_f1",
        "val_accuracy",
        "early_stopping_on",
        "val_gold_examples",
        "best_epoch",
        "epochs_planned",
        "epochs_run",
        "typo_copies",
        "steps",
        "train_examples",
        "val_examples",
        "trainable_params",
        "total_params",
        "trainable_params_pct",
        "peft_method",
        "init",
        "device",
        "dtype",
        "weights_sha256",
        "wall_s",
        "samples_per_s",
    }
    assert (m["early_stopping_on"], m["val_gold_examples"], m["init"]) == ("weak", 0, {"from": "base"})
    assert (m["device"], m["dtype"], m["peft_method"]) == ("cpu", "fp32", "lora")
    assert (m["train_examples"], m["val_examples"]) == (160, 40)
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= FAST.epochs
    assert m["device"] == "cpu"
    assert 0 < m["trainable_params_pct"] < 10
    assert m["samples_per_s"] > 0
    assert not fitted.model.training


def test_fit_is_deterministic(fitted, tiny_encoder_dir, data):
    first = fitted
    train, val = data
    second = fit(train, val, LABELS, tiny_encoder_dir, FAST, max_length=16, progress=False)
    timing = {"wall_s", "samples_per_s"}
    assert {k: v for k, v in first.metrics.items() if k not in timing} == {
        k: v for k, v in second.metrics.items() if k not in timing
    }
    np.testing.assert_array_equal(
        first.model.head.weight.detach().numpy(), second.model.head.weight.detach().numpy()
    )
    assert first.metrics["weights_sha256"] == second.metrics["weights_sha256"]  # every trained weight
    other = fit(
        train, val, LABELS, tiny_encoder_dir, FAST.model_copy(update={"seed": 14}), 16, progress=False
    )
    assert other.metrics["weights_sha256"] != first.metrics["weights_sha256"]


def test_fitted_model_round_trips(fitted, tiny_encoder_dir, data, tmp_path):
    result = fitted
    _, val = data
    out = save_adapter(
        result.model,
        tmp_path / "a",
        base_dir=tiny_encoder_dir,
        labels=LABELS,
        metrics=result.metrics,
        extra={},
        max_length=16,
    )
    loaded = load_for_inference(tiny_encoder_dir, out)
    predicted = [LABELS[i] for i in loaded.predict_proba([e.text for e in val]).argmax(1)]
    accuracy = np.mean([p == e.label for p, e in zip(predicted, val, strict=True)])
    assert accuracy == pytest.approx(result.metrics["val_accuracy"])


def test_not_enough_data(tiny_encoder_dir):
    with pytest.raises(NotEnoughDataError, match="2 labels"):
        fit(_examples(4), [], ["fashion"], tiny_encoder_dir, FAST, max_length=16, progress=False)
    with pytest.raises(NotEnoughDataError):
        fit([], _examples(4), LABELS, tiny_encoder_dir, FAST, max_length=16, progress=False)


def test_unknown_label_is_refused(tiny_encoder_dir):
    with pytest.raises(TrainerError, match="grocery"):
        fit(
            [*_examples(4), Example("oat milk", "grocery")],
            [],
            LABELS,
            tiny_encoder_dir,
            FAST,
            16,
            progress=False,
        )


def test_label_counts():
    assert label_counts(_examples(5)) == {"electronics": 3, "fashion": 2}


@pytest.mark.slow
def test_real_minilm_fit_and_round_trip(tmp_path):
    base = resolve_base_dir(None)
    examples = _examples(120, seed=1)
    train, val = examples[:100], examples[100:]
    settings = TrainSettings(min_steps=0, epochs=1, batch_size=32, seed=3)
    result = fit(train, val, LABELS, base, settings, max_length=16, progress=False)
    assert result.metrics["epochs_run"] == 1
    assert result.metrics["trainable_params_pct"] < 1
    out = save_adapter(
        result.model,
        tmp_path / "a",
        base_dir=base,
        labels=LABELS,
        metrics=result.metrics,
        extra={},
        max_length=16,
    )
    loaded = load_for_inference(base, out)
    texts = [e.text for e in val]
    enc = result.tokenizer(texts, padding="longest", truncation=True, max_length=16, return_tensors="pt")
    import torch

    with torch.inference_mode():
        expected = torch.softmax(result.model(enc["input_ids"], enc["attention_mask"]), -1).numpy()
    np.testing.assert_allclose(loaded.predict_proba(texts), expected, atol=1e-5)
    assert loaded.manifest["base_model"]["name"] == "nreimers/MiniLM-L6-H384-uncased"


def test_small_snapshots_train_at_least_min_steps() -> None:
    recipe = TrainSettings(epochs=6, patience=2, batch_size=32, min_steps=500)
    small = at_least_min_steps(recipe, 540)  # 17 steps an epoch: 102 steps in 6 epochs
    assert small.epochs == 30 and small.epochs * 17 >= 500 and (small.epochs - 1) * 17 < 500
    assert small.patience == 2 * 5  # as much training without gain as before: 2 of 6 epochs
    assert at_least_min_steps(recipe, 10_000) is recipe  # 313 steps an epoch: already enough
    assert at_least_min_steps(recipe.model_copy(update={"min_steps": 0}), 540).epochs == 6
