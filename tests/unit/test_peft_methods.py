"""PEFT methods, layer selection and warm starts on a tiny random BERT.

Each method is trained for real (a few steps), saved, and loaded the way serving loads it; the loaded
(merged) classifier must give the probabilities the trained model gave: the head and every adapter
tensor survive the round trip.
"""

import json

import numpy as np
import pytest
import torch

from trainer.artifact import load_for_inference, load_trainable_state, save_adapter
from trainer.classifier import IntentClassifier, build_classifier
from trainer.dataset import Example
from trainer.exceptions import ModelError
from trainer.finetune import fit
from trainer.settings import TrainSettings

LABELS = ["electronics", "fashion", "garden"]
_WORDS = {
    "fashion": ["red shoe", "blue dress", "leather boots", "denim jacket"],
    "electronics": ["usb cable", "hdmi adapter", "phone charger", "wireless mouse"],
    "garden": ["garden hose", "flower pot", "lawn mower", "seed tray"],
}
TEXTS = ["red shoe 4", "usb cable 2m", "flower pot large", "a much longer query about a denim jacket"]
RECIPE = TrainSettings(min_steps=0, epochs=2, batch_size=16, learning_rate=5e-3, seed=3)


def _examples(n: int) -> list[Example]:
    out = []
    for i in range(n):
        label = LABELS[i % 3]
        out.append(Example(f"{_WORDS[label][i % 4]} {i}", label))
    return out


def _probs(model: IntentClassifier, tokenizer, texts: list[str]) -> np.ndarray:
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=16, return_tensors="pt")
    model.eval()
    with torch.inference_mode():
        return torch.softmax(model(enc["input_ids"], enc["attention_mask"]), -1).numpy()


@pytest.mark.parametrize("method", ["lora", "adalora", "ia3"])
def test_each_method_trains_and_round_trips_with_its_head(method, tiny_encoder_dir, tmp_path):
    settings = RECIPE.model_copy(update={"peft_method": method})
    result = fit(_examples(96), _examples(30)[::2], LABELS, tiny_encoder_dir, settings, 16, progress=False)
    assert result.metrics["peft_method"] == method
    trained = {n for n, p in result.model.named_parameters() if p.requires_grad}
    marker = "ia3_l" if method == "ia3" else "lora_"
    encoder_trained = {n for n in trained if n.startswith("encoder.")}
    assert encoder_trained and all(marker in n for n in encoder_trained)
    assert {"head.weight", "head.bias"} <= trained
    expected = _probs(result.model, result.tokenizer, TEXTS)

    out = save_adapter(
        result.model, tmp_path / method, base_dir=tiny_encoder_dir, labels=LABELS, metrics={}, max_length=16
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["peft"]["method"] == method
    loaded = load_for_inference(tiny_encoder_dir, out)
    assert not any(marker in n for n, _ in loaded.module.named_parameters()), "adapter should be merged"
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), expected, atol=1e-5)
    # the head really came from the artifact (a fresh head would give other answers)
    np.testing.assert_array_equal(
        loaded.module.head.weight.numpy(), result.model.head.weight.detach().numpy()
    )


