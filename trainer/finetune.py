"""Adapter fine-tuning: confidence- and class-weighted cross-entropy, AdamW, warm-up, early stopping.

Built for a small CPU: the texts are tokenised once up front and each batch is padded only to its
own longest query. Seeded and deterministic on CPU (two runs with one seed give the same weights,
``weights_sha256`` in the metrics). Early stopping selects the epoch on the validation rows with a
gold label when there are enough of them (weak labels can be systematically wrong, and selecting on
them rewards learning their mistakes), else on all validation rows; ``early_stopping_on`` says which.
With a ``checkpoint_dir`` every epoch is checkpointed (:mod:`trainer.checkpoint`) and ``resume``
continues from the last one.
"""

import hashlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trainer import checkpoint
from trainer.checkpoint import Progress
from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError, TrainerError
from trainer.inputs import InputFormat, default_input_format, tokenize, with_max_length
from trainer.metrics import accuracy, macro_f1
from trainer.model import (
    MANIFEST,
    IntentClassifier,
    autocast,
    build_classifier,
    build_full_classifier,
    load_trainable_state,
    peft_summary,
    same_adapter_shape,
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


def _loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
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


EpochCallback = Callable[[int, dict[str, Any]], None]


def weights_sha256(model: torch.nn.Module) -> str:
    """Content hash of the trainable weights (adapter + head): equal hashes, equal models."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        if p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _adalora(model: IntentClassifier) -> Any | None:
    """The AdaLoRA tuner when the encoder carries one (it needs a per-step budget update)."""
    tuner = getattr(model.encoder, "base_model", None)
    return tuner if hasattr(tuner, "update_and_allocate") else None


def _orth_penalty(tuner: Any) -> torch.Tensor | None:
    """AdaLoRA's orthogonality regulariser on P and Q (PEFT adds it only for models that return a
    loss; our encoder returns hidden states, so it is added here)."""
    weight = float(tuner.peft_config[tuner.trainable_adapter_name].orth_reg_weight)
    terms = []
    for name, p in tuner.model.named_parameters():
        if p.requires_grad and ("lora_A" in name or "lora_B" in name):
            cov = p @ p.T if "lora_A" in name else p.T @ p
            eye = torch.eye(*cov.size(), out=torch.empty_like(cov))
            terms.append(torch.norm(cov - eye, p="fro"))
    if not terms or weight <= 0:
        return None
    return weight * torch.stack(terms).mean()


def _warm_start(model: IntentClassifier, adapter_dir: Path | None, full_finetune: bool) -> dict[str, Any]:
    """Load the adapter at ``adapter_dir`` into ``model`` when its shape fits; say what happened.

    The caller has checked labels and base; the adapter's shape (method, rank, targets, blocks) is
    compared here, where the model being trained exists. A mismatch falls back to the base (the
    settings changed since the champion was trained), logged and recorded, never an error.
    """
    if adapter_dir is None:
        return {"from": "base"}
    if full_finetune:
        return {"from": "base", "fallback": "full fine-tuning has no adapter to warm-start"}
    manifest = json.loads((adapter_dir / MANIFEST).read_text())
    peft_encoder: Any = model.encoder
    mine = peft_summary(peft_encoder.peft_config["default"])
    theirs = dict(manifest.get("peft") or {})
    if not same_adapter_shape(mine, theirs):
        why = f"the champion's adapter ({theirs}) differs from the configured one ({mine})"
        log.warning("warm start skipped, training from the base model: %s", why)
        return {"from": "base", "fallback": why}
    load_trainable_state(model, adapter_dir)
    log.info("warm start from the adapter at %s", adapter_dir)
    return {"from": "adapter", "adapter_dir": str(adapter_dir)}


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
    init_from: Path | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    fingerprint: dict[str, Any] | None = None,
    on_epoch_end: EpochCallback | None = None,
    input_format: InputFormat | None = None,
) -> FitResult:
    """Fine-tune the adapter + head on ``train``; keep the epoch with the best validation macro-F1.

    ``full_finetune`` trains every encoder weight instead (the baseline the adapter is measured
    against; pass a learning rate suited to it in ``settings``). Without ``val`` the last epoch is
    kept. ``init_from``: an adapter directory to warm-start from (same labels and adapter shape; the
    caller checks). ``checkpoint_dir``: where each epoch's checkpoint goes; with ``resume`` the run
    continues from the latest one there, which must carry the same ``fingerprint`` (data and
    hyper-parameters). ``on_epoch_end(epoch, scores)`` runs after each epoch's checkpoint.
    ``input_format``: the template and pooling (:func:`trainer.inputs.resolve_input_format`; by
    default the encoder's own pooling, no template) at ``max_length`` tokens; the returned model
    carries it, so evaluation and the saved manifest use exactly what training used.
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
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    model, tokenizer = (
        build_full_classifier(base_dir, labels)
        if full_finetune
        else build_classifier(base_dir, labels, settings, total_steps=total_steps)
    )
    init = _warm_start(model, init_from, full_finetune)
    fmt = (
        with_max_length(input_format, max_length)
        if input_format is not None
        else default_input_format(base_dir, max_length)
    )
    model.input_format = fmt  # the model carries it into evaluation and save_adapter's manifest
    model.to(device)
    train_data = _Encoded(train, tokenizer, label_ids, fmt, _sample_weights(train, label_ids))
    train_data.targets = soft_targets(train, label_ids)
    val_data = _Encoded(val, tokenizer, label_ids, fmt) if val else None
    val_true = [e.label for e in val]
    gold_idx = [i for i, e in enumerate(val) if e.gold]
    on_gold = len(gold_idx) >= settings.early_stop_min_gold

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
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(int(settings.warmup_ratio * total_steps), total_steps)
    )
    adalora = None if full_finetune else _adalora(model)
    allocator = (adalora, adalora.rankallocator) if adalora is not None else None
    ckpt: dict[str, Any] = {"fingerprint": fingerprint or {}, "allocator": allocator}
    state = Progress()
    if resume:
        if not checkpoint.exists(checkpoint_dir):
            raise TrainerError(f"no checkpoint to resume from in {checkpoint_dir}")
        assert checkpoint_dir is not None
        state = checkpoint.load(
            checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler, generator=generator, **ckpt
        )
        log.info(
            "resumed from the checkpoint of epoch %d (step %d) in %s", state.epoch, state.step, checkpoint_dir
        )
    log.info(
        "fine-tuning %d/%d params (%.2f%%, %s) on %d examples, %d labels; epochs selected on %s",
        n_trainable,
        n_total,
        100 * n_trainable / n_total,
        "full" if full_finetune else settings.peft_method,
        len(train),
        len(labels),
        f"{len(gold_idx)} gold validation rows"
        if on_gold
        else ("weak validation labels" if val else "nothing (no validation rows: every epoch runs)"),
    )

    finished = state.stopped_early or state.epoch >= settings.epochs
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        if finished:
            break
        model.train()
        epoch_start = time.monotonic()
        bar = tqdm(loader, desc=f"epoch {epoch}/{settings.epochs}", disable=not progress, leave=False)
        for batch in bar:
            with autocast(device):
                logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            loss = _loss(logits, batch, device)
            penalty = _orth_penalty(adalora) if adalora is not None else None
            if penalty is not None:
                loss = loss + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            state.step += 1
            if adalora is not None:  # after the step, before the next zero_grad (needs the gradients)
                adalora.update_and_allocate(state.step)
            state.seen += len(batch["labels"])
            bar.set_postfix(loss=f"{loss.item():.4f}")
        state.train_s += time.monotonic() - epoch_start
        state.epoch = epoch
        scores: dict[str, Any] = {}
        if val_data is None:  # nothing to select on: keep the last epoch
            state.best = (float("nan"), float("nan"), epoch)
        else:
            pred = [labels[i] for i in _predict(model, val_data, device)]
            f1, acc = macro_f1(val_true, pred), accuracy(val_true, pred)
            scores = {"val_macro_f1": f1, "val_accuracy": acc}
            if on_gold:
                g_true, g_pred = [val_true[i] for i in gold_idx], [pred[i] for i in gold_idx]
                sel_f1, sel_acc = macro_f1(g_true, g_pred), accuracy(g_true, g_pred)
                scores.update(gold_macro_f1=sel_f1, gold_accuracy=sel_acc)
            else:
                sel_f1, sel_acc = f1, acc
            log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            if state.best is None or sel_f1 > state.best[0] + 1e-9:
                state.best, state.since_best = (sel_f1, sel_acc, epoch), 0
                state.best_state = {
                    n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
                }
            else:
                state.since_best += 1
                if state.since_best >= settings.patience:
                    log.info("early stop after epoch %d (best epoch %d)", epoch, state.best[2])
                    state.stopped_early = True
        if checkpoint_dir is not None and settings.checkpoint:
            checkpoint.save(
                checkpoint_dir,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                generator=generator,
                progress=state,
                **ckpt,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, scores)
        finished = state.stopped_early
    if state.best_state:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in state.best_state.items():
                params[name].copy_(value)
    model.eval()
    best = state.best
    assert best is not None
    # The chosen epoch's scores on every validation row (and on gold, when selected on gold).
    final: dict[str, Any] = {}
    if val_data is not None:
        pred = [labels[i] for i in _predict(model, val_data, device)]
        final = {
            "val_macro_f1": round(macro_f1(val_true, pred), 6),
            "val_accuracy": round(accuracy(val_true, pred), 6),
        }
        if on_gold:
            final["gold_val_macro_f1"] = round(best[0], 6)
            final["gold_val_accuracy"] = round(best[1], 6)
    wall = time.monotonic() - started
    metrics = {
        "val_macro_f1": final.get("val_macro_f1"),
        "val_accuracy": final.get("val_accuracy"),
        **{k: v for k, v in final.items() if k.startswith("gold_")},
        "early_stopping_on": None if val_data is None else ("gold" if on_gold else "weak"),
        "val_gold_examples": len(gold_idx),
        "best_epoch": best[2],
        "epochs_run": state.epoch,
        "steps": state.step,
        "train_examples": len(train),
        "val_examples": len(val),
        "trainable_params": n_trainable,
        "total_params": n_total,
        "trainable_params_pct": round(100 * n_trainable / n_total, 4),
        "peft_method": "full" if full_finetune else settings.peft_method,
        "init": init,
        "device": str(device),
        "dtype": "bf16" if device.type == "cuda" else "fp32",
        "weights_sha256": weights_sha256(model),
        "wall_s": round(wall, 3),
        "samples_per_s": round(state.seen / state.train_s, 2) if state.train_s > 0 else None,
    }
    if resume:
        metrics["resumed"] = True
    return FitResult(model=model, tokenizer=tokenizer, metrics=metrics)
