"""The adapter artifact: how a trained classifier is saved, and the one way one is loaded back.

An artifact is ``adapter_model.safetensors``, ``adapter_config.json``, ``head.safetensors`` and
``manifest.json``; never a pickle, and written canonically (same content, same bytes, same version
id, ``store.artifacts``). The head is saved with the adapter whatever the PEFT method, so an
artifact is a whole classifier on a shared base. A *fused* artifact also holds the lexical member,
the behaviour memory and the fusion over all three (:mod:`trainer.fused_artifact`), and its
manifest a ``fusion`` section: one artifact, one version.

:func:`load_version` is the only loader: the gate, ``eval`` (:func:`load_for_inference`) and the
inference workers (``serving.adapters``) all go through it, so they check, load and merge alike and
get the fused members of a fused version. :func:`load_adapter` is its encoder-member part.
It refuses, before building anything, an adapter whose manifest, files or tensors are wrong for the
base, raising the :class:`~trainer.exceptions.ModelError` subclass that says which kind of wrong.
It then merges the adapter into private copies of its target weights on a copy of the base that
shares every other tensor (every supported method merges), so a loaded adapter costs what the bare
encoder costs at inference and its base stays untouched for the next adapter.
"""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from peft import (
    AdaLoraConfig,
    PeftConfig,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from store.dimensions import CATEGORY
from trainer.classifier import FrozenBase, IntentClassifier, LoadedModel, config_sha256
from trainer.exceptions import (
    CorruptAdapterError,
    IncompatibleAdapterError,
    InvalidAdapterError,
    ModelError,
)
from trainer.fused_artifact import SECTION, FusedMembers, FusedModel, FusedParts, load_members, write_members
from trainer.inputs import InputFormat, with_max_length
from trainer.peft_methods import peft_summary

FORMAT = "intentloop-adapter/1"
ADAPTER_WEIGHTS, ADAPTER_CONFIG, HEAD, MANIFEST = (
    "adapter_model.safetensors",
    "adapter_config.json",
    "head.safetensors",
    "manifest.json",
)
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD)  # the encoder member's files, besides the manifest
# The heads of the other label dimensions (``<dimension>.weight`` / ``.bias``), only when there are
# any: a single-dimension artifact is byte for byte what it was before dimensions existed.
HEADS = "heads.safetensors"
HEADS_SECTION = "heads"


# ---------------------------------------------------------------------------------------- saving
def save_adapter(
    model: IntentClassifier,
    out_dir: Path,
    *,
    base_dir: Path,
    labels: list[str],
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    max_length: int | None = None,
    fused: FusedParts | None = None,
) -> Path:
    """Write the adapter, head and manifest (safetensors + JSON only) into ``out_dir``.

    The manifest records the model's :class:`InputFormat` (``max_length`` overrides its token
    budget), which every loader applies. Every file is canonical: the same weights, head, labels and
    configuration give the same bytes, hence the same version id (``store.artifacts``).
    ``fused``: also write the lexical member, the memory and the fusion, and the manifest's
    ``fusion`` section (the model must be the fusion's encoder member); ``None`` writes exactly the
    plain artifact.
    """
    peft_encoder: Any = model.encoder
    if not hasattr(peft_encoder, "peft_config"):
        raise ModelError("this model's LoRA weights are merged (an inference model): nothing to save")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Members first: parts the loader would refuse are refused before any file is written.
    fusion = {} if fused is None else {SECTION: write_members(out_dir, fused, list(labels), ADAPTER_FILES)}
    raw = json.loads((base_dir / "config.json").read_text())
    name = raw.get("_name_or_path") or base_dir.name
    config, state, rank_pattern = _adapter_to_save(peft_encoder, name)
    config.save_pretrained(str(out_dir))
    _canonicalise_adapter_config(out_dir / ADAPTER_CONFIG, config)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out_dir / ADAPTER_WEIGHTS))
    save_file(
        {k: v.detach().cpu().float().contiguous() for k, v in model.head.state_dict().items()},
        str(out_dir / HEAD),
    )
    heads = {}
    if model.heads:
        save_file(
            {k: v.detach().cpu().float().contiguous() for k, v in model.heads.state_dict().items()},
            str(out_dir / HEADS),
        )
        heads = {HEADS_SECTION: {d: {"labels": list(lab)} for d, lab in model.head_labels.items()}}
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
        **fusion,
        **heads,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return out_dir


