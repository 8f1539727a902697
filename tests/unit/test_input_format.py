"""Input template, pooling and token budget: resolved once, recorded, applied the same everywhere."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from serving.adapters import SharedBase
from store.artifacts import MANIFEST, ArtifactStore, content_version
from store.exceptions import ArtifactError
from trainer.artifact import load_for_inference, save_adapter
from trainer.batches import Encoded
from trainer.dataset import Example
from trainer.exceptions import ModelError
from trainer.finetune import fit
from trainer.inputs import InputFormat, pool, resolve_input_format, sentence_transformers_pooling
from trainer.settings import ModelSettings, TrainSettings

LABELS = ["electronics", "fashion"]
TRAIN = [
    Example(text, label)
    for text, label in [
        ("usb cable", "electronics"),
        ("phone charger", "electronics"),
        ("red shoe", "fashion"),
        ("blue dress", "fashion"),
    ]
]
TEXTS = ["usb c cable 2m", "red running shoe", "a much longer query about a denim jacket {x}"]
QUICK = TrainSettings(min_steps=0, epochs=1, batch_size=4, learning_rate=5e-3, seed=3)
_OLD_CONTENT_FIELDS = ("format", "labels", "base_model", "peft", "max_length")


class RecordingTokenizer:
    """A real tokenizer that remembers every batch of texts it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.seen = inner, []

    def __call__(self, texts, **kwargs):
        self.seen.append(list(texts))
        return self.inner(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _with_st_pooling(src: Path, dest: Path, mode: str, *, path: str = "1_Pooling") -> Path:
    """A copy of an encoder directory packaged like a sentence-transformers model pooling by ``mode``."""
    shutil.copytree(src, dest)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"},
    ]
    (dest / "modules.json").write_text(json.dumps(modules))
    (dest / path).mkdir()
    flags = {f"pooling_mode_{m}": m.startswith(mode) for m in ("cls_token", "mean_tokens", "max_tokens")}
    (dest / path / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    return dest


@pytest.fixture(scope="module")
def cls_encoder_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return _with_st_pooling(tiny_encoder_dir, tmp_path_factory.mktemp("st") / "enc", "cls")


@pytest.fixture(scope="module")
def trained(cls_encoder_dir, tmp_path_factory):
    """A tiny adapter trained with an E5-style template and the base's own (CLS) pooling, published."""
    fmt = resolve_input_format(ModelSettings(input_template="query: {text}", max_length=16), cls_encoder_dir)
    result = fit(TRAIN, TRAIN, LABELS, cls_encoder_dir, QUICK, 16, progress=False, input_format=fmt)
    out = save_adapter(
        result.model, tmp_path_factory.mktemp("a") / "a", base_dir=cls_encoder_dir, labels=LABELS, metrics={}
    )
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    return result, store, store.publish(out)


def test_template_must_hold_the_text_once():
    assert ModelSettings(input_template="query: {text}").input_template == "query: {text}"
    for bad in ("query: ", "{text} {text}"):
        with pytest.raises(ValidationError, match="exactly once"):
            ModelSettings(input_template=bad)


def test_template_braces_are_literal():
    fmt = InputFormat(template="{{x}} passage: {text}.")
    assert fmt.apply(["a {b}"]) == ["{{x}} passage: a {b}."]


@pytest.mark.parametrize(
    ("mode", "path", "expected"),
    [("cls", "1_Pooling", "cls"), ("mean", "1_Pooling", "mean"), ("max", "pool", "max")],
)
def test_auto_pooling_follows_the_sentence_transformers_config(
    tiny_encoder_dir, tmp_path, mode, path, expected
):
    base = _with_st_pooling(tiny_encoder_dir, tmp_path / "enc", mode, path=path)
    assert sentence_transformers_pooling(base) == expected
    assert resolve_input_format(ModelSettings(), base).pooling == expected
    assert resolve_input_format(ModelSettings(pooling="mean"), base).pooling == "mean"  # explicit wins


def test_auto_pooling_without_a_config_is_mean(tiny_encoder_dir):
    assert sentence_transformers_pooling(tiny_encoder_dir) is None
    assert resolve_input_format(ModelSettings(), tiny_encoder_dir) == InputFormat(max_length=32)


def test_a_pooling_the_head_cannot_reproduce_is_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    config = {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="INTENTLOOP_MODEL__POOLING"):
        sentence_transformers_pooling(tmp_path)


def test_pooling_ignores_padding_on_either_side():
    hidden = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [9.0, 9.0]], [[9.0, 9.0], [2.0, 4.0], [4.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])  # right-padded row, left-padded row
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 5.0], [2.0, 4.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0], [3.0, 2.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 5.0], [4.0, 4.0]]


