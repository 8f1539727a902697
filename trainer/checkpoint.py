"""Epoch checkpoints of a fine-tuning run, so a crashed or killed run continues where it stopped.

A checkpoint is everything the next epoch depends on: the trainable weights (adapter + head), the
best epoch's weights so far, the optimizer and scheduler, every random number generator (the
global ones and the data loader's), AdaLoRA's importance scores, and the early-stopping counters.
Restored into a model built the same way, the resumed run is bit-for-bit the run that was never
interrupted on CPU (``tests/unit/test_resume.py``).

Written to ``<dir>/epoch-<n>/`` and then published by atomically replacing ``<dir>/LATEST``, so a
crash while writing leaves the previous checkpoint intact. Tensors are safetensors; the rest is a
``torch.save`` dict read back with ``weights_only=True`` (no code runs on load). Checkpoints are
local scratch for one run, never artifacts.
"""

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trainer.exceptions import TrainerError

LATEST = "LATEST"
_WEIGHTS, _BEST, _STATE = "trainable.safetensors", "best.safetensors", "state.pt"


@dataclass
class Progress:
    """Early-stopping and throughput counters carried across epochs."""

    epoch: int = 0  # last completed epoch
    step: int = 0  # optimizer steps taken
    seen: int = 0  # training examples seen
    train_s: float = 0.0
    since_best: int = 0
    best: tuple[float, float, int] | None = None  # (selection macro-F1, accuracy, epoch)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        # weights_only loading refuses numpy arrays: store numpy's state as plain values
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).copy()), *np_state[2:]],
        "loader": generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    generator.set_state(state["loader"])


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    progress: Progress,
    fingerprint: dict[str, Any],
    allocator: Any | None = None,
) -> Path:
    """Write the checkpoint of the epoch just finished; older ones are removed once it is published."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"epoch-{progress.epoch}"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    save_file(_trainable(model), str(target / _WEIGHTS))
    save_file({k: v.detach().cpu().contiguous() for k, v in progress.best_state.items()}, str(target / _BEST))
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(generator),
        "progress": {
            "epoch": progress.epoch,
            "step": progress.step,
            "seen": progress.seen,
            "train_s": progress.train_s,
            "since_best": progress.since_best,
            "best": list(progress.best) if progress.best is not None else None,
            "stopped_early": progress.stopped_early,
        },
        "allocator": _allocator_state(allocator),
        "fingerprint_json": json.dumps(fingerprint, sort_keys=True, default=str),
    }
    torch.save(state, target / _STATE)
    tmp = directory / f".{LATEST}.tmp"
    tmp.write_text(target.name)
    os.replace(tmp, directory / LATEST)
    for old in directory.glob("epoch-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def exists(directory: Path | None) -> bool:
    return directory is not None and (directory / LATEST).is_file()


def load(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    fingerprint: dict[str, Any],
    allocator: Any | None = None,
) -> Progress:
    """Restore the latest checkpoint into a model/optimizer built exactly like the interrupted run's.

    Refuses (``TrainerError``) a checkpoint of other data or other hyper-parameters: continuing it
    would produce a model nobody asked for.
    """
    source = directory / (directory / LATEST).read_text().strip()
    state = torch.load(source / _STATE, weights_only=True)
    recorded = json.loads(state["fingerprint_json"])
    expected = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    if recorded != expected:
        differ = sorted(k for k in {*recorded, *expected} if recorded.get(k) != expected.get(k))
        raise TrainerError(f"checkpoint {source} belongs to another run (differs in {differ}): cannot resume")
    weights = load_file(str(source / _WEIGHTS))
    params = dict(model.named_parameters())
    if set(weights) != {n for n, p in params.items() if p.requires_grad}:
        raise TrainerError(f"checkpoint {source} does not fit the model (trainable parameters differ)")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], generator)
    _set_allocator_state(allocator, state["allocator"])
    p = state["progress"]
    best_state = load_file(str(source / _BEST))
    device = next(iter(params.values())).device
    return Progress(
        epoch=int(p["epoch"]),
        step=int(p["step"]),
        seen=int(p["seen"]),
        train_s=float(p["train_s"]),
        since_best=int(p["since_best"]),
        best=(float(p["best"][0]), float(p["best"][1]), int(p["best"][2])) if p["best"] else None,
        best_state={k: v.to(device) for k, v in best_state.items()},
        stopped_early=bool(p["stopped_early"]),
    )


def _allocator_state(allocator: Any | None) -> dict[str, Any] | None:
    """AdaLoRA's importance estimates (its pruning decisions depend on their history)."""
    if allocator is None:
        return None
    model, rank_allocator = allocator
    config = model.peft_config[model.trainable_adapter_name]
    return {
        "ipt": dict(rank_allocator.ipt),
        "exp_avg_ipt": dict(rank_allocator.exp_avg_ipt),
        "exp_avg_unc": dict(rank_allocator.exp_avg_unc),
        "rank_pattern_json": json.dumps(config.rank_pattern),
    }


def _set_allocator_state(allocator: Any | None, state: dict[str, Any] | None) -> None:
    if allocator is None or state is None:
        return
    model, rank_allocator = allocator
    rank_allocator.ipt = dict(state["ipt"])
    rank_allocator.exp_avg_ipt = dict(state["exp_avg_ipt"])
    rank_allocator.exp_avg_unc = dict(state["exp_avg_unc"])
    model.peft_config[model.trainable_adapter_name].rank_pattern = json.loads(state["rank_pattern_json"])