def test_adalora_prunes_its_rank_budget(tiny_encoder_dir, tmp_path):
    settings = RECIPE.model_copy(
        update={
            "peft_method": "adalora",
            "epochs": 4,
            "patience": 10,
            "lora_r": 8,
            "adalora_target_r": 2,
            "augment_typos": 0.0,  # 96 rows, 6 batches an epoch: the step count below
        }
    )
    result = fit(_examples(96), [], LABELS, tiny_encoder_dir, settings, 16, progress=False)
    out = save_adapter(result.model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
    peft = json.loads((out / "manifest.json").read_text())["peft"]
    # 2 layers x (query, value) start with 8 ranks each (32); the budget is 2 per module (8)
    assert peft["total_step"] == result.metrics["steps"] == 24
    assert peft["ranks_kept"] <= 8 < 32
    np.testing.assert_allclose(
        load_for_inference(tiny_encoder_dir, out).predict_proba(TEXTS),
        _probs(result.model, result.tokenizer, TEXTS),
        atol=1e-5,
    )


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_layers_choose_the_adapted_blocks(method, tiny_encoder_dir, tmp_path):
    model, tok = build_classifier(tiny_encoder_dir, LABELS, TrainSettings(peft_method=method, layers=[-1]))
    adapted = {
        n.split(".layer.")[1].split(".")[0]
        for n, p in model.named_parameters()
        if p.requires_grad and ".layer." in n
    }
    assert adapted == {"1"}  # the last of the tiny encoder's two blocks only
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    expected = _probs(model, tok, TEXTS)
    out = save_adapter(model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
    np.testing.assert_allclose(
        load_for_inference(tiny_encoder_dir, out).predict_proba(TEXTS), expected, atol=1e-5
    )

    with pytest.raises(ModelError, match="out of range"):
        build_classifier(tiny_encoder_dir, LABELS, TrainSettings(peft_method=method, layers=[2]))


def test_warm_start_loads_adapter_and_head_or_falls_back(tiny_encoder_dir, tmp_path):
    first = fit(_examples(96), [], LABELS, tiny_encoder_dir, RECIPE, 16, progress=False)
    out = save_adapter(first.model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
    expected = _probs(first.model, first.tokenizer, TEXTS)

    fresh, tok = build_classifier(tiny_encoder_dir, LABELS, RECIPE)
    assert not np.allclose(_probs(fresh, tok, TEXTS), expected, atol=1e-3)
    load_trainable_state(fresh, out)
    np.testing.assert_allclose(_probs(fresh, tok, TEXTS), expected, atol=1e-6)

    # warm-started training starts from there: one step at a vanishing rate stays next to it
    still = RECIPE.model_copy(update={"epochs": 1, "learning_rate": 1e-12, "lora_dropout": 0.0})
    warm = fit(_examples(16), [], LABELS, tiny_encoder_dir, still, 16, progress=False, init_from=out)
    assert warm.metrics["init"]["from"] == "adapter"
    np.testing.assert_allclose(_probs(warm.model, warm.tokenizer, TEXTS), expected, atol=1e-4)

    # another method (other tensors) cannot warm-start from it: base model, and the run says why
    ia3 = fit(
        _examples(16),
        [],
        LABELS,
        tiny_encoder_dir,
        still.model_copy(update={"peft_method": "ia3"}),
        16,
        progress=False,
        init_from=out,
    )
    assert ia3.metrics["init"]["from"] == "base" and "differs" in ia3.metrics["init"]["fallback"]


def test_early_stopping_prefers_gold_validation_rows(tiny_encoder_dir):
    train = _examples(96)
    # validation weak labels are all wrong; the gold rows are right: selecting on gold is what works
    wrong = [Example(e.text, LABELS[(LABELS.index(e.label) + 1) % 3]) for e in _examples(30)]
    gold = [Example(f"{e.text} gold", e.label, gold=True) for e in _examples(12)]
    settings = RECIPE.model_copy(update={"epochs": 3, "patience": 5, "early_stop_min_gold": 10})
    on_gold = fit(train, [*wrong, *gold], LABELS, tiny_encoder_dir, settings, 16, progress=False)
    m = on_gold.metrics
    assert (m["early_stopping_on"], m["val_gold_examples"]) == ("gold", 12)
    assert m["gold_val_macro_f1"] > m["val_macro_f1"]

    few = settings.model_copy(update={"early_stop_min_gold": 13})
    on_weak = fit(train, [*wrong, *gold], LABELS, tiny_encoder_dir, few, 16, progress=False)
    assert on_weak.metrics["early_stopping_on"] == "weak" and "gold_val_macro_f1" not in on_weak.metrics


@pytest.mark.parametrize("method", ["lora", "adalora", "ia3"])
def test_serving_loads_each_method_on_the_shared_base_without_touching_it(method, tiny_encoder_dir, tmp_path):
    """Serving merges every method into private copies (IA3 scales weights *and* biases in place):
    the shared base is left as it was, and the served adapter answers as the trained model did."""
    from serving.adapters import SharedBase
    from store.artifacts import ArtifactStore

    settings = RECIPE.model_copy(update={"peft_method": method})
    result = fit(_examples(96), [], LABELS, tiny_encoder_dir, settings, 16, progress=False)
    out = save_adapter(
        result.model, tmp_path / method, base_dir=tiny_encoder_dir, labels=LABELS, metrics={}, max_length=16
    )
    store = ArtifactStore(tmp_path / "store")
    path, manifest = store.fetch(store.publish(out))
    base = SharedBase(tiny_encoder_dir)
    before = {k: v.clone() for k, v in base.encoder.state_dict().items()}
    adapter = base.build(manifest["version"], path, manifest)
    for k, v in base.encoder.state_dict().items():
        assert torch.equal(v, before[k]), f"{method} merge wrote into the shared base: {k}"
    assert base.shares_base(adapter)
    np.testing.assert_allclose(
        base.predict_proba(adapter, TEXTS), _probs(result.model, result.tokenizer, TEXTS), atol=1e-5
    )
