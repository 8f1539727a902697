"""Adapter fine-tuning: confidence- and class-weighted cross-entropy, AdamW, warm-up, early stopping.

:func:`fit` runs the steps in order: build the model (warm-started from an adapter when asked),
tokenise the rows once (:mod:`trainer.batches`), set up the optimisation (:mod:`trainer.optimisation`),
then train epoch by epoch, selecting the epoch to keep on the validation rows (:mod:`trainer.selection`).
Seeded and deterministic on CPU (two runs with one seed give the same weights, ``weights_sha256`` in
the metrics). With a ``checkpoint_dir`` every epoch is checkpointed (:mod:`trainer.checkpoint`) and
``resume`` continues from the last one.
"""

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from trainer import checkpoint
from trainer.artifact import MANIFEST, load_head_states, load_trainable_state
from trainer.augment import with_typos
from trainer.batches import Encoded, sample_weights, soft_targets
from trainer.checkpoint import Progress
from trainer.classifier import (
    IntentClassifier,
    build_classifier,
    build_full_classifier,
    select_device,
)
from trainer.dataset import Example, HeadRows
from trainer.exceptions import NotEnoughDataError, TrainerError
from trainer.heads import HeadTask
from trainer.inputs import InputFormat, default_input_format, with_max_length
from trainer.optimisation import Optimisation
from trainer.peft_methods import peft_summary, same_adapter_shape
from trainer.selection import Validation
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: IntentClassifier  # the best epoch's weights, eval mode
    tokenizer: Any
    metrics: dict[str, Any]


def at_least_min_steps(settings: TrainSettings, n_train: int) -> TrainSettings:
    """``settings`` with enough epochs for ``min_steps`` optimizer steps on ``n_train`` rows, and
    patience scaled by the same factor (so early stopping still waits for as much training).

    A fixed epoch count undertrains small snapshots: on 540 rows of real utterances (``bench text``,
    27 intents) three epochs (51 steps) left LoRA 1 point behind TF-IDF, while 250 steps put it 3
    points ahead. Large snapshots already take more steps than the floor and are unchanged.
    """
    per_epoch = math.ceil(n_train / settings.batch_size)
    if per_epoch == 0 or settings.epochs * per_epoch >= settings.min_steps:
        return settings
    epochs = math.ceil(settings.min_steps / per_epoch)
    patience = settings.patience * math.ceil(epochs / settings.epochs)
    return settings.model_copy(update={"epochs": epochs, "patience": patience})


def enough_for_heads(settings: TrainSettings, n_train: int, head_rows: list[int]) -> TrainSettings:
    """``settings`` with enough epochs (of the category's batches) for every extra head to pass
    over its own rows as many times as the category does, patience scaled alike.

    Each step trains every head on a batch of its own rows; a head with more rows than the category
    (intent types label help searches that have no category) would otherwise see only part of
    them: measured in ``bench train --dimensions``, an intent head trained in the category's steps
    alone scored far below an intent-only model trained on the same rows.
    """
    per_epoch = math.ceil(n_train / settings.batch_size)
    most = max((math.ceil(n / settings.batch_size) for n in head_rows), default=0)
    if per_epoch == 0 or most <= per_epoch:
        return settings
    epochs = math.ceil(settings.epochs * most / per_epoch)
    patience = settings.patience * math.ceil(epochs / settings.epochs)
    return settings.model_copy(update={"epochs": epochs, "patience": patience})


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


EpochCallback = Callable[[int, dict[str, Any]], None]


def weights_sha256(model: torch.nn.Module) -> str:
    """Content hash of the trainable weights (adapter + head): equal hashes, equal models."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        if p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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


def _label_ids(train: list[Example], val: list[Example], labels: list[str]) -> dict[str, int]:
    """Each label's head row; refuses a run with nothing to learn or with labels it cannot train."""
    if len(labels) < 2 or not train:
        raise NotEnoughDataError(
            f"need at least 2 labels and one training example, got {len(labels)} labels and "
            f"{len(train)} examples (ingest more traffic or loosen the snapshot filters)"
        )
    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in [*train, *val]} - label_ids.keys())
    if unknown:
        raise TrainerError(f"examples carry labels missing from the label list: {unknown[:5]}")
    return label_ids


