"""A fused version is one artifact: saved, hashed, loaded and refused as a whole (trainer/fused_artifact)."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import skops.io as sio
from fused_helpers import edit_fusion, members_directly, queries_with_a_known_one, republish
from serving_helpers import LABELS, TEXTS
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from serving.synthetic import synthetic_adapter, synthetic_fused_adapter
from store.artifacts import CONTENT_FIELDS, MANIFEST, ArtifactStore, content_version, manifest_meta_sha256
from store.exceptions import ArtifactError
from trainer.artifact import ADAPTER_FILES, load_for_inference, load_version, save_adapter
from trainer.classifier import FrozenBase, LoadedModel, build_classifier
from trainer.exceptions import CorruptAdapterError, InvalidAdapterError, ModelError
from trainer.fused_artifact import FusedModel, FusedParts
from trainer.fusion import Fusion
from trainer.gate import FusedPredictor
from trainer.members.lexical import LexicalModel
from trainer.members.memory import BehaviourMemory
from trainer.settings import TrainSettings

# The content fields before fusion existed: a plain version's id must still be computed from these.
_LEGACY_FIELDS = ("format", "labels", "base_model", "peft", "max_length", "input_format")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("fused-artifacts"))


@pytest.fixture(scope="module")
def fused(store, tiny_encoder_dir):
    return synthetic_fused_adapter(store, tiny_encoder_dir, seed=11, labels=LABELS, max_length=16)


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return FrozenBase(tiny_encoder_dir)


def test_a_plain_version_keeps_its_files_and_its_id(tmp_path, tiny_encoder_dir):
    store = ArtifactStore(tmp_path / "artifacts")
    version = synthetic_adapter(store, tiny_encoder_dir, seed=3, labels=LABELS, max_length=16)
    path, manifest = store.fetch(version)
    assert sorted(p.name for p in path.iterdir()) == sorted([*ADAPTER_FILES, MANIFEST])
    assert "fusion" not in manifest and "fusion" in CONTENT_FIELDS
    legacy = {k: manifest[k] for k in _LEGACY_FIELDS}
    legacy_meta = hashlib.sha256(
        json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert manifest_meta_sha256(manifest) == legacy_meta == manifest["meta_sha256"]
    assert content_version(manifest["files"], legacy_meta) == version
    # Same inputs, same bytes, same id, fusion or not in the code base.
    assert (
        synthetic_adapter(
            ArtifactStore(tmp_path / "again"), tiny_encoder_dir, seed=3, labels=LABELS, max_length=16
        )
        == version
    )


def test_the_manifest_lists_every_member_and_the_id_covers_them(store, fused, tiny_encoder_dir, tmp_path):
    path, manifest = store.fetch(fused)
    section = manifest["fusion"]
    assert section["labels"] == manifest["labels"] == LABELS
    assert {n: m["kind"] for n, m in section["members"].items()} == {
        "lora": "adapter",
        "tfidf": "lexical",
        "memory": "memory",
    }
    fusion = Fusion.load(path)
    assert section["method"] == fusion.method and section["temperature"] == fusion.temperature
    for name in ("lexical.skops", "lexical.json", "memory.json", "fusion.json", *ADAPTER_FILES):
        assert manifest["files"][name] == hashlib.sha256((path / name).read_bytes()).hexdigest()
    assert (
        synthetic_fused_adapter(
            ArtifactStore(tmp_path / "again"), tiny_encoder_dir, seed=11, labels=LABELS, max_length=16
        )
        == fused
    )
    # The section is hashed into the id: editing it in place is refused by the store.
    edited = json.loads((path / MANIFEST).read_text())
    edited["fusion"]["temperature"] = 1.0
    copy = tmp_path / fused
    shutil.copytree(path, copy)
    (copy / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(ArtifactError, match="changed after publishing"):
        ArtifactStore(tmp_path).fetch(fused)


@pytest.fixture(scope="module")
def loaded(store, fused, tiny_encoder_dir):
    """The fused version as the gate and ``eval`` load it."""
    return load_for_inference(tiny_encoder_dir, store.fetch(fused)[0])


def test_the_one_loader_answers_fused_probabilities(store, fused, base, loaded):
    path, _ = store.fetch(fused)
    texts = queries_with_a_known_one(path)
    members, expected, fusion = members_directly(base, path, texts)
    model = loaded
    assert isinstance(model, FusedModel) and model.labels == LABELS
    assert np.allclose(model.predict_proba(texts), expected, atol=1e-6)
    scores = model.score(texts)
    assert set(scores.members) == set(members) == set(fusion.members)
    for name, probs in members.items():
        assert np.allclose(scores.members[name], probs, atol=1e-6), name
    assert scores.voted["memory"].tolist() == [False] * len(TEXTS) + [True]
    assert model.fused.weights == fusion.member_weights()
    assert isinstance(model, FusedPredictor)  # the gate scores it member by member
    predictors = model.member_predictors()
    assert set(predictors) == set(members)
    for name, predictor in predictors.items():
        assert predictor.labels == LABELS
        assert np.allclose(predictor.predict_proba(texts), members[name], atol=1e-6), name
    assert not np.allclose(expected, members["lora"], atol=1e-3)  # the fusion did change the answer


def test_the_gate_can_make_the_memory_forget_the_rows_it_scores(store, fused, loaded):
    path, _ = store.fetch(fused)
    texts = queries_with_a_known_one(path)
    forgetful = loaded.without_memory_of([texts[-1].upper()])  # queries are matched normalised
    assert isinstance(forgetful, FusedPredictor)
    before, after = loaded.score(texts), forgetful.score(texts)
    assert before.voted["memory"][-1] and not after.voted["memory"].any()
    assert np.allclose(after.members["memory"][-1], BehaviourMemory.load(path).prior)
    assert np.allclose(after.probs[:-1], before.probs[:-1]) and not np.allclose(
        after.probs[-1], before.probs[-1]
    )
    memory = forgetful.member_predictors()["memory"]
    assert np.allclose(memory.predict_proba(texts[-1:]), after.members["memory"][-1:])
    assert np.allclose(loaded.predict_proba(texts), before.probs)  # the loaded model is unchanged


def test_a_plain_version_loads_as_before(store, base, tiny_encoder_dir):
    plain = synthetic_adapter(store, tiny_encoder_dir, seed=2, labels=LABELS, max_length=16)
    path, manifest = store.fetch(plain)
    module, fused = load_version(base, path, manifest)
    assert fused is None and module.labels == LABELS
    assert type(load_for_inference(tiny_encoder_dir, path)) is LoadedModel


# --------------------------------------------------------------------------- refusals
def _untrusted_lexical(d, manifest):
    step = FunctionTransformer(np.log1p)  # names a function: arbitrary code, not our pipeline
    (d / "lexical.skops").write_bytes(sio.dumps(Pipeline([("f", step)])))


def _section(change):
    return lambda d, manifest: change(manifest["fusion"])


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (
            edit_fusion(lambda f: f.update(labels=list(reversed(f["labels"])))),
            InvalidAdapterError,
            "labels differ",
        ),
        (lambda d, m: (d / "fusion.json").write_text("{not json"), InvalidAdapterError, "malformed fusion"),
        (edit_fusion(lambda f: f["params"].update(weights=[1.0])), InvalidAdapterError, "does not fit"),
        (edit_fusion(lambda f: f.update(temperature=2.0)), InvalidAdapterError, "temperature"),
        (edit_fusion(lambda f: f.update(memory_member="tfidf")), InvalidAdapterError, "as the memory"),
        (_untrusted_lexical, InvalidAdapterError, "allow-list"),
        (lambda d, m: (d / "memory.json").unlink(), CorruptAdapterError, "missing"),
        (lambda d, m: (d / "memory.json").write_text("{}"), CorruptAdapterError, "behaviour memory"),
        (lambda d, m: (d / "lexical.skops").write_bytes(b"PK junk"), CorruptAdapterError, "skops"),
        (_section(lambda s: s.update(labels=LABELS[:2])), InvalidAdapterError, "label order or file"),
        (_section(lambda s: s["members"]["tfidf"].update(kind="memory")), InvalidAdapterError, "tfidf"),
        (_section(lambda s: s["members"]["tfidf"].update(files=["../x"])), InvalidAdapterError, "tfidf"),
        (_section(lambda s: s["members"].pop("memory")), InvalidAdapterError, "kinds"),
        (lambda d, m: m.update(fusion=[]), InvalidAdapterError, "no members"),
    ],
    ids=[
        "fusion-labels",
        "fusion-json",
        "fusion-shape",
        "temperature",
        "memory-member",
        "untrusted-types",
        "memory-missing",
        "memory-malformed",
        "lexical-corrupt",
        "section-labels",
        "section-kind",
        "section-files",
        "section-member-missing",
        "section-not-a-dict",
    ],
)
def test_a_bad_member_refuses_the_whole_version(store, fused, base, tmp_path, edit, error, message):
    bad = republish(store, fused, tmp_path, edit)
    path, manifest = store.fetch(bad)  # hashes are consistent: only the loader can tell
    with pytest.raises(error, match=message):
        load_version(base, path, manifest)


def test_save_refuses_members_the_loader_would_refuse(store, fused, tiny_encoder_dir, tmp_path):
    path, _ = store.fetch(fused)
    lexical, memory, fusion = LexicalModel.load(path), BehaviourMemory.load(path), Fusion.load(path)
    model, _ = build_classifier(tiny_encoder_dir, list(reversed(LABELS)), TrainSettings(seed=1))
    with pytest.raises(ModelError, match="labels differ"):
        save_adapter(
            model,
            tmp_path / "out",
            base_dir=tiny_encoder_dir,
            labels=list(reversed(LABELS)),
            metrics={},
            fused=FusedParts(lexical, memory, fusion),
        )
    with pytest.raises(ModelError, match="kinds"):
        save_adapter(
            model,
            tmp_path / "out2",
            base_dir=tiny_encoder_dir,
            labels=LABELS,
            metrics={},
            fused=FusedParts(lexical, memory, fusion, names={"adapter": "lora"}),
        )
    assert [p for d in ("out", "out2") for p in (tmp_path / d).iterdir()] == []  # refused before writing
