import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.artifact import load_for_inference, save_adapter
from trainer.classifier import IntentClassifier, build_classifier, resolve_base_dir
from trainer.exceptions import ModelError
from trainer.settings import TrainSettings

LABELS = ["electronics", "fashion", "grocery"]
TEXTS = [
    "red running shoe",
    "usb c cable 2m",
    "organic oat milk",
    "a much longer query about a blue denim jacket",
]


def _probs(model: IntentClassifier, tokenizer, texts: list[str], max_length: int = 32) -> np.ndarray:
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    model.eval()
    with torch.inference_mode():
        return torch.softmax(model(enc["input_ids"], enc["attention_mask"]), -1).numpy()


@pytest.fixture
def trained_like(tiny_encoder_dir):
    """A tiny classifier whose LoRA weights are non-zero, as after training."""
    torch.manual_seed(1)
    model, tok = build_classifier(tiny_encoder_dir, LABELS, TrainSettings())
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model, tok


def test_resolve_base_dir_defaults_to_the_wheel_minilm():
    base = resolve_base_dir(None)
    assert (base / "config.json").is_file()
    assert json.loads((base / "config.json").read_text())["hidden_size"] == 384


def test_resolve_base_dir_missing_says_what_to_set(tmp_path):
    with pytest.raises(ModelError, match="INTENTLOOP_MODEL__BASE_DIR"):
        resolve_base_dir(tmp_path / "nope")


def test_build_and_forward_shapes(tiny_encoder_dir):
    model, tok = build_classifier(tiny_encoder_dir, LABELS, TrainSettings())
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    logits = model(enc["input_ids"], enc["attention_mask"])
    assert logits.shape == (len(TEXTS), len(LABELS))
    assert logits.dtype == torch.float32


def test_only_lora_and_head_are_trainable(tiny_encoder_dir):
    model, _ = build_classifier(tiny_encoder_dir, LABELS, TrainSettings())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    total = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert n_trainable / total < 0.10
    encoder_trainable = {n for n in trainable if n.startswith("encoder.")}
    assert encoder_trainable and all("lora_" in n for n in encoder_trainable)
    assert {"head.weight", "head.bias"} <= trainable
    assert trainable == encoder_trainable | {"head.weight", "head.bias"}
    # PEFT's default for BERT: query and value projections.
    assert any(".query.lora_A" in n for n in encoder_trainable)
    assert any(".value.lora_A" in n for n in encoder_trainable)


def test_save_writes_only_safetensors_and_json(trained_like, tiny_encoder_dir, tmp_path):
    model, _ = trained_like
    out = save_adapter(
        model,
        tmp_path / "a",
        base_dir=tiny_encoder_dir,
        labels=LABELS,
        metrics={"val_macro_f1": 0.5},
        extra={"training_run_id": 7},
        max_length=24,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.safetensors",
        "manifest.json",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "intentloop-adapter/1"
    assert manifest["labels"] == LABELS
    assert manifest["max_length"] == 24
    assert manifest["training_run_id"] == 7
    assert manifest["metrics"] == {"val_macro_f1": 0.5}
    assert manifest["base_model"]["model_type"] == "bert"
    assert manifest["base_model"]["hidden_size"] == 32
    assert len(manifest["base_model"]["config_sha256"]) == 64
    assert manifest["peft"] == {
        "method": "lora",
        "r": 8,
        "alpha": 16,
        "dropout": 0.05,
        "target_modules": ["query", "value"],
    }
    assert "created_at" in manifest


def test_round_trip_gives_the_training_probabilities(trained_like, tiny_encoder_dir, tmp_path):
    model, tok = trained_like
    expected = _probs(model, tok, TEXTS)
    with model.encoder.disable_adapter():
        without_lora = _probs(model, tok, TEXTS)
    assert not np.allclose(expected, without_lora, atol=1e-3), "LoRA should change the outputs"
    out = save_adapter(model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={}, extra={})
    loaded = load_for_inference(tiny_encoder_dir, out)
    assert loaded.labels == LABELS
    assert not any("lora_" in n for n, _ in loaded.module.named_parameters()), "LoRA should be merged"
    got = loaded.predict_proba(TEXTS)
    assert got.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert loaded.predict_proba([]).shape == (0, len(LABELS))
    # Small batches (several tokenizer calls) and concurrent readers give the same answers.
    loaded.batch_size = 1
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(lambda _: loaded.predict_proba(TEXTS), range(8)):
            np.testing.assert_allclose(result, expected, atol=1e-5)


def test_adapter_for_another_base_is_refused(trained_like, tiny_encoder_dir, tiny_encoder_factory, tmp_path):
    model, _ = trained_like
    out = save_adapter(model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={}, extra={})
    with pytest.raises(ModelError, match="hidden_size"):
        load_for_inference(tiny_encoder_factory(48), out)
    # Same shapes, different config bytes: still refused.
    twin = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "twin"))
    config = json.loads((twin / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (twin / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="config_sha256"):
        load_for_inference(twin, out)


def test_unknown_architecture_falls_back_to_attention_projections(tiny_encoder_dir, tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    dest = tmp_path / "tiny_distilbert"
    config = DistilBertConfig(
        vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    DistilBertModel(config).save_pretrained(dest)
    for f in tiny_encoder_dir.iterdir():
        if f.name not in {"config.json", "model.safetensors"}:
            shutil.copy2(f, dest / f.name)
    model, tok = build_classifier(dest, LABELS, TrainSettings())
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert any("q_lin.lora_A" in n for n in trainable) and any("v_lin.lora_A" in n for n in trainable)
    out = save_adapter(model, tmp_path / "a", base_dir=dest, labels=LABELS, metrics={}, extra={})
    assert json.loads((out / "manifest.json").read_text())["peft"]["target_modules"] == ["q_lin", "v_lin"]
    np.testing.assert_allclose(
        load_for_inference(dest, out).predict_proba(TEXTS), _probs(model, tok, TEXTS), atol=1e-5
    )


def test_saving_a_merged_model_is_refused(trained_like, tiny_encoder_dir, tmp_path):
    model, _ = trained_like
    out = save_adapter(model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={}, extra={})
    loaded = load_for_inference(tiny_encoder_dir, out)
    with pytest.raises(ModelError, match="merged"):
        save_adapter(loaded.module, tmp_path / "b", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