def _adapter_to_save(peft_encoder: Any, base_name: str) -> tuple[PeftConfig, dict[str, Any], Any]:
    """The adapter's config as it is saved, its tensors, and AdaLoRA's rank pattern (else ``None``)."""
    live = peft_encoder.peft_config["default"]
    config = copy.deepcopy(live)
    config.base_model_name_or_path = base_name  # not the training machine's absolute path
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
    return config, state, rank_pattern


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


# ---------------------------------------------------------------------------------------- loading
def load_for_inference(
    base_dir: Path | None, adapter_dir: Path, device: str | torch.device | None = None
) -> LoadedModel:
    """The adapter at ``adapter_dir`` on its own copy of the base at ``base_dir``, ready to score.

    For one-off scoring (the gate, ``eval``); a process serving several adapters keeps one
    :class:`FrozenBase` and calls :func:`load_adapter` per adapter instead.
    """
    manifest = read_manifest(adapter_dir)  # before the encoder: a wrong path fails fast
    base = FrozenBase(base_dir, device)
    module, fused = load_version(base, adapter_dir, manifest)
    if fused is None:
        return LoadedModel(module, base.tokenizer, manifest, base.device)
    return FusedModel(module, base.tokenizer, manifest, base.device, fused)


def load_version(
    base: FrozenBase, adapter_dir: Path, manifest: dict[str, Any] | None = None
) -> tuple[IntentClassifier, FusedMembers | None]:
    """The version at ``adapter_dir`` on ``base``: its encoder member (:func:`load_adapter`) and,
    for a fused version, its other members and fusion (``None`` for a plain one).

    Either every part loads and agrees with the manifest or the whole version is refused.
    """
    manifest = read_manifest(adapter_dir) if manifest is None else manifest
    check_manifest(manifest, base)  # the labels the members are checked against
    fused = load_members(adapter_dir, manifest, ADAPTER_FILES)  # before the merge: cheaper to refuse
    return load_adapter(base, adapter_dir, manifest), fused


