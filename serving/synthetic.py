"""Adapters with random (non-zero) LoRA and head weights: real artifacts without a training run.

Benchmarks and tests need several distinct, valid versions in seconds; serving cost does not
depend on what the weights learned. Written by the trainer's own ``save_adapter``, so they are
exactly what training publishes. :func:`synthetic_fused_adapter` adds real (tiny) fused members:
a lexical model and a behaviour memory of generated queries, and a fusion fitted on held-out ones.
"""

import random
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from store.artifacts import ArtifactStore
from trainer.artifact import save_adapter
from trainer.classifier import (
    FrozenBase,
    IntentClassifier,
    build_classifier,
    class_probabilities,
    resolve_base_dir,
)
from trainer.dataset import Example
from trainer.fused_artifact import ADAPTER, DEFAULT_NAMES, LEXICAL, MEMORY, FusedParts
from trainer.fusion import RowFeatures, fit_fusion
from trainer.inputs import tokenize
from trainer.members.lexical import train_lexical
from trainer.members.memory import build_memory
from trainer.onnx_graph import export_version
from trainer.settings import ExportSettings, TrainSettings

DEFAULT_LABELS = ["electronics", "fashion", "grocery", "home", "sports", "toys"]
_WORDS = ("best", "cheap", "new", "gift", "sale", "set", "pro", "mini", "kit", "blue", "red", "large")


def synthetic_adapter(
    artifacts: ArtifactStore,
    base_dir: Path | None,
    *,
    seed: int,
    labels: list[str] | None = None,
    max_length: int = 32,
    heads: dict[str, list[str]] | None = None,
    export: ExportSettings | None = None,
    fit: Sequence[tuple[str, str]] = (),
    held_out: Sequence[tuple[str, str]] = (),
) -> str:
    """Publish an adapter with seeded random LoRA weights on ``base_dir``; returns its version.
    ``heads``: extra label dimensions (dimension -> labels), each a random head on the same adapter.
    ``export``: also export its ONNX graphs (checked on ``held_out`` (text, label) rows, else on
    generated queries against the fp32 graph's answers). ``fit``: (text, label) rows the category
    head is fitted to (on the random encoder's encodings): a version whose answers mean something,
    for measuring what int8 costs in accuracy (a random head's near-uniform answers flip easily)."""
    labels = list(labels or DEFAULT_LABELS)
    model, tokenizer, base = _random_classifier(base_dir, labels, seed)
    for dimension, head_labels in (heads or {}).items():
        model.add_head(dimension, head_labels)  # seeded: _random_classifier seeded torch
    if fit:
        _fit_head(model, tokenizer, fit, labels)
    return _publish(artifacts, model, base, labels, seed, max_length, None, export, held_out)


def _fit_head(
    model: IntentClassifier, tokenizer: Any, rows: Sequence[tuple[str, str]], labels: list[str]
) -> None:
    """Fit the category head to ``rows`` by L-BFGS on the frozen encodings (seconds, deterministic)."""
    model.eval()
    with torch.no_grad():
        x = torch.cat(
            [
                model.encode(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
                for enc in (
                    tokenize(tokenizer, [t for t, _ in rows[i : i + 256]], model.input_format, batch=True)
                    for i in range(0, len(rows), 256)
                )
            ]
        )
    y = torch.tensor([labels.index(label) for _, label in rows])
    head = model.head
    optimiser = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)


def synthetic_fused_adapter(
    artifacts: ArtifactStore,
    base_dir: Path | None,
    *,
    seed: int,
    labels: list[str] | None = None,
    max_length: int = 32,
    export: ExportSettings | None = None,
) -> str:
    """Publish a fused version: a random adapter as :func:`synthetic_adapter`'s, a lexical member and
    a memory of generated queries, and a log-linear fusion fitted on held-out generated queries.

    Half the held-out rows are labelled with the random encoder's own answer, so each member is
    right on rows the others miss and the fusion gives every one of them a weight (a random encoder
    on true labels alone would get none, and a test could not see whether its rows line up)."""
    labels = list(labels or DEFAULT_LABELS)
    model, tokenizer, base = _random_classifier(base_dir, labels, seed)
    train, held = _queries(labels, seed, 8), _queries(labels, seed + 1, 4)
    lexical = train_lexical([Example(q, label) for q, label in train], labels, seed=seed)
    texts = [q for q, _ in held]
    model.eval()
    encoder = class_probabilities(model, tokenizer, texts, device=torch.device("cpu"), lock=threading.Lock())
    y = [labels[int(encoder[i].argmax())] if i % 2 else label for i, (_, label) in enumerate(held)]
    known = list(zip(texts, y, strict=True))[: len(texts) // 2]  # the memory knows half of them
    memory = build_memory({q: {label: 3.0} for q, label in known}, labels, searches={q: 5 for q, _ in known})
    probs = {
        DEFAULT_NAMES[ADAPTER]: encoder,
        DEFAULT_NAMES[LEXICAL]: lexical.predict_proba(texts),
        DEFAULT_NAMES[MEMORY]: memory.predict_proba(texts),
    }
    fusion = fit_fusion(probs, RowFeatures.of_queries(texts, memory), y, labels, "loglinear", seed=seed)
    parts = FusedParts(lexical, memory, fusion)
    return _publish(artifacts, model, base, labels, seed, max_length, parts, export)


def _random_classifier(
    base_dir: Path | None, labels: list[str], seed: int
) -> tuple[IntentClassifier, Any, Path]:
    """A classifier with seeded random LoRA weights, its tokenizer and the resolved base directory."""
    base = resolve_base_dir(base_dir)
    torch.manual_seed(seed)
    model, tokenizer = build_classifier(base, labels, TrainSettings(seed=seed))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # PEFT initialises B to zero: the adapter would equal the base
                p.normal_(0.0, 0.05)
    return model, tokenizer, base


def _queries(labels: list[str], seed: int, per_label: int) -> list[tuple[str, str]]:
    """``per_label`` generated queries per label (the label's name between two random words)."""
    rng = random.Random(seed)
    return [
        (f"{rng.choice(_WORDS)} {label} {rng.choice(_WORDS)}", label)
        for _ in range(per_label)
        for label in labels
    ]


def _publish(
    artifacts: ArtifactStore,
    model: IntentClassifier,
    base: Path,
    labels: list[str],
    seed: int,
    max_length: int,
    fused: FusedParts | None,
    export: ExportSettings | None = None,
    held_out: Sequence[tuple[str, str]] = (),
) -> str:
    with tempfile.TemporaryDirectory(prefix="intentloop-synthetic-") as tmp:
        save_adapter(
            model,
            Path(tmp),
            base_dir=base,
            labels=labels,
            metrics={"synthetic": True},
            extra={"synthetic_seed": seed},
            max_length=max_length,
            fused=fused,
        )
        if export is not None and export.onnx:
            rows = list(held_out) or [(q, "") for q, _ in _queries(labels, seed + 2, 20)]
            export_version(Path(tmp), FrozenBase(base, "cpu"), rows, export)
        return artifacts.publish(Path(tmp))
