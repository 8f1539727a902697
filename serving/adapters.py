"""Many adapter versions on one base encoder: the worker's base, refusals, prediction.

An inference worker loads its base encoder once (:class:`SharedBase`) and puts every version it
serves on it (the champion, the previous one kept warm for rollback, a canary, one per market)
through the trainer's one loader, :func:`trainer.artifact.load_version`: each version is a copy of
the base sharing its tensors but for the adapter's merged targets, so serving is as fast as a
merged model and an extra version costs only its targeted weights and its head. A fused version
(:mod:`trainer.fused_artifact`) is served the same way: its lexical member, memory and fusion run
after the one encoder forward pass of the batch, on the same texts, in the same call.

What is serving's own: a version that fails any check (the artifact's hashes in
``store.artifacts``, then the loader's manifest, file and tensor checks, then a warm-up here whose
outputs must be finite probabilities) is refused as an :class:`AdapterRefusedError` of the kind the
host counts and reports, before anything is flipped, so the old version keeps serving. Queries are
templated, tokenised and pooled as each adapter's manifest records (``trainer.inputs``), never as
this worker's settings say: one worker serves adapters trained with different formats side by side.
"""

import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from serving.exceptions import AdapterRefusedError, RefusalKind
from store.dimensions import CATEGORY
from trainer.artifact import load_version
from trainer.classifier import FrozenBase, IntentClassifier, head_probabilities, pooled_encodings
from trainer.exceptions import CorruptAdapterError, IncompatibleAdapterError, ModelError
from trainer.fused_artifact import FusedMembers, Scores
from trainer.inputs import InputFormat
from trainer.onnx_graph import (
    GRAPH,
    GRAPH_INT8,
    INT8_LOAD_TOLERANCE,
    SECTION,
    GraphOptions,
    OnnxGraph,
    check_graph,
    graph_probabilities,
    widths_of,
)

log = logging.getLogger(__name__)

WARMUP = ["warm up query", "a second, longer warm up query for the tokenizer"]
# A loaded fp32 graph must answer the probe queries within this of PyTorch: the export held it to
# 1e-3 on the CPU; a CUDA provider's kernels may differ more, a graph of another version by far more.
FP32_LOAD_TOLERANCE = 1e-2
BackendName = Literal["torch", "onnx"]


@dataclass(frozen=True)
class Backend:
    """What runs a worker's versions: PyTorch eager, or the version's ONNX graph (int8 when asked
    for and published, else fp32) in ONNX Runtime with ``graphs``' threads and device."""

    kind: BackendName = "torch"
    int8: bool = False
    graphs: GraphOptions = field(default_factory=GraphOptions)


@dataclass(frozen=True, eq=False)
class Adapter:
    """One loaded version: immutable once built, so a batch holding it can never see it change."""

    version: str
    labels: tuple[str, ...]
    max_length: int
    module: IntentClassifier
    manifest: dict[str, Any] = field(repr=False)
    fused: FusedMembers | None = field(default=None, repr=False)  # None: a plain version
    graph: OnnxGraph | None = field(default=None, repr=False)  # None: PyTorch answers
    backend: str = "torch"  # what answers: torch, onnx-fp32 or onnx-int8

    @property
    def input_format(self) -> InputFormat:
        """Template, pooling and token budget the adapter was trained with (its manifest's)."""
        return self.module.input_format

    @property
    def dimensions(self) -> dict[str, tuple[str, ...]]:
        """Every label dimension the version answers, with its labels (the category's first)."""
        return {CATEGORY: self.labels, **{d: tuple(lab) for d, lab in self.module.head_labels.items()}}


def _refusal_kind(exc: ModelError) -> RefusalKind:
    """How the host counts a loader error: files, base or content (anything else is invalid)."""
    if isinstance(exc, CorruptAdapterError):
        return RefusalKind.INTEGRITY
    if isinstance(exc, IncompatibleAdapterError):
        return RefusalKind.INCOMPATIBLE
    return RefusalKind.INVALID


