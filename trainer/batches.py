"""Training examples as tensors: tokenised once, padded per batch, weighted; the loss on them.

Built for a small CPU: the texts are tokenised once up front (:class:`Encoded`) and each batch is
padded only to its own longest query. Each example's loss is weighted by its label's confidence and
the inverse square root of its class's frequency, against its hard label or, for soft labels, its
target distribution.
"""

import math
from collections import Counter
from typing import Any

import torch

from trainer.classifier import IntentClassifier, autocast
from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError
from trainer.inputs import InputFormat, tokenize

_EVAL_BATCH = 128


class Encoded:
    """Pre-tokenised examples; ``collate`` pads one batch of indices to its longest row."""

    def __init__(
        self,
        examples: list[Example],
        tokenizer: Any,
        label_ids: dict[str, int],
        input_format: InputFormat,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        enc = tokenize(tokenizer, [e.text for e in examples], input_format, batch=False)
        self.ids = [torch.tensor(row, dtype=torch.long) for row in enc["input_ids"]]
        self.labels = torch.tensor([label_ids[e.label] for e in examples], dtype=torch.long)
        self.weights = sample_weights if sample_weights is not None else torch.ones(len(examples))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.targets: torch.Tensor | None = None  # (N, K) soft targets; None: the hard labels

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        width = max(len(self.ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(self.ids[i])
            input_ids[row, :n] = self.ids[i]
            mask[row, :n] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": self.labels[idx],
            "weights": self.weights[idx],
            **({"targets": self.targets[idx]} if self.targets is not None else {}),
        }


def sample_weights(train: list[Example], label_ids: dict[str, int]) -> torch.Tensor:
    """confidence x inverse-sqrt class frequency, scaled to mean 1 over the training set."""
    counts = Counter(e.label for e in train)
    w = torch.tensor([max(e.weight, 0.0) / math.sqrt(counts[e.label]) for e in train], dtype=torch.float32)
    mean = float(w.mean())
    if mean <= 0:
        raise NotEnoughDataError("every training example has weight 0: nothing to learn from")
    return w / mean


def soft_targets(examples: list[Example], label_ids: dict[str, int]) -> torch.Tensor | None:
    """(N, K) target distributions when any example carries one (soft labels), else ``None``.

    An example's distribution is restricted to the trained labels and renormalised (a label too rare
    to be trained has no head row to put mass on); examples without one get their one-hot label.
    """
    if not any(e.target for e in examples):
        return None
    out = torch.zeros((len(examples), len(label_ids)), dtype=torch.float32)
    for row, e in enumerate(examples):
        kept = {label_ids[k]: p for k, p in (e.target or ()) if k in label_ids and p > 0}
        total = sum(kept.values())
        if total <= 0:
            out[row, label_ids[e.label]] = 1.0
            continue
        for col, p in kept.items():
            out[row, col] = p / total
    return out


def weighted_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Per-example weighted cross-entropy against the hard label or, with soft targets, against the
    target distribution (``-sum_k t_k log q_k``: the same as the hard loss for a one-hot target)."""
    weights = batch["weights"].to(device)
    if "targets" in batch:
        per_example = -(batch["targets"].to(device) * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
    else:
        per_example = torch.nn.functional.cross_entropy(
            logits.float(), batch["labels"].to(device), reduction="none"
        )
    return (per_example * weights).mean()


@torch.inference_mode()
def predict(model: IntentClassifier, data: Encoded, device: torch.device) -> list[int]:
    model.eval()
    preds: list[int] = []
    with autocast(device):
        for start in range(0, len(data), _EVAL_BATCH):
            batch = data.collate(list(range(start, min(start + _EVAL_BATCH, len(data)))))
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            preds.extend(logits.argmax(-1).tolist())
    return preds
