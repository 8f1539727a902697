"""PEFT configuration: which method (LoRA, AdaLoRA, IA3) goes on which modules of the encoder.

Targets come from the settings, else PEFT's per-architecture defaults, else the attention
projections found by name; ``INTENTLOOP_TRAIN__LAYERS`` narrows them to chosen transformer blocks.
:func:`peft_summary` is what an adapter manifest records about the method, so a warm start can tell
whether a saved adapter has the tensors the configured one would have (:func:`same_adapter_shape`).
"""

from typing import Any

import torch
from peft import AdaLoraConfig, IA3Config, LoraConfig, PeftConfig
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)

from trainer.exceptions import ModelError
from trainer.settings import TrainSettings

# Attention projections LoRA goes on when PEFT has no default for the architecture.
_FALLBACK_TARGETS = {"query", "value", "q_lin", "v_lin", "q_proj", "v_proj", "query_key_value", "Wqkv"}


def _target_modules(encoder: Any, wanted: list[str] | None) -> list[str]:
    if wanted:
        return list(wanted)
    model_type = encoder.config.model_type
    if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    found = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, mod in encoder.named_modules()
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in _FALLBACK_TARGETS
        }
    )
    if not found:
        raise ModelError(
            f"PEFT has no default LoRA targets for model_type {model_type!r} and no attention "
            "projection named like query/value/q_lin/v_lin/q_proj/v_proj was found: set "
            'INTENTLOOP_TRAIN__TARGET_MODULES (e.g. \'["q", "v"]\')'
        )
    return found


def _blocks(encoder: Any) -> tuple[str, int]:
    """The module path of the encoder's list of transformer blocks, and its length.

    Found structurally (the ``ModuleList`` as long as ``num_hidden_layers``) rather than by name, so
    BERT (``encoder.layer``), DistilBERT (``transformer.layer``), XLM-R and others all work.
    """
    n = int(getattr(encoder.config, "num_hidden_layers", 0) or 0)
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and n and len(module) == n:
            return name, n
    raise ModelError(
        f"cannot find the {n} transformer blocks of model_type {encoder.config.model_type!r}: "
        "unset INTENTLOOP_TRAIN__LAYERS to put adapters on every block"
    )


def _restrict_to_layers(encoder: Any, targets: list[str], layers: list[int]) -> list[str]:
    """Full module names of ``targets`` inside the chosen blocks (negative indices count from the end).

    PEFT matches a target by name suffix, so full names select exactly these modules for every
    method (IA3 has no ``layers_to_transform``), and the adapter config lists what was trained.
    """
    prefix, n = _blocks(encoder)
    bad = [i for i in layers if not -n <= i < n]
    if bad:
        raise ModelError(f"INTENTLOOP_TRAIN__LAYERS {bad} out of range: the encoder has {n} blocks")
    chosen = sorted({i % n for i in layers})
    wanted = tuple(f"{prefix}.{i}." for i in chosen)
    names = sorted(
        name
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.startswith(wanted)
        and any(name == t or name.endswith("." + t) for t in targets)
    )
    if not names:
        raise ModelError(f"none of the target modules {targets} is in blocks {chosen} of {prefix}")
    return names


def _ia3_modules(encoder: Any, train: TrainSettings) -> tuple[list[str], list[str]]:
    """IA3 targets and the feed-forward subset: settings, else PEFT's defaults, else attention only."""
    model_type = encoder.config.model_type
    if train.target_modules:
        targets = list(train.target_modules)
    elif model_type in TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING:
        targets = list(TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[model_type])
    else:
        targets = _target_modules(encoder, None)
    if train.ia3_feedforward_modules is not None:
        feedforward = list(train.ia3_feedforward_modules)
    else:
        feedforward = list(TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type, []))
        feedforward = [f for f in feedforward if f in targets]
    return targets, feedforward


def adalora_schedule(total_steps: int) -> tuple[int, int]:
    """AdaLoRA's (tinit, tfinal): 10% of the steps before pruning starts, the last 20% at the final
    budget. Fractions, because nightly snapshots vary in size and a fixed step count may not fit."""
    tinit, tfinal = int(0.1 * total_steps), int(0.2 * total_steps)
    if tinit >= total_steps - tfinal:  # tiny runs: prune from the first step, no final phase
        tinit, tfinal = 0, 0
    return tinit, tfinal


def peft_config(encoder: Any, train: TrainSettings, *, total_steps: int | None = None) -> PeftConfig:
    """The PEFT config ``train`` asks for on this encoder (method, targets, chosen blocks)."""
    method = train.peft_method
    if method == "ia3":
        targets, feedforward = _ia3_modules(encoder, train)
        if train.layers is not None:
            targets = _restrict_to_layers(encoder, targets, train.layers)
            feedforward = [t for t in targets if any(t.endswith("." + f) for f in feedforward)]
        return IA3Config(target_modules=targets, feedforward_modules=feedforward)
    targets = _target_modules(encoder, train.target_modules)
    if train.layers is not None:
        targets = _restrict_to_layers(encoder, targets, train.layers)
    if method == "adalora":
        steps = max(1, total_steps or 1)
        tinit, tfinal = adalora_schedule(steps)
        return AdaLoraConfig(
            init_r=train.lora_r,
            target_r=min(train.adalora_target_r, train.lora_r),
            lora_alpha=train.lora_alpha,
            lora_dropout=train.lora_dropout,
            target_modules=targets,
            total_step=steps,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=max(1, steps // 20),
        )
    return LoraConfig(
        r=train.lora_r,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        target_modules=targets,
        bias="none",
    )


def peft_summary(config: Any, rank_pattern: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the manifest says about the adapter: the method and what decides its shape.

    Warm starts compare this with what the settings would build, so it must name everything that
    changes the adapter's tensors.
    """
    targets = sorted(getattr(config, "target_modules", None) or [])
    if isinstance(config, IA3Config):
        return {
            "method": "ia3",
            "target_modules": targets,
            "feedforward_modules": sorted(config.feedforward_modules or []),
        }
    if isinstance(config, AdaLoraConfig):
        out: dict[str, Any] = {
            "method": "adalora",
            "init_r": config.init_r,
            "target_r": config.target_r,
            "alpha": config.lora_alpha,
            "dropout": config.lora_dropout,
            "target_modules": targets,
            "total_step": config.total_step,
        }
        if rank_pattern:
            out["ranks_kept"] = int(sum(sum(bool(b) for b in mask) for mask in rank_pattern.values()))
        return out
    return {
        "method": "lora",
        "r": config.r,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "target_modules": targets,
    }


def same_adapter_shape(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two :func:`peft_summary` dicts describe adapters with the same tensors (AdaLoRA's
    schedule and pruning outcome do not change tensor shapes, so they are left out)."""
    ignore = {"total_step", "ranks_kept", "target_r", "dropout"}
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}