def _build_model(
    base_dir: Path,
    labels: list[str],
    settings: TrainSettings,
    total_steps: int,
    full_finetune: bool,
    init_from: Path | None,
) -> tuple[IntentClassifier, Any, dict[str, Any]]:
    """The model to train (warm-started when asked), its tokenizer, and how it was initialised."""
    model, tokenizer = (
        build_full_classifier(base_dir, labels)
        if full_finetune
        else build_classifier(base_dir, labels, settings, total_steps=total_steps)
    )
    return model, tokenizer, _warm_start(model, init_from, full_finetune)


def _resume(opt: Optimisation, checkpoint_dir: Path | None) -> Progress:
    """The progress of the interrupted run, its state restored into ``opt``."""
    if checkpoint_dir is None or not checkpoint.exists(checkpoint_dir):
        raise TrainerError(f"no checkpoint to resume from in {checkpoint_dir}")
    state = checkpoint.load(checkpoint_dir, **opt.checkpointed())
    log.info(
        "resumed from the checkpoint of epoch %d (step %d) in %s", state.epoch, state.step, checkpoint_dir
    )
    return state


def _train_epoch(opt: Optimisation, state: Progress, device: torch.device, desc: str, progress: bool) -> None:
    opt.model.train()
    epoch_start = time.monotonic()
    bar = tqdm(opt.loader, desc=desc, disable=not progress, leave=False)
    for batch in bar:
        loss = opt.step(batch, device, state.step)
        state.step += 1
        if opt.adalora is not None:  # after the step, before the next zero_grad (needs the gradients)
            opt.adalora.update_and_allocate(state.step)
        state.seen += len(batch["labels"])
        bar.set_postfix(loss=f"{loss.item():.4f}")
    state.train_s += time.monotonic() - epoch_start


def _run_epochs(
    opt: Optimisation,
    validation: Validation,
    state: Progress,
    settings: TrainSettings,
    device: torch.device,
    progress: bool,
    checkpoint_dir: Path | None,
    on_epoch_end: EpochCallback | None,
) -> None:
    """Train the epochs ``state`` has not run yet, checkpointing each, until done or stopped early."""
    finished = state.stopped_early or state.epoch >= settings.epochs
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        if finished:
            break
        _train_epoch(opt, state, device, f"epoch {epoch}/{settings.epochs}", progress)
        state.epoch = epoch
        scores = validation.select(opt.model, device, state, settings.patience)
        if checkpoint_dir is not None and settings.checkpoint:
            checkpoint.save(checkpoint_dir, progress=state, **opt.checkpointed())
        if on_epoch_end is not None:
            on_epoch_end(epoch, scores)
        finished = state.stopped_early


def _restore_best(model: IntentClassifier, state: Progress) -> None:
    """Put the selected epoch's weights back (the last epoch's are in the model) and go to eval mode."""
    if state.best_state:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in state.best_state.items():
                params[name].copy_(value)
    model.eval()


