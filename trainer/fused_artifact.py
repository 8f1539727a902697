"""The fused part of an artifact: the cheap members beside the adapter, and the fusion over them all.

A fused version is one artifact: the adapter files as :mod:`trainer.artifact` writes them, plus the
lexical member (``lexical.skops``, ``lexical.json``), the behaviour memory (``memory.json``) and the
fitted fusion (``fusion.json``), all top-level files, so the artifact store hashes each one into the
version id. The manifest's ``fusion`` section names every member with its kind and files, the
method, temperature and label order; being a content field, it is hashed into the id too.

Loading is all or nothing: a missing, damaged or untrusted member file, or any disagreement between
the manifest, ``fusion.json`` and the members (labels, member names, method, temperature) refuses
the whole version with the :class:`~trainer.exceptions.ModelError` subclass the inference workers
count (:class:`CorruptAdapterError`: files; :class:`InvalidAdapterError`: content), never a version
that silently answers with fewer members than it was gated with.

At inference the encoder member's probabilities come from the caller's one forward pass; the
members here only add CPU-cheap work on the same texts (:meth:`FusedMembers.score`).
"""

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from store.taxonomy import normalise_query
from trainer.classifier import IntentClassifier, LoadedModel
from trainer.evaluation import Predictor
from trainer.exceptions import CorruptAdapterError, InvalidAdapterError, ModelError
from trainer.fusion import FILENAME as FUSION_FILE
from trainer.fusion import MEMORY_MEMBER, Fusion, RowFeatures
from trainer.members import lexical as lexical_files
from trainer.members import memory as memory_files
from trainer.members.exceptions import CorruptMemberError, UntrustedMemberError
from trainer.members.lexical import LexicalModel
from trainer.members.memory import BehaviourMemory

SECTION = "fusion"  # the manifest key (a content field of ``store.artifacts``)
ADAPTER, LEXICAL, MEMORY = "adapter", "lexical", "memory"
KINDS = (ADAPTER, LEXICAL, MEMORY)
# The cheap members' files, fixed by the code that writes them: the loader reads exactly these, so
# a manifest cannot point it anywhere else. The adapter's are :mod:`trainer.artifact`'s to name.
MEMBER_FILES: dict[str, tuple[str, ...]] = {
    LEXICAL: (lexical_files.MODEL_FILE, lexical_files.LABELS_FILE),
    MEMORY: (memory_files.FILENAME,),
}
# The fusion's member names (kind -> name) the benchmark and trainer fit with.
DEFAULT_NAMES: Mapping[str, str] = {ADAPTER: "lora", LEXICAL: "tfidf", MEMORY: MEMORY_MEMBER}


@dataclass(frozen=True)
class FusedParts:
    """What :func:`trainer.artifact.save_adapter` writes beside the adapter to make a fused version.

    ``names``: each member kind's name in ``fusion.members`` (the keys its ``fit_fusion`` got).
    """

    lexical: LexicalModel
    memory: BehaviourMemory
    fusion: Fusion
    names: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_NAMES))


def write_members(
    out_dir: Path, parts: FusedParts, labels: list[str], adapter_files: tuple[str, ...]
) -> dict[str, Any]:
    """Write the members' files and ``fusion.json`` into ``out_dir``; returns the manifest section
    (``adapter_files``: the encoder member's files, as the adapter writer names them).

    Refuses (``ModelError``) parts that the loader would refuse: better at training than at serving.
    """
    section = _section(parts, labels, {ADAPTER: adapter_files, **MEMBER_FILES})
    _check_parts(section, parts.fusion, parts.lexical, parts.memory)
    parts.lexical.save(out_dir)
    parts.memory.save(out_dir)
    parts.fusion.save(out_dir)
    return section