def load_adapter(
    base: FrozenBase, adapter_dir: Path, manifest: dict[str, Any] | None = None
) -> IntentClassifier:
    """The adapter artifact at ``adapter_dir`` as a merged, frozen, eval-mode classifier on ``base``
    (of a fused version, its encoder member: :func:`load_version` loads the whole version).

    The model tokenises and pools as the manifest's ``input_format`` says (the legacy ``{text}`` and
    mean pooling for manifests written before it was recorded), whatever the current settings are.
    ``manifest``: the one already read (and verified) by the caller, else ``adapter_dir``'s.
    """
    manifest = read_manifest(adapter_dir) if manifest is None else manifest
    labels, input_format = check_manifest(manifest, base)
    missing = [n for n in ADAPTER_FILES if not (adapter_dir / n).is_file()]
    if missing:
        raise CorruptAdapterError(f"files missing: {missing}")
    hidden = int(base.config.hidden_size)
    head = _read_head(adapter_dir / HEAD, len(labels), hidden)
    try:
        # The subclass its peft_type names: LoRA, AdaLoRA or IA3 (``trainer.peft_methods``).
        config = PeftConfig.from_pretrained(str(adapter_dir))
    except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise InvalidAdapterError(f"{ADAPTER_CONFIG}: {exc}") from exc
    config.base_model_name_or_path = None  # the manifest names the base; spares PEFT's rename warning
    extra_heads = _read_heads(adapter_dir, manifest, hidden)  # before the merge: cheaper to refuse
    encoder = _merge(base.encoder_copy(), config, read_tensors(adapter_dir / ADAPTER_WEIGHTS))
    module = IntentClassifier(encoder, hidden, labels, dropout=0.0, input_format=input_format)
    module.head.load_state_dict(head)
    for dimension, (head_labels, tensors) in extra_heads.items():
        module.add_head(dimension, head_labels)
        module.heads[dimension].load_state_dict(tensors)
    module.to(base.device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def read_manifest(adapter_dir: Path) -> dict[str, Any]:
    """The artifact's ``manifest.json`` as a dict; ``CorruptAdapterError`` when it cannot be read."""
    try:
        manifest = json.loads((adapter_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptAdapterError(f"cannot read {adapter_dir / MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise InvalidAdapterError(f"{adapter_dir / MANIFEST} is not a JSON object")
    return manifest


def check_manifest(manifest: dict[str, Any], base: FrozenBase) -> tuple[list[str], InputFormat]:
    """The label map and input format of an adapter that ``base`` can carry; refuses anything else."""
    if manifest.get("format") != FORMAT:
        raise InvalidAdapterError(f"unknown format {manifest.get('format')!r}, expected {FORMAT}")
    labels = manifest.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise InvalidAdapterError(f"no usable label map (labels: {str(labels)[:80]})")
    _check_base(manifest.get("base_model"), base)
    max_length = manifest.get("max_length")
    if not isinstance(max_length, int) or max_length < 1:
        raise InvalidAdapterError(f"max_length {max_length!r}")
    try:
        input_format = InputFormat.from_manifest(manifest)
    except ModelError as exc:
        raise InvalidAdapterError(f"input_format: {exc}") from exc
    return list(labels), input_format


def _check_base(want: Any, base: FrozenBase) -> None:
    """Refuse an adapter trained on another encoder: other width, or any other ``config.json``."""
    if not isinstance(want, dict):
        raise InvalidAdapterError("manifest names no base model")
    if want.get("hidden_size") != base.config.hidden_size:
        raise IncompatibleAdapterError(
            f"adapter was trained on {want.get('name')} (hidden_size {want.get('hidden_size')}) "
            f"but the base at {base.base_dir} has hidden_size {base.config.hidden_size}"
        )
    if want.get("config_sha256") != base.config_sha256:
        raise IncompatibleAdapterError(
            f"adapter was trained on {want.get('name')} but the config.json at {base.base_dir} "
            "differs (config_sha256 mismatch): point INTENTLOOP_MODEL__BASE_DIR at that base"
        )


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file of finite tensors; a NaN or inf in an adapter can only give garbage."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptAdapterError(f"{path.name} unreadable: {exc}") from exc
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InvalidAdapterError(f"{path.name}: non-finite values in {bad[:3]}")
    return tensors


def _read_head(path: Path, n_labels: int, hidden: int) -> dict[str, torch.Tensor]:
    head = read_tensors(path)
    if set(head) != {"weight", "bias"}:
        raise InvalidAdapterError(f"head has tensors {sorted(head)}")
    if tuple(head["weight"].shape) != (n_labels, hidden) or tuple(head["bias"].shape) != (n_labels,):
        raise IncompatibleAdapterError(
            f"head is {tuple(head['weight'].shape)}; {n_labels} labels x hidden {hidden} needed"
        )
    return head


def head_sections(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """The manifest's extra heads: dimension -> its labels (empty for a single-dimension artifact);
    ``InvalidAdapterError`` when the section is malformed."""
    section = manifest.get(HEADS_SECTION) or {}
    if not isinstance(section, dict):
        raise InvalidAdapterError(f"{HEADS_SECTION} must be an object, got {type(section).__name__}")
    out = {}
    for dimension, spec in section.items():
        labels = spec.get("labels") if isinstance(spec, dict) else None
        if (
            dimension == CATEGORY
            or not isinstance(labels, list)
            or len(labels) < 2
            or not all(isinstance(x, str) and x for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise InvalidAdapterError(f"head {dimension!r} has no usable label map ({str(spec)[:80]})")
        out[str(dimension)] = list(labels)
    return out


def _read_heads(
    adapter_dir: Path, manifest: dict[str, Any], hidden: int
) -> dict[str, tuple[list[str], dict[str, torch.Tensor]]]:
    """Every extra head the manifest lists, checked against its labels and the base's width."""
    sections = head_sections(manifest)
    if not sections:
        return {}
    if not (adapter_dir / HEADS).is_file():
        raise CorruptAdapterError(f"files missing: ['{HEADS}'] (the manifest lists heads {sorted(sections)})")
    tensors = read_tensors(adapter_dir / HEADS)
    want = {f"{d}.{part}" for d in sections for part in ("weight", "bias")}
    if set(tensors) != want:
        raise InvalidAdapterError(
            f"{HEADS} has tensors {sorted(tensors)[:6]}, the manifest lists {sorted(want)}"
        )
    out = {}
    for dimension, labels in sections.items():
        head = {"weight": tensors[f"{dimension}.weight"], "bias": tensors[f"{dimension}.bias"]}
        if tuple(head["weight"].shape) != (len(labels), hidden) or tuple(head["bias"].shape) != (
            len(labels),
        ):
            raise IncompatibleAdapterError(
                f"head {dimension} is {tuple(head['weight'].shape)}; "
                f"{len(labels)} labels x hidden {hidden} needed"
            )
        out[dimension] = (labels, head)
    return out


def _merge(encoder: Any, config: PeftConfig, weights: dict[str, torch.Tensor]) -> Any:
    """``encoder`` with the adapter merged in. Any PEFT tuner layer (LoRA, AdaLoRA, IA3) merges by
    writing into its base layer's weight (IA3 also scales the bias): those get private copies first,
    so tensors ``encoder`` shares with a :class:`FrozenBase` are never written."""
    method = str(getattr(config, "peft_type", "adapter"))
    try:
        peft_encoder: Any = get_peft_model(encoder, config)
    except (ValueError, TypeError, KeyError) as exc:
        raise IncompatibleAdapterError(f"{method} does not fit: {exc}") from exc
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
        raise IncompatibleAdapterError(f"{method} weights do not fit the base: {exc}") from exc
    _check_fit(peft_encoder, result, "adapter weights do not fit the base", IncompatibleAdapterError)
    return peft_encoder.merge_and_unload()


def _check_fit(peft_encoder: Any, result: Any, what: str, error: type[ModelError]) -> None:
    """Raise ``error`` when loading left an adapter weight unset or found one the model lacks (a state
    dict of adapter weights leaves every base weight "missing": only a missing adapter weight counts)."""
    prefix = getattr(peft_encoder.base_model, "prefix", "lora_")
    missing = [k for k in result.missing_keys if prefix in k]
    if missing or result.unexpected_keys:
        raise error(f"{what} (missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")


# ---------------------------------------------------------------------------------------- warm start
def load_trainable_state(model: IntentClassifier, adapter_dir: Path) -> None:
    """Put a saved adapter's weights and head into a freshly built trainable ``model`` (warm start).

    The caller checks labels, base and :func:`~trainer.peft_methods.same_adapter_shape` first; a
    mismatch that slips through is a ``ModelError`` here, never a silently half-loaded model.
    """
    peft_encoder: Any = model.encoder
    try:
        result: Any = set_peft_model_state_dict(peft_encoder, load_file(str(adapter_dir / ADAPTER_WEIGHTS)))
        model.head.load_state_dict(load_file(str(adapter_dir / HEAD)))
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"{adapter_dir} does not fit the model being trained: {exc}") from exc
    _check_fit(peft_encoder, result, f"{adapter_dir}: adapter weights do not fit", ModelError)


def load_head_states(model: IntentClassifier, adapter_dir: Path) -> list[str]:
    """Warm-start the extra heads of ``model`` from the artifact's heads of the same dimension and
    labels; a head whose labels changed (or that the champion lacks) keeps its fresh weights.
    Returns the dimensions loaded."""
    manifest = json.loads((adapter_dir / MANIFEST).read_text())
    theirs = head_sections(manifest)
    same = [d for d, labels in model.head_labels.items() if theirs.get(d) == labels]
    if not same:
        return []
    tensors = load_file(str(adapter_dir / HEADS))
    for dimension in same:
        model.heads[dimension].load_state_dict(
            {"weight": tensors[f"{dimension}.weight"], "bias": tensors[f"{dimension}.bias"]}
        )
    return same
