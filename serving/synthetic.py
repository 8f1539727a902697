"""Adapters with random (non-zero) LoRA and head weights: real artifacts without a training run.

Benchmarks and tests need several distinct, valid versions in seconds; serving cost does not
depend on what the weights learned. Written by the trainer's own ``save_adapter``, so they are
exactly what training publishes.
"""

import tempfile
from pathlib import Path

import torch

from store.artifacts import ArtifactStore
from trainer.artifact import save_adapter
from trainer.classifier import build_classifier, resolve_base_dir
from trainer.settings import TrainSettings

DEFAULT_LABELS = ["electronics", "fashion", "grocery", "home", "sports", "toys"]


def synthetic_adapter(
    artifacts: ArtifactStore,
    base_dir: Path | None,
    *,
    seed: int,
    labels: list[str] | None = None,
    max_length: int = 32,
) -> str:
    """Publish an adapter with seeded random LoRA weights on ``base_dir``; returns its version."""
    base = resolve_base_dir(base_dir)
    torch.manual_seed(seed)
    labels = list(labels or DEFAULT_LABELS)
    model, _ = build_classifier(base, labels, TrainSettings(seed=seed))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # PEFT initialises B to zero: the adapter would equal the base
                p.normal_(0.0, 0.05)
    with tempfile.TemporaryDirectory(prefix="intentloop-synthetic-") as tmp:
        save_adapter(
            model,
            Path(tmp),
            base_dir=base,
            labels=labels,
            metrics={"synthetic": True},
            extra={"synthetic_seed": seed},
            max_length=max_length,
        )
        return artifacts.publish(Path(tmp))
