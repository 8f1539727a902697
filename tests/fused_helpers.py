"""Shared by the fused-version tests: what a fused artifact's members say, computed without the loader."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from serving_helpers import TEXTS

from store.artifacts import MANIFEST, ArtifactStore
from trainer.artifact import load_adapter
from trainer.classifier import FrozenBase, LoadedModel
from trainer.fusion import Fusion, RowFeatures
from trainer.members.lexical import LexicalModel
from trainer.members.memory import BehaviourMemory


def members_directly(
    base: FrozenBase, path: Path, texts: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray, Fusion]:
    """Every member's probabilities, the fusion's over them, and the fusion: read from the files
    with the members' own classes (the encoder member through ``load_adapter`` alone)."""
    manifest = json.loads((path / MANIFEST).read_text())
    encoder = LoadedModel(load_adapter(base, path, manifest), base.tokenizer, manifest, base.device)
    memory = BehaviourMemory.load(path)
    probs = {
        "lora": encoder.predict_proba(texts),
        "tfidf": LexicalModel.load(path).predict_proba(texts),
        "memory": memory.predict_proba(texts),
    }
    fusion = Fusion.load(path)
    return probs, fusion.predict_proba(probs, RowFeatures.of_queries(texts, memory)), fusion


def queries_with_a_known_one(path: Path) -> list[str]:
    """The serving tests' queries plus one the artifact's memory knows, so its vote counts too."""
    return [*TEXTS, sorted(BehaviourMemory.load(path).to_dict()["queries"])[0]]


def republish(
    store: ArtifactStore, version: str, tmp: Path, edit: Callable[[Path, dict[str, Any]], None]
) -> str:
    """A copy of ``version`` with ``edit(directory, manifest)`` applied and its hashes made consistent
    again: a valid artifact with bad content, which only the loader can refuse."""
    src = tmp / f"edit-{version}"
    shutil.copytree(store.path(version), src)
    manifest = json.loads((src / MANIFEST).read_text())
    for key in ("version", "files", "meta_sha256"):
        manifest.pop(key)
    edit(src, manifest)
    (src / MANIFEST).write_text(json.dumps(manifest))
    return store.publish(src)


def edit_fusion(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, dict[str, Any]], None]:
    """An edit for :func:`republish` that applies ``change`` to the parsed ``fusion.json``."""

    def edit(directory: Path, manifest: dict[str, Any]) -> None:
        data = json.loads((directory / "fusion.json").read_text())
        change(data)
        (directory / "fusion.json").write_text(json.dumps(data))

    return edit
