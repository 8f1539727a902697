"""Many adapters on one base encoder: verification, loading that shares the base weights, prediction.

Why not ``trainer.model.load_for_inference`` per adapter: it loads a fresh encoder and merges LoRA
into it, so every loaded version (the champion, the previous one kept warm for rollback, a canary,
one per market) would cost a whole encoder. Here the base encoder is loaded once per worker; an
adapter is a structural copy of it whose parameters *are* the base's tensors, except the few
LoRA-targeted projections, which get private merged weights. Serving stays as fast as a merged model
(no LoRA matmuls at request time) and an extra version costs only its targeted weights and its head.

Every check that can refuse an adapter runs before anything is flipped: the artifact's hashes
(``store.artifacts``), the manifest (format, label map, base model fingerprint, input format), the
shapes of the LoRA and head tensors, and a warm-up whose outputs must be finite probabilities.
Queries are templated, tokenised and pooled as the manifest records (``trainer.inputs``), never as
this worker's settings say: one worker serves adapters trained with different formats side by side.
"""

import copy
import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from serving.exceptions import AdapterRefusedError, RefusalKind
from trainer.exceptions import ModelError
from trainer.inputs import InputFormat, tokenize
from trainer.model import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FORMAT,
    HEAD,
    IntentClassifier,
    autocast,
    config_sha256,
    resolve_base_dir,
    select_device,
)

log = logging.getLogger(__name__)

WARMUP = ["warm up query", "a second, longer warm up query for the tokenizer"]


@dataclass(frozen=True, eq=False)
class Adapter:
    """One loaded version: immutable once built, so a batch holding it can never see it change."""

    version: str
    labels: tuple[str, ...]
    max_length: int
    module: IntentClassifier
    manifest: dict[str, Any] = field(repr=False)

    @property
    def input_format(self) -> InputFormat:
        """Template, pooling and token budget the adapter was trained with (its manifest's)."""
        return self.module.input_format


