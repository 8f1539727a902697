"""LoRA fine-tuning: confidence- and class-weighted cross-entropy, AdamW, warm-up, early stopping.

Built for a small CPU: the texts are tokenised once up front and each batch is padded only to its
own longest query. Seeded and deterministic on CPU.
"""

import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError, TrainerError
from trainer.metrics import accuracy, macro_f1
from trainer.model import (
    IntentClassifier,
    autocast,
    build_classifier,
    build_full_classifier,
    select_device,
)
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)

_EVAL_BATCH = 128


@dataclass
class FitResult:
    model: IntentClassifier  # the best epoch's weights, eval mode
    tokenizer: Any
    metrics: dict[str, Any]


class _Encoded:
    """Pre-tokenised examples; ``collate`` pads one batch of indices to its longest row."""

    def __init__(
        self,
        examples: list[Example],
        tokenizer: Any,
        label_ids: dict[str, int],
        max_length: int,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        enc = tokenizer([e.text for e in examples], truncation=True, max_length=max_length, padding=False)
        self.ids = [torch.tensor(row, dtype=torch.long) for row in enc["input_ids"]]
        self.labels = torch.tensor([label_ids[e.label] for e in examples], dtype=torch.long)
        self.weights = sample_weights if sample_weights is not None else torch.ones(len(examples))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

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
        }


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _sample_weights(train: list[Example], label_ids: dict[str, int]) -> torch.Tensor:
    """confidence x inverse-sqrt class frequency, scaled to mean 1 over the training set."""
    counts = Counter(e.label for e in train)
    w = torch.tensor([max(e.weight, 0.0) / math.sqrt(counts[e.label]) for e in train], dtype=torch.float32)
    mean = float(w.mean())
    if mean <= 0:
        raise NotEnoughDataError("every training example has weight 0: nothing to learn from")
    return w / mean


def _linear_schedule(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


@torch.inference_mode()
def _predict(model: IntentClassifier, data: _Encoded, device: torch.device) -> list[int]:
    model.eval()
    preds: list[int] = []
    with autocast(device):
        for start in range(0, len(data), _EVAL_BATCH):
            batch = data.collate(list(range(start, min(start + _EVAL_BATCH, len(data)))))
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            preds.extend(logits.argmax(-1).tolist())
    return preds


def fit(
    train: list[Example],
    val: list[Example],
    labels: list[str],
    base_dir: Path,
    settings: TrainSettings,
    max_length: int,
    progress: bool = True,
    *,
    full_finetune: bool = False,
) -> FitResult:
    """Fine-tune LoRA + head on ``train``; keep the epoch with the best validation macro-F1.

    ``full_finetune`` trains every encoder weight instead of LoRA (the baseline LoRA is measured
    against; pass a learning rate suited to it in ``settings``). Without ``val`` the last epoch is kept.
    """
    if len(labels) < 2 or not train:
        raise NotEnoughDataError(
            f"need at least 2 labels and one training example, got {len(labels)} labels and "
            f"{len(train)} examples (ingest more traffic or loosen the snapshot filters)"
        )
    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in [*train, *val]} - label_ids.keys())
    if unknown:
        raise TrainerError(f"examples carry labels missing from the label list: {unknown[:5]}")
    started = time.monotonic()
    _seed(settings.seed)
    device = select_device()
    model, tokenizer = (
        build_full_classifier(base_dir, labels)
        if full_finetune
        else build_classifier(base_dir, labels, settings)
    )
    model.max_length = max_length
    model.to(device)
    train_data = _Encoded(train, tokenizer, label_ids, max_length, _sample_weights(train, label_ids))
    val_data = _Encoded(val, tokenizer, label_ids, max_length) if val else None
    val_true = [e.label for e in val]

    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(settings.seed)
    indices: Any = list(range(len(train_data)))  # a list is a valid map-style dataset
    loader: DataLoader[int] = DataLoader(
        indices,
        batch_size=settings.batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=train_data.collate,
        num_workers=0,
    )
    total_steps = settings.epochs * len(loader)
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(int(settings.warmup_ratio * total_steps), total_steps)
    )
    log.info(
        "fine-tuning %d/%d params (%.2f%%) on %d examples, %d labels",
        n_trainable,
        n_total,
        100 * n_trainable / n_total,
        len(train),
        len(labels),
    )

    best: tuple[float, float, int] | None = None  # (macro-F1, accuracy, epoch)
    best_state: dict[str, torch.Tensor] = {}
    since_best, epochs_run, seen, train_s = 0, 0, 0, 0.0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        epoch_start = time.monotonic()
        bar = tqdm(loader, desc=f"epoch {epoch}/{settings.epochs}", disable=not progress, leave=False)
        for batch in bar:
            with autocast(device):
                logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            losses = torch.nn.functional.cross_entropy(
                logits.float(), batch["labels"].to(device), reduction="none"
            )
            loss = (losses * batch["weights"].to(device)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            seen += len(batch["labels"])
            bar.set_postfix(loss=f"{loss.item():.4f}")
        train_s += time.monotonic() - epoch_start
        epochs_run = epoch
        if val_data is None:  # nothing to select on: keep the last epoch
            best = (float("nan"), float("nan"), epoch)
            continue
        pred = [labels[i] for i in _predict(model, val_data, device)]
        f1, acc = macro_f1(val_true, pred), accuracy(val_true, pred)
        log.info("epoch %d: val macro-F1 %.4f, accuracy %.4f", epoch, f1, acc)
        if best is None or f1 > best[0] + 1e-9:
            best, since_best = (f1, acc, epoch), 0
            best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            since_best += 1
            if since_best >= settings.patience:
                log.info("early stop after epoch %d (best epoch %d)", epoch, best[2])
                break
    if best_state:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in best_state.items():
                params[name].copy_(value)
    model.eval()
    assert best is not None
    wall = time.monotonic() - started
    metrics = {
        "val_macro_f1": None if val_data is None else round(best[0], 6),
        "val_accuracy": None if val_data is None else round(best[1], 6),
        "best_epoch": best[2],
        "epochs_run": epochs_run,
        "train_examples": len(train),
        "val_examples": len(val),
        "trainable_params": n_trainable,
        "total_params": n_total,
        "trainable_params_pct": round(100 * n_trainable / n_total, 4),
        "device": str(device),
        "wall_s": round(wall, 3),
        "samples_per_s": round(seen / train_s, 2) if train_s > 0 else None,
    }
    return FitResult(model=model, tokenizer=tokenizer, metrics=metrics)
