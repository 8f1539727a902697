"""Extra heads: the other label dimensions, trained on the shared encoder beside the category.

Multi-task learning with task-sampled batches: each optimizer step takes the category batch and,
for every extra head, a batch of that dimension's own rows, and adds their weighted losses (the
rows differ: a help search that opened only a returns page has an intent type and no category).
One adapter serves every dimension from one encoder pass; ``bench train`` measures it against one
single-head model per dimension.

A head's batch at a step is a pure function of (seed, dimension, step): a seeded permutation per
pass over its rows. Nothing needs checkpointing for it, so a resumed run draws exactly the batches
the uninterrupted one would have.
"""

import zlib
from dataclasses import dataclass
from typing import Any

import torch

from trainer.batches import Encoded, sample_weights, soft_targets, weighted_loss
from trainer.classifier import IntentClassifier, autocast
from trainer.dataset import HeadRows
from trainer.inputs import InputFormat
from trainer.metrics import accuracy, macro_f1


@dataclass
class HeadTask:
    """One extra head's training rows, tokenised, and its share of each step's loss."""

    dimension: str
    labels: list[str]
    data: Encoded
    val: Encoded | None
    val_truth: list[str]
    weight: float
    batch_size: int
    seed: int

    @classmethod
    def of(
        cls,
        rows: HeadRows,
        tokenizer: Any,
        fmt: InputFormat,
        *,
        weight: float,
        batch_size: int,
        seed: int,
    ) -> "HeadTask":
        label_ids = {label: i for i, label in enumerate(rows.labels)}
        train = [e for e in rows.train if e.label in label_ids]
        data = Encoded(train, tokenizer, label_ids, fmt, sample_weights(train, label_ids))
        data.targets = soft_targets(train, label_ids)
        val = [e for e in rows.val if e.label in label_ids]
        val_data = Encoded(val, tokenizer, label_ids, fmt) if val else None
        # the dimension's own stream of batches, independent of the category's and of other heads
        own_seed = seed * 1_000_003 + zlib.crc32(rows.dimension.encode())
        return cls(
            rows.dimension,
            list(rows.labels),
            data,
            val_data,
            [e.label for e in val],
            weight,
            batch_size,
            own_seed,
        )

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The rows of optimizer step ``step``: consecutive slices of a seeded permutation per pass."""
        n = len(self.data)
        size = min(self.batch_size, n)
        per_pass = max(1, n // size)
        cycle, slot = divmod(step, per_pass)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + cycle)).tolist()
        return self.data.collate(order[slot * size : (slot + 1) * size])

    def loss(self, model: IntentClassifier, step: int, device: torch.device) -> torch.Tensor:
        """This head's weighted loss on its batch of ``step``."""
        batch = self.batch(step)
        with autocast(device):
            pooled = model.encode(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            logits = model.heads[self.dimension](pooled).float()
        return self.weight * weighted_loss(logits, batch, device)

    def scores(self, model: IntentClassifier, device: torch.device) -> dict[str, Any]:
        """Macro-F1 and accuracy of the head on its validation rows (``None`` without any)."""
        if self.val is None:
            return {
                "val_macro_f1": None,
                "val_accuracy": None,
                "val_examples": 0,
                "train_examples": len(self.data),
            }
        pred = [self.labels[i] for i in predict_head(model, self.dimension, self.val, device)]
        return {
            "val_macro_f1": round(macro_f1(self.val_truth, pred), 6),
            "val_accuracy": round(accuracy(self.val_truth, pred), 6),
            "val_examples": len(self.val_truth),
            "train_examples": len(self.data),
        }


@torch.inference_mode()
def predict_head(model: IntentClassifier, dimension: str, data: Encoded, device: torch.device) -> list[int]:
    """Argmax of one extra head over ``data`` (the category's is ``trainer.batches.predict``)."""
    model.eval()
    out: list[int] = []
    with autocast(device):
        for start in range(0, len(data), 128):
            batch = data.collate(list(range(start, min(start + 128, len(data)))))
            pooled = model.encode(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            out.extend(model.heads[dimension](pooled).argmax(-1).tolist())
    return out