def _run_metrics(
    opt: Optimisation,
    state: Progress,
    settings: TrainSettings,
    device: torch.device,
    examples: tuple[int, int],
    init: dict[str, Any],
    started: float,
    full_finetune: bool,
) -> dict[str, Any]:
    """What the run did and cost, beside its scores: sizes, parameters, device, weights hash, speed."""
    assert state.best is not None
    n_trainable = sum(p.numel() for p in opt.trainable)
    n_total = sum(p.numel() for p in opt.model.parameters())
    wall = time.monotonic() - started
    return {
        "best_epoch": state.best[2],
        "epochs_planned": settings.epochs,  # min_steps may raise the configured epochs
        "epochs_run": state.epoch,
        "steps": state.step,
        "train_examples": examples[0],
        "val_examples": examples[1],
        "trainable_params": n_trainable,
        "total_params": n_total,
        "trainable_params_pct": round(100 * n_trainable / n_total, 4),
        "peft_method": "full" if full_finetune else settings.peft_method,
        "init": init,
        "device": str(device),
        "dtype": "bf16" if device.type == "cuda" else "fp32",
        "weights_sha256": weights_sha256(opt.model),
        "wall_s": round(wall, 3),
        "samples_per_s": round(state.seen / state.train_s, 2) if state.train_s > 0 else None,
    }


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
    heads: list[HeadRows] | None = None,
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
    ``heads``: the rows of other label dimensions, each trained as a head on the shared encoder
    (:mod:`trainer.heads`); their validation scores are in ``metrics["heads"]``. Epochs are
    selected on the category.
    """
    label_ids = _label_ids(train, val, labels)
    started = time.monotonic()
    n_rows = len(train)
    train = with_typos(train, settings.augment_typos, settings.seed)
    head_rows = [
        replace(h, train=with_typos(h.train, settings.augment_typos, settings.seed)) for h in heads or []
    ]
    settings = at_least_min_steps(settings, len(train))
    settings = enough_for_heads(settings, len(train), [len(h.train) for h in head_rows])
    _seed(settings.seed)  # every random draw below follows in a fixed order: same seed, same weights
    device = select_device()
    total_steps = settings.epochs * math.ceil(len(train) / settings.batch_size)
    fmt = (
        with_max_length(input_format, max_length)
        if input_format is not None
        else default_input_format(base_dir, max_length)
    )
    model, tokenizer, init = _build_model(base_dir, labels, settings, total_steps, full_finetune, init_from)
    model.input_format = fmt  # the model carries it into evaluation and save_adapter's manifest
    warm_heads = init_from if init.get("from") == "adapter" else None
    tasks = _head_tasks(model, head_rows, tokenizer, fmt, settings, warm_heads)
    model.to(device)
    train_data = Encoded(train, tokenizer, label_ids, fmt, sample_weights(train, label_ids))
    train_data.targets = soft_targets(train, label_ids)
    validation = Validation.of(val, tokenizer, labels, fmt, settings.early_stop_min_gold)
    opt = Optimisation.build(
        model,
        train_data,
        settings,
        total_steps,
        with_adalora=not full_finetune,
        fingerprint=fingerprint,
        heads=tasks,
    )
    state = _resume(opt, checkpoint_dir) if resume else Progress()
    _log_start(opt, validation, "full" if full_finetune else settings.peft_method, len(train), len(labels))
    _run_epochs(opt, validation, state, settings, device, progress, checkpoint_dir, on_epoch_end)
    _restore_best(model, state)
    assert state.best is not None
    metrics = {
        **validation.summary(model, device, state.best),
        **_run_metrics(opt, state, settings, device, (n_rows, len(val)), init, started, full_finetune),
        "typo_copies": len(train) - n_rows,
    }
    if tasks:
        metrics["heads"] = {t.dimension: {"labels": len(t.labels), **t.scores(model, device)} for t in tasks}
    if resume:
        metrics["resumed"] = True
    return FitResult(model=model, tokenizer=tokenizer, metrics=metrics)


def _head_tasks(
    model: IntentClassifier,
    heads: list[HeadRows],
    tokenizer: Any,
    fmt: InputFormat,
    settings: TrainSettings,
    init_from: Path | None,
) -> list[HeadTask]:
    """A head on ``model`` and a training task for every extra dimension with rows to learn from
    (its rows already with their typo copies; warm-started from the champion's head of that
    dimension when its labels match)."""
    tasks = []
    for rows in heads:
        if len(rows.labels) < 2 or not rows.train:
            log.warning("no %s head: %d labels, %d rows", rows.dimension, len(rows.labels), len(rows.train))
            continue
        model.add_head(rows.dimension, rows.labels)
        tasks.append(
            HeadTask.of(
                rows,
                tokenizer,
                fmt,
                weight=settings.head_loss_weight,
                batch_size=settings.batch_size,
                seed=settings.seed,
            )
        )
    if init_from is not None and tasks:
        load_head_states(model, init_from)
    return tasks


def _log_start(opt: Optimisation, validation: Validation, method: str, n_train: int, n_labels: int) -> None:
    n_trainable = sum(p.numel() for p in opt.trainable)
    n_total = sum(p.numel() for p in opt.model.parameters())
    log.info(
        "fine-tuning %d/%d params (%.2f%%, %s) on %d examples, %d labels; epochs selected on %s",
        n_trainable,
        n_total,
        100 * n_trainable / n_total,
        method,
        n_train,
        n_labels,
        validation.describe(),
    )