class SharedBase(FrozenBase):
    """The base encoder and tokenizer of a worker, loaded once; builds and runs adapters on top.

    With the ONNX backend each version also gets its graph, checked against its own PyTorch module
    on probe queries before it may serve (the module stays: it is the reference, and ``embed``'s).
    """

    def __init__(
        self, base_dir: Path | None, device: str | torch.device | None = None, backend: Backend | None = None
    ) -> None:
        super().__init__(base_dir, device)
        self.backend = backend or Backend()

    def build(self, version: str, path: Path, manifest: dict[str, Any]) -> Adapter:
        """Verify ``manifest`` and the tensors in ``path`` against this base and load them, or refuse."""
        try:
            module, fused = load_version(self, path, manifest)
            graph, backend = self._graph(version, path, manifest, module)
        except ModelError as exc:
            raise AdapterRefusedError(version, _refusal_kind(exc), str(exc)) from exc
        adapter = Adapter(
            version, tuple(module.labels), module.max_length, module, manifest, fused, graph, backend
        )
        scores = self.score(adapter, WARMUP)
        for dimension, labels in adapter.dimensions.items():
            probs = scores.probs if dimension == CATEGORY else scores.heads.get(dimension)
            if probs is None or probs.shape != (len(WARMUP), len(labels)) or not np.isfinite(probs).all():
                raise AdapterRefusedError(
                    version, RefusalKind.INVALID, f"warm-up gave non-finite {dimension} probabilities"
                )
        return adapter

    def _graph(
        self, version: str, path: Path, manifest: dict[str, Any], module: IntentClassifier
    ) -> tuple[OnnxGraph | None, str]:
        """The version's checked graph under the ONNX backend (int8 first when asked for), and
        what answers; ``(None, "torch")`` for the torch backend or a version published without one."""
        if self.backend.kind != "onnx":
            return None, "torch"
        published = manifest.get("files") or {}
        names = [GRAPH_INT8, GRAPH] if self.backend.int8 else [GRAPH]
        present = [n for n in names if n in published and (path / n).is_file()]
        record = manifest.get(SECTION) or {}
        if self.backend.int8 and GRAPH_INT8 not in present and GRAPH in present:
            why = (record.get("int8") or {}).get("reason", "the export did not write one")
            log.warning("version %s has no int8 graph (%s): served by its fp32 graph", version, why)
        if not present:
            why = (record.get("fp32") or {}).get("reason", "published without ONNX export")
            log.warning("version %s has no ONNX graph (%s): served by PyTorch", version, why)
            return None, "torch"
        if present[0] == GRAPH_INT8:
            try:
                return self._int8(path, module, record), "onnx-int8"
            except IncompatibleAdapterError as exc:
                if GRAPH not in present:
                    raise
                # Not this version's int8 graph, or another CPU's int8 kernels answer it otherwise
                # than the exporter's did: its fp32 graph, checked against PyTorch, serves instead.
                log.warning("version %s: %s; served by its fp32 graph", version, exc)
        graph = OnnxGraph(path / GRAPH, widths_of(module), self.backend.graphs)
        check_graph(graph, module, self.tokenizer, self.tokenizer_lock, FP32_LOAD_TOLERANCE)
        self._log_provider(version, graph)
        return graph, "onnx-fp32"

    def _int8(self, path: Path, module: IntentClassifier, record: dict[str, Any]) -> OnnxGraph:
        """The version's int8 graph, held to PyTorch loosely and to its export's probe answers;
        an unreadable file is a :class:`CorruptAdapterError` (the artifact is damaged: refused)."""
        graph = OnnxGraph(path / GRAPH_INT8, widths_of(module), self.backend.graphs)
        probe = (record.get("int8") or {}).get("probe")
        if probe is None:
            raise IncompatibleAdapterError(f"{GRAPH_INT8} has no recorded probe answers to check it by")
        check_graph(graph, module, self.tokenizer, self.tokenizer_lock, INT8_LOAD_TOLERANCE, probe)
        return graph

    def _log_provider(self, version: str, graph: OnnxGraph) -> None:
        """Say when the graph runs elsewhere than asked (CUDA requested, the CPU provider taken)."""
        if self.backend.graphs.device.startswith("cuda") and graph.provider != "CUDAExecutionProvider":
            log.warning("version %s: its graph runs on %s, not CUDA", version, graph.provider)

    def score(self, adapter: Adapter, texts: list[str]) -> Scores:
        """The version's probabilities, one row per text (one tokenizer call, one forward pass), for
        a fused version every member's on the same rows, and every extra head's (same pass): from
        its graph under the ONNX backend, from PyTorch otherwise."""
        if adapter.graph is not None:
            heads = graph_probabilities(
                adapter.graph, self.tokenizer, texts, adapter.input_format, lock=self.tokenizer_lock
            )
        else:
            heads = head_probabilities(
                adapter.module, self.tokenizer, texts, device=self.device, lock=self.tokenizer_lock
            )
        probs = heads.pop(CATEGORY)
        scores = Scores(probs) if adapter.fused is None else adapter.fused.score(texts, probs)
        return replace(scores, heads=heads) if heads else scores

    def predict_proba(self, adapter: Adapter, texts: list[str]) -> np.ndarray:
        """The version's class probabilities, one row per text (a fused version's are the fusion's)."""
        return self.score(adapter, texts).probs

    def embed(self, adapter: Adapter, texts: list[str], *, batch_size: int = 256) -> np.ndarray:
        """The version's pooled encodings of ``texts``, L2-normalised (one row each, ``batch_size``
        texts per forward pass): cosine similarity as the version sees it, for spreading a review
        batch over different questions. Templated and pooled as the adapter's manifest records."""
        return pooled_encodings(
            adapter.module,
            self.tokenizer,
            texts,
            device=self.device,
            lock=self.tokenizer_lock,
            batch_size=batch_size,
        )

    def shares_base(self, adapter: Adapter) -> bool:
        """Whether the adapter's encoder reuses this base's embedding tensor (not a copy of it)."""
        mine = self.encoder.get_input_embeddings().weight
        theirs: Any = adapter.module.encoder
        return bool(theirs.get_input_embeddings().weight is mine)


def bucket(key: str) -> float:
    """A stable number in [0, 1) for a session key: the same session always lands on the same side."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / math.ldexp(1.0, 64)
