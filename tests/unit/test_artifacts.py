import json

import pytest

from store.artifacts import MANIFEST, ArtifactStore
from store.exceptions import ArtifactError


@pytest.fixture
def adapter_dir(tmp_path):
    d = tmp_path / "fresh"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(b"weights" * 100)
    (d / "head.safetensors").write_bytes(b"head")
    (d / MANIFEST).write_text(json.dumps({"format": "intentloop-adapter/1", "labels": ["a", "b"]}))
    return d


def test_publish_is_content_addressed_and_idempotent(tmp_path, adapter_dir):
    store = ArtifactStore(tmp_path / "store")
    v1 = store.publish(adapter_dir)
    assert store.publish(adapter_dir) == v1
    _, manifest = store.fetch(v1)
    assert manifest["version"] == v1 and set(manifest["files"]) == {
        "adapter_model.safetensors",
        "head.safetensors",
    }
    assert manifest["labels"] == ["a", "b"]
    (adapter_dir / "head.safetensors").write_bytes(b"other head")
    assert store.publish(adapter_dir) != v1
    assert store.list_versions() == sorted(store.list_versions()) and len(store.list_versions()) == 2


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "head.safetensors").write_bytes(b"hexd"), "sha256 mismatch"),
        (lambda p: (p / "adapter_model.safetensors").write_bytes(b"weights"), "sha256 mismatch"),
        (lambda p: (p / "head.safetensors").unlink(), "missing"),
        (lambda p: (p / MANIFEST).write_text("{not json"), "not valid JSON"),
        (lambda p: (p / MANIFEST).unlink(), "no manifest.json"),
    ],
    ids=["corrupt", "truncated", "missing-file", "bad-manifest", "no-manifest"],
)
def test_damaged_artifact_is_refused(tmp_path, adapter_dir, damage, message):
    store = ArtifactStore(tmp_path / "store")
    version = store.publish(adapter_dir)
    damage(store.path(version))
    with pytest.raises(ArtifactError, match=message):
        store.fetch(version)


def test_unknown_version_and_empty_dir(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(ArtifactError, match="not found"):
        store.fetch("deadbeef")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / MANIFEST).write_text("{}")
    with pytest.raises(ArtifactError, match="no adapter files"):
        store.publish(empty)


def test_no_partial_directory_is_left_after_a_failed_publish(tmp_path, adapter_dir, monkeypatch):
    store = ArtifactStore(tmp_path / "store")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("store.artifacts.shutil.copy2", boom)
    with pytest.raises(OSError):
        store.publish(adapter_dir)
    assert list((tmp_path / "store").iterdir()) == []
