"""How a query reaches the encoder: the input template, the token budget and the pooling.

An encoder works as it was pretrained only when it sees text in the format it was trained on (an
E5 model expects ``query: <text>``) and its token vectors are pooled the way its sentence embedding
was (mean for MiniLM, the ``[CLS]`` vector for BGE-style models). :class:`InputFormat` is resolved
once from the settings and the base directory, recorded in the adapter's manifest, and read back
from there by every loader, so training, evaluation and serving tokenise and pool identically:
:func:`tokenize` and :func:`pool` are the only places that do either.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from trainer.exceptions import ModelError
from trainer.settings import ModelSettings

log = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "max"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
TEXT_SLOT = "{text}"
# sentence-transformers' Pooling module config keys -> our modes (the ones a linear head can use as is).
_ST_MODES: dict[str, Pooling] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
_ST_POOLING_TYPE = "sentence_transformers.models.Pooling"


@dataclass(frozen=True)
class InputFormat:
    """What the encoder is fed and how its output is pooled; recorded in every adapter manifest.

    The defaults are what adapters published before the format was recorded were trained with,
    so an older manifest without ``input_format`` loads exactly as it was trained.
    """

    template: str = TEXT_SLOT
    pooling: Pooling = "mean"
    max_length: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or self.template.count(TEXT_SLOT) != 1:
            raise ModelError(f"input template {self.template!r} must contain {TEXT_SLOT} exactly once")
        if self.pooling not in POOLINGS:
            raise ModelError(f"pooling {self.pooling!r} is not one of {list(POOLINGS)}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ModelError(f"max_length {self.max_length!r} is not a positive integer")

    def as_dict(self) -> dict[str, Any]:
        return {"template": self.template, "pooling": self.pooling, "max_length": self.max_length}

    def apply(self, texts: Sequence[str]) -> list[str]:
        """The texts as the encoder sees them. ``str.replace``, not ``str.format``: a template may
        hold other braces, and a query's own braces must never be interpreted."""
        head, _, tail = self.template.partition(TEXT_SLOT)
        return [f"{head}{t}{tail}" for t in texts]

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "InputFormat":
        """The format an adapter was trained with (the legacy default when it predates the field)."""
        recorded = manifest.get("input_format", {})
        if not isinstance(recorded, dict):
            raise ModelError(f"manifest input_format {recorded!r} is not an object")
        return cls(
            template=recorded.get("template", TEXT_SLOT),
            pooling=recorded.get("pooling", "mean"),
            max_length=recorded.get("max_length", manifest.get("max_length", cls.max_length)),
        )


def resolve_input_format(model: ModelSettings, base_dir: Path) -> InputFormat:
    """The format to train with: the settings, with ``pooling=auto`` resolved against ``base_dir``."""
    pooling = sentence_transformers_pooling(base_dir) if model.pooling == "auto" else model.pooling
    return InputFormat(template=model.input_template, pooling=pooling or "mean", max_length=model.max_length)


def default_input_format(base_dir: Path, max_length: int) -> InputFormat:
    """The format of the default settings (no template, automatic pooling) for callers given none."""
    return InputFormat(pooling=sentence_transformers_pooling(base_dir) or "mean", max_length=max_length)


def sentence_transformers_pooling(base_dir: Path) -> Pooling | None:
    """The pooling the base directory's sentence-transformers config names, or None without one.

    A model packaged for sentence-transformers says how its embedding was trained in ``modules.json``
    -> the Pooling module's ``config.json``. A mode a linear head cannot reproduce here (weighted mean,
    last token, several concatenated) is an error rather than a silent mean: the fix is to choose.
    """
    modules_file = base_dir / "modules.json"
    try:
        modules = json.loads(modules_file.read_text()) if modules_file.is_file() else None
        paths = [
            m.get("path", "")
            for m in modules or []
            if isinstance(m, dict) and m.get("type") == _ST_POOLING_TYPE
        ]
        config_file = base_dir / paths[0] / "config.json" if paths else base_dir / "1_Pooling" / "config.json"
        if not config_file.is_file():
            return None
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise ModelError(f"cannot read the sentence-transformers config of {base_dir}: {exc}") from exc
    on = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v is True)
    modes = [_ST_MODES[k] for k in on if k in _ST_MODES]
    if len(on) != 1 or len(modes) != 1:
        raise ModelError(
            f"{config_file} asks for pooling {on or 'none'}, which the classifier cannot reproduce: "
            "set INTENTLOOP_MODEL__POOLING to mean, cls or max"
        )
    log.info("pooling: %s, from %s", modes[0], config_file)
    return modes[0]


def with_max_length(fmt: InputFormat, max_length: int | None) -> InputFormat:
    """``fmt`` with another token budget (``None``: unchanged)."""
    return fmt if max_length is None or max_length == fmt.max_length else replace(fmt, max_length=max_length)


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    fmt: InputFormat,
    *,
    batch: bool,
    tensors: Literal["pt", "np"] = "pt",
) -> Any:
    """The one tokenizer call of training, evaluation and serving: template, then truncation.

    ``batch``: padded ``input_ids``/``attention_mask`` arrays (inference: torch tensors, or numpy
    arrays with ``tensors="np"`` for an ONNX graph); otherwise ragged id lists that the trainer pads
    per batch itself (texts are tokenised once, batches vary).
    """
    if batch:
        return tokenizer(
            fmt.apply(texts),
            padding="longest",
            truncation=True,
            max_length=fmt.max_length,
            return_tensors=tensors,
        )
    return tokenizer(fmt.apply(texts), truncation=True, max_length=fmt.max_length, padding=False)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """One vector per row from the encoder's token vectors, ignoring padding.

    ``cls`` takes the first *unmasked* position, so it is right for left-padding tokenizers too.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        first = attention_mask.argmax(dim=1)  # index of the first 1 (argmax returns the first maximum)
        return hidden[torch.arange(hidden.size(0), device=hidden.device), first]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