def test_manifest_records_the_format_and_every_loader_applies_it(trained, cls_encoder_dir):
    result, store, version = trained
    path, manifest = store.fetch(version)
    assert manifest["input_format"] == {"template": "query: {text}", "pooling": "cls", "max_length": 16}
    expected = InputFormat("query: {text}", "cls", 16)
    loaded = load_for_inference(cls_encoder_dir, path)
    adapter = SharedBase(cls_encoder_dir).build(version, path, manifest)
    assert loaded.module.input_format == adapter.input_format == result.model.input_format == expected


def test_training_evaluation_and_serving_feed_the_encoder_the_same_tokens(trained, cls_encoder_dir):
    result, store, version = trained
    path, manifest = store.fetch(version)
    fmt = result.model.input_format
    train_tok = RecordingTokenizer(result.tokenizer)
    encoded = Encoded([Example(t, "fashion") for t in TEXTS], train_tok, {"fashion": 0}, fmt)
    loaded = load_for_inference(cls_encoder_dir, path)
    loaded.tokenizer = eval_tok = RecordingTokenizer(loaded.tokenizer)
    base = SharedBase(cls_encoder_dir)
    adapter = base.build(version, path, manifest)
    base.tokenizer = serve_tok = RecordingTokenizer(base.tokenizer)

    served = base.predict_proba(adapter, TEXTS)
    evaluated = loaded.predict_proba(TEXTS)
    batch = encoded.collate(list(range(len(TEXTS))))
    with torch.inference_mode():
        trained_probs = torch.softmax(result.model(batch["input_ids"], batch["attention_mask"]), -1).numpy()

    templated = [f"query: {t}" for t in TEXTS]
    assert train_tok.seen == eval_tok.seen == serve_tok.seen == [templated]
    assert np.allclose(served, evaluated, atol=1e-5)
    assert np.allclose(served, trained_probs, atol=1e-5)


def test_an_old_manifest_without_the_format_loads_as_trained_and_keeps_its_id(
    trained, cls_encoder_dir, tmp_path
):
    _, store, version = trained
    src = tmp_path / "old"
    shutil.copytree(store.path(version), src)
    manifest = json.loads((src / MANIFEST).read_text())
    for key in ("version", "files", "meta_sha256", "input_format"):
        manifest.pop(key)
    (src / MANIFEST).write_text(json.dumps(manifest))
    old = store.publish(src)

    # The id the code before ``input_format`` existed gave it: meta hash over the five old fields.
    meta = {k: manifest.get(k) for k in _OLD_CONTENT_FIELDS}
    meta_sha = hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir() if p.name != MANIFEST}
    assert old == content_version(files, meta_sha) != version

    path, fetched = store.fetch(old)
    legacy = InputFormat("{text}", "mean", 16)
    assert load_for_inference(cls_encoder_dir, path).module.input_format == legacy
    assert SharedBase(cls_encoder_dir).build(old, path, fetched).input_format == legacy


def test_dropping_the_format_from_a_published_manifest_is_refused(trained):
    _, store, version = trained
    manifest_file = store.path(version) / MANIFEST
    original = manifest_file.read_text()
    try:
        manifest = json.loads(original)
        del manifest["input_format"]
        manifest_file.write_text(json.dumps(manifest))
        with pytest.raises(ArtifactError, match="changed after publishing"):
            store.fetch(version)
    finally:
        manifest_file.write_text(original)