def _section(parts: FusedParts, labels: list[str], files: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    if sorted(parts.names) != sorted(KINDS):
        raise ModelError(f"fused parts name kinds {sorted(parts.names)}, need {sorted(KINDS)}")
    return {
        "file": FUSION_FILE,
        "labels": list(labels),
        "members": {name: {"kind": kind, "files": list(files[kind])} for kind, name in parts.names.items()},
        "method": parts.fusion.method,
        "temperature": parts.fusion.temperature,
    }


# ---------------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Scores:
    """One batch's answer: the version's probabilities and, for a fused version, each member's."""

    probs: np.ndarray  # (n, labels): what the version answers (for a fused version, the fusion)
    members: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> (n, labels)
    # name -> (n,) bool: False where the fusion gave the member no vote (the memory on a query it
    # has too little evidence for: its probabilities are then its prior).
    voted: Mapping[str, np.ndarray] = field(default_factory=dict)
    # dimension -> (n, its labels): the extra heads' probabilities from the same encoder pass (the
    # intent type); the category is ``probs``
    heads: Mapping[str, np.ndarray] = field(default_factory=dict)

    def rows(self, start: int, stop: int) -> "Scores":
        """Rows ``start:stop`` of every array: one request's share of a micro-batch's answer."""

        def cut(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: v[start:stop] for k, v in arrays.items()}

        return Scores(self.probs[start:stop], cut(self.members), cut(self.voted), cut(self.heads))


class FusedMembers:
    """A fused version's lexical member, behaviour memory and fusion, loaded and cross-checked."""

    def __init__(
        self, fusion: Fusion, lexical: LexicalModel, memory: BehaviourMemory, names: Mapping[str, str]
    ) -> None:
        self.fusion, self.lexical, self.memory = fusion, lexical, memory
        self.names = dict(names)  # kind -> member name
        self.kinds = {name: kind for kind, name in self.names.items()}  # member name -> kind
        self.weights = fusion.member_weights()  # fixed per version: computed once, served per query

    def score(self, texts: list[str], encoder_probs: np.ndarray) -> Scores:
        """Fuse the encoder member's ``encoder_probs`` (rows of ``texts``) with the other members."""
        features = RowFeatures.of_queries(texts, self.memory)
        members = {
            self.names[ADAPTER]: np.asarray(encoder_probs),
            self.names[LEXICAL]: self.lexical.predict_proba(texts),
            self.names[MEMORY]: self.memory.predict_proba(texts),
        }
        always = np.ones(len(texts), dtype=bool)
        voted = {n: features.memory_present if n == self.fusion.memory_member else always for n in members}
        return Scores(self.fusion.predict_proba(members, features), members, voted)

    def without_memory_of(self, queries: Collection[str]) -> "FusedMembers":
        """These members with a memory that has forgotten the evidence of ``queries`` (they read
        memory-absent); their search counts stay, a frequency says nothing about the label. The
        same leakage rule the fusion was fitted under (:mod:`trainer.fused_training`)."""
        drop = {normalise_query(q) for q in queries}
        saved = self.memory.to_dict()
        memory = BehaviourMemory(
            self.memory.labels,
            self.memory.prior,
            {q: per_label for q, per_label in saved["queries"].items() if q not in drop},
            searches=saved["searches"],
            alpha=self.memory.alpha,
            min_evidence=self.memory.min_evidence,
        )
        return FusedMembers(self.fusion, self.lexical, memory, self.names)


class FusedModel(LoadedModel):
    """A fused version for one-off scoring (the gate, ``eval``): ``predict_proba`` is the fusion's."""

    def __init__(
        self,
        module: IntentClassifier,
        tokenizer: Any,
        manifest: dict[str, Any],
        device: torch.device,
        fused: FusedMembers,
    ) -> None:
        super().__init__(module, tokenizer, manifest, device)
        self.fused = fused

    def score(self, texts: list[str]) -> Scores:
        """The fused probabilities and every member's, on the same rows (the gate scores each)."""
        texts = list(texts)
        return self.fused.score(texts, super().predict_proba(texts))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.score(texts).probs

    def without_memory_of(self, queries: Collection[str]) -> "FusedModel":
        """This version with its memory's evidence of ``queries`` forgotten, for scoring rows whose
        labels came from those very clicks (``trainer.gate.unleaked``); this model is unchanged."""
        forgetful = self.fused.without_memory_of(queries)
        return FusedModel(self.module, self.tokenizer, self.manifest, self.device, forgetful)

    def member_predictors(self) -> dict[str, Predictor]:
        """Each member as a predictor of its own, by its name in the fusion: what the gate scores
        member by member (``trainer.gate.FusedPredictor``). The encoder member shares this model's
        merged module, so it costs no memory."""
        names = self.fused.names
        return {
            names[ADAPTER]: LoadedModel(
                self.module, self.tokenizer, self.manifest, self.device, self.batch_size
            ),
            names[LEXICAL]: self.fused.lexical,
            names[MEMORY]: self.fused.memory,
        }


# ---------------------------------------------------------------------------------------- loading
def load_members(
    adapter_dir: Path, manifest: dict[str, Any], adapter_files: tuple[str, ...]
) -> FusedMembers | None:
    """The fused members of the artifact at ``adapter_dir``, or ``None`` for a plain version.

    ``manifest``: the artifact's, whose ``labels`` and adapter files (``adapter_files``) the caller
    has already checked. Raises :class:`CorruptAdapterError` (files missing or unreadable) or
    :class:`InvalidAdapterError` (malformed section, untrusted types, members that disagree).
    """
    if SECTION not in manifest:
        return None
    labels = list(manifest.get("labels") or [])
    section = manifest[SECTION]
    names = _read_section(section, labels, {ADAPTER: adapter_files, **MEMBER_FILES})
    needed = [FUSION_FILE, *(name for files in MEMBER_FILES.values() for name in files)]
    missing = [name for name in needed if not (adapter_dir / name).is_file()]
    if missing:
        raise CorruptAdapterError(f"fused member files missing: {missing}")
    try:
        fusion = Fusion.load(adapter_dir)
    except ModelError as exc:
        raise InvalidAdapterError(f"{FUSION_FILE}: {exc}") from exc
    try:
        lexical = LexicalModel.load(adapter_dir)
        memory = BehaviourMemory.load(adapter_dir)
    except UntrustedMemberError as exc:
        raise InvalidAdapterError(str(exc)) from exc
    except CorruptMemberError as exc:
        raise CorruptAdapterError(str(exc)) from exc
    _check_parts(section, fusion, lexical, memory)
    try:  # parameters of the wrong shape for the members only show when applied: probe once
        fused = FusedMembers(fusion, lexical, memory, names)
        fused.score(["probe"], np.full((1, len(labels)), 1.0 / len(labels)))
    except (ValueError, IndexError) as exc:
        raise InvalidAdapterError(f"{FUSION_FILE} does not fit its members: {exc}") from exc
    return fused


def _read_section(section: Any, labels: list[str], files: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """The section's member names by kind; refuses a section this code did not write."""
    members = section.get("members") if isinstance(section, dict) else None
    if not isinstance(members, dict):
        raise InvalidAdapterError(f"manifest '{SECTION}' section lists no members")
    names: dict[str, str] = {}
    for name, entry in members.items():
        kind = str(entry.get("kind")) if isinstance(entry, dict) else ""
        if kind not in files or kind in names or entry.get("files") != list(files[kind]):
            raise InvalidAdapterError(f"fused member {name!r}: {str(entry)[:120]}")
        names[kind] = str(name)
    if sorted(names) != sorted(KINDS):
        raise InvalidAdapterError(f"fused members of kinds {sorted(names)}, need {sorted(KINDS)}")
    if section.get("labels") != labels or section.get("file") != FUSION_FILE:
        raise InvalidAdapterError(
            f"manifest '{SECTION}' section: label order or file differs from the adapter's"
        )
    return names


def _check_parts(
    section: dict[str, Any], fusion: Fusion, lexical: LexicalModel, memory: BehaviourMemory
) -> None:
    """Refuse members that disagree with the manifest section or with each other."""
    labels, members = section["labels"], section["members"]
    theirs = {FUSION_FILE: fusion.labels, LEXICAL: lexical.labels, MEMORY: memory.labels}
    problems = [
        f"{what} labels differ from the adapter's" for what, got in theirs.items() if list(got) != labels
    ]
    if sorted(fusion.members) != sorted(members):
        problems.append(f"{FUSION_FILE} fuses {sorted(fusion.members)}, the manifest lists {sorted(members)}")
    memory_name = next(n for n, e in members.items() if e["kind"] == MEMORY)
    if fusion.memory_member != memory_name:
        problems.append(f"{FUSION_FILE} treats {fusion.memory_member!r} as the memory, not {memory_name!r}")
    if fusion.method != section.get("method") or not _same(fusion.temperature, section.get("temperature")):
        problems.append(f"{FUSION_FILE} method/temperature differ from the manifest's")
    if problems:
        raise InvalidAdapterError("; ".join(problems))


def _same(a: float, b: Any) -> bool:
    return isinstance(b, int | float) and math.isclose(a, float(b), rel_tol=1e-12)