class SharedBase:
    """The base encoder and tokenizer of a worker, loaded once; builds and runs adapters on top."""

    def __init__(self, base_dir: Path | None, device: str | torch.device | None = None) -> None:
        self.base_dir = resolve_base_dir(base_dir)
        self.config = AutoConfig.from_pretrained(self.base_dir, local_files_only=True)
        self.config_sha256 = config_sha256(self.base_dir)
        self.device = select_device(device)
        self.encoder = AutoModel.from_pretrained(self.base_dir, local_files_only=True, dtype=torch.float32)
        self.encoder.to(self.device).eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir, local_files_only=True)
        # Fast tokenizers may reconfigure their Rust backend per call ("Already borrowed" under threads).
        self._tok_lock = threading.Lock()

    def build(self, version: str, path: Path, manifest: dict[str, Any]) -> Adapter:
        """Verify ``manifest`` and the tensors in ``path`` against this base and load them, or refuse."""
        labels, input_format = self._check_manifest(version, manifest, path)
        hidden = int(self.config.hidden_size)
        head = _read_tensors(version, path / HEAD)
        if set(head) != {"weight", "bias"}:
            raise AdapterRefusedError(version, RefusalKind.INVALID, f"head has tensors {sorted(head)}")
        if tuple(head["weight"].shape) != (len(labels), hidden) or tuple(head["bias"].shape) != (
            len(labels),
        ):
            raise AdapterRefusedError(
                version,
                RefusalKind.INCOMPATIBLE,
                f"head is {tuple(head['weight'].shape)}; {len(labels)} labels x hidden {hidden} needed",
            )
        try:
            # The subclass its peft_type names: LoRA, AdaLoRA or IA3 (``trainer.model.peft_config``).
            peft_config = PeftConfig.from_pretrained(str(path))
        except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise AdapterRefusedError(version, RefusalKind.INVALID, f"{ADAPTER_CONFIG}: {exc}") from exc
        peft_config.base_model_name_or_path = None  # the manifest names the base; spares a rename warning
        weights = _read_tensors(version, path / ADAPTER_WEIGHTS)
        encoder = self._merged_encoder(version, peft_config, weights)
        module = IntentClassifier(encoder, hidden, labels, dropout=0.0, input_format=input_format)
        module.head.load_state_dict(head)
        module.to(self.device).eval()
        for p in module.head.parameters():
            p.requires_grad_(False)
        adapter = Adapter(version, tuple(labels), input_format.max_length, module, manifest)
        probs = self.predict_proba(adapter, WARMUP)
        if probs.shape != (len(WARMUP), len(labels)) or not np.isfinite(probs).all():
            raise AdapterRefusedError(version, RefusalKind.INVALID, "warm-up gave non-finite probabilities")
        return adapter

    def predict_proba(self, adapter: Adapter, texts: list[str]) -> np.ndarray:
        """Class probabilities, one row per text: one tokenizer call and one forward pass."""
        if not texts:
            return np.zeros((0, len(adapter.labels)), dtype=np.float32)
        with self._tok_lock:
            enc = tokenize(self.tokenizer, texts, adapter.input_format, batch=True)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        with torch.inference_mode(), autocast(self.device):
            logits = adapter.module(ids, mask)
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def shares_base(self, adapter: Adapter) -> bool:
        """Whether the adapter's encoder reuses this base's embedding tensor (not a copy of it)."""
        mine = self.encoder.get_input_embeddings().weight
        theirs: Any = adapter.module.encoder
        return bool(theirs.get_input_embeddings().weight is mine)

    def _check_manifest(
        self, version: str, manifest: dict[str, Any], path: Path
    ) -> tuple[list[str], InputFormat]:
        if manifest.get("format") != FORMAT:
            raise AdapterRefusedError(
                version, RefusalKind.INVALID, f"unknown format {manifest.get('format')!r}, expected {FORMAT}"
            )
        labels = manifest.get("labels")
        if (
            not isinstance(labels, list)
            or len(labels) < 2
            or not all(isinstance(x, str) and x for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise AdapterRefusedError(
                version, RefusalKind.INVALID, f"no usable label map (labels: {str(labels)[:80]})"
            )
        base = manifest.get("base_model")
        if not isinstance(base, dict):
            raise AdapterRefusedError(version, RefusalKind.INVALID, "manifest names no base model")
        if (
            base.get("config_sha256") != self.config_sha256
            or base.get("hidden_size") != self.config.hidden_size
        ):
            raise AdapterRefusedError(
                version,
                RefusalKind.INCOMPATIBLE,
                f"trained on base {base.get('name')!r} (hidden_size {base.get('hidden_size')}), but this "
                f"worker serves {self.base_dir.name} (hidden_size {self.config.hidden_size}); "
                "config_sha256 differs",
            )
        max_length = manifest.get("max_length")
        if not isinstance(max_length, int) or max_length < 1:
            raise AdapterRefusedError(version, RefusalKind.INVALID, f"max_length {max_length!r}")
        try:
            input_format = InputFormat.from_manifest(manifest)
        except ModelError as exc:
            raise AdapterRefusedError(version, RefusalKind.INVALID, f"input_format: {exc}") from exc
        missing = [n for n in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, HEAD) if not (path / n).is_file()]
        if missing:
            raise AdapterRefusedError(version, RefusalKind.INTEGRITY, f"files missing: {missing}")
        return list(labels), input_format

    def _merged_encoder(self, version: str, config: PeftConfig, weights: dict[str, torch.Tensor]) -> Any:
        """A copy of the base sharing every tensor, with the adapter merged into private copies of its
        targets. Any PEFT tuner layer (LoRA, AdaLoRA, IA3) merges by writing into its base layer's
        weight (IA3 also scales the bias): those get private copies first, never the base's tensors."""
        shared = {id(t): t for t in (*self.encoder.parameters(), *self.encoder.buffers())}
        encoder = copy.deepcopy(self.encoder, memo=shared)
        method = str(getattr(config, "peft_type", "adapter"))
        try:
            peft_encoder: Any = get_peft_model(encoder, config)
        except (ValueError, TypeError, KeyError) as exc:
            raise AdapterRefusedError(
                version, RefusalKind.INCOMPATIBLE, f"{method} does not fit: {exc}"
            ) from exc
        for module in peft_encoder.modules():
            if isinstance(module, BaseTunerLayer):
                base_layer: Any = module.get_base_layer()
                for name in ("weight", "bias"):
                    tensor = getattr(base_layer, name, None)
                    if isinstance(tensor, torch.Tensor):
                        setattr(
                            base_layer, name, torch.nn.Parameter(tensor.detach().clone(), requires_grad=False)
                        )
        try:
            result: Any = set_peft_model_state_dict(peft_encoder, weights)
        except RuntimeError as exc:  # shape mismatch
            raise AdapterRefusedError(version, RefusalKind.INCOMPATIBLE, f"{method} weights: {exc}") from exc
        prefix = getattr(peft_encoder.base_model, "prefix", "lora_")
        missing = [k for k in result.missing_keys if prefix in k]
        if missing or result.unexpected_keys:
            raise AdapterRefusedError(
                version,
                RefusalKind.INCOMPATIBLE,
                f"adapter weights do not fit the base (missing {missing[:3]}, "
                f"unexpected {list(result.unexpected_keys)[:3]})",
            )
        merged = peft_encoder.merge_and_unload()
        for p in merged.parameters():
            p.requires_grad_(False)
        return merged


def _read_tensors(version: str, path: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterRefusedError(version, RefusalKind.INTEGRITY, f"{path.name} unreadable: {exc}") from exc
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise AdapterRefusedError(
            version, RefusalKind.INVALID, f"{path.name}: non-finite values in {bad[:3]}"
        )
    return tensors


def bucket(key: str) -> float:
    """A stable number in [0, 1) for a session key: the same session always lands on the same side."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / math.ldexp(1.0, 64)
