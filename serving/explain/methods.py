"""The attribution methods: one number per word of the query for the target's label probability.

Every method is a maintained library's, wrapped so it works on the shopper's words
(:mod:`serving.explain.words`) and scores through the :class:`~serving.explain.target.Target`:

* ``shap`` - the ``shap`` library's partition explainer with its text masker over the query's words
  (removed words become a space, the operation the faithfulness benchmark measures). Owen values:
  they add up to p(query) - p(empty query).
* ``ig`` - Captum's integrated gradients on the encoder's input embeddings against a padding
  baseline, summed from sub-word pieces back onto words by character offsets. For a fused version
  it explains the encoder member alone (the lexical and memory members have no gradient).
* ``lime`` - Captum's LIME: a linear surrogate fitted to random word subsets.
* ``occlusion`` - Captum's feature ablation, one word left out at a time (``n + 1`` texts, one call).

Which one is the default (``INTENTLOOP_SERVE__EXPLAIN__METHOD``) is chosen by ``intentloop bench
explain``'s faithfulness per millisecond (docs/explanations.md).
"""

import warnings
from collections.abc import Callable
from typing import Any, get_args

import numpy as np

from serving.exceptions import ExplainError
from serving.explain.target import Target
from serving.explain.words import Query, split_query
from serving.settings import ExplainMethod
from store.taxonomy import normalise_query

METHODS: tuple[str, ...] = get_args(ExplainMethod)


def attribute(method: str, query: Query, target: Target, *, budget: int, seed: int = 0) -> np.ndarray:
    """One attribution per word of ``query`` for ``target``'s label (``budget``: model evaluations
    the sampling methods may spend, integration steps for ``ig``)."""
    if not query.words:
        raise ExplainError("the query has no words to explain")
    run: Callable[..., np.ndarray] | None = _METHODS.get(method)
    if run is None:
        raise ExplainError(f"unknown explanation method {method!r}; choose one of {list(METHODS)}")
    if len(query.words) == 1 and method != "ig":  # one player: every method's answer is the same
        full, empty = target.probabilities([query.text, ""])
        return np.array([full - empty])
    out = np.asarray(run(query, target, budget, seed), dtype=np.float64).reshape(-1)
    if out.shape != (len(query.words),) or not np.isfinite(out).all():
        raise ExplainError(f"{method} gave {out.shape} attributions for {len(query.words)} words")
    return out


# ------------------------------------------------------------------------------------------ shap
class _WordTokenizer:
    """The query's words as the shap text masker's tokens (ids are word positions)."""

    def __call__(self, s: str, return_offsets_mapping: bool = True) -> dict[str, Any]:
        words = split_query(s).words
        out: dict[str, Any] = {"input_ids": list(range(len(words)))}
        if return_offsets_mapping:
            out["offset_mapping"] = [(w.start, w.end) for w in words]
        return out


def _import_shap() -> Any:
    """``shap``, imported without the warnings its colour maps raise in matplotlib >= 3.10 (shap's
    plotting code, which explanations never use, calls ``Colormap.set_bad`` and its siblings at
    import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The set_(bad|over|under) function", category=PendingDeprecationWarning
        )
        import shap
    return shap


def _gap_for(text: str) -> str:
    """The shap text masker's mask token for ``text``: a private-use character the query does not
    hold (turned back into a space before scoring, so a removed word is a space, as in ERASER)."""
    return next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)


def _shap(query: Query, target: Target, budget: int, seed: int) -> np.ndarray:
    shap = _import_shap()
    gap = _gap_for(query.text)

    def model(texts: Any) -> np.ndarray:
        return target.probabilities([normalise_query(str(t).replace(gap, " ")) for t in texts])

    masker = shap.maskers.Text(_WordTokenizer(), mask_token=gap, collapse_mask_token=False)
    explainer = shap.explainers.Partition(model, masker)
    # the masker rebuilds strings from the words' raw spans: explain the model's (normalised) text
    explanation = explainer([query.text], max_evals=max(budget, 2 * len(query.words) + 2), silent=True)
    return np.asarray(explanation.values[0], dtype=np.float64)


# ------------------------------------------------------------------------------------------- ig
def _ig(query: Query, target: Target, budget: int, seed: int) -> np.ndarray:
    steps = max(2, budget // 4)  # ExplainSettings.ig_steps
    return np.asarray(target.run(lambda: _ig_on_model_thread(query, target, steps)))


def _ig_on_model_thread(query: Query, target: Target, steps: int) -> np.ndarray:
    import torch
    from captum.attr import LayerIntegratedGradients

    from trainer.inputs import tokenize

    module, base = target.module, target.base
    fmt = module.input_format
    with base.tokenizer_lock:
        enc = base.tokenizer(
            fmt.apply([query.text]),
            truncation=True,
            max_length=fmt.max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        reference = tokenize(base.tokenizer, [query.text], fmt, batch=True)  # what /v1/intent feeds it
    ids, mask = enc["input_ids"].to(base.device), enc["attention_mask"].to(base.device)
    if not torch.equal(ids.cpu(), reference["input_ids"]):
        raise ExplainError("the tokenizer gave different ids with offsets; cannot map pieces to words")
    offset = fmt.template.index("{text}")
    spans = [(int(s) - offset, int(e) - offset) for s, e in enc["offset_mapping"][0].tolist()]
    in_text = [
        not special and e > s and 0 <= s < len(query.text)
        for (s, e), special in zip(spans, enc["special_tokens_mask"][0].tolist(), strict=True)
    ]
    pad = base.tokenizer.pad_token_id if base.tokenizer.pad_token_id is not None else 0
    baseline = ids.clone()
    baseline[0, torch.tensor(in_text, dtype=torch.bool, device=ids.device)] = pad
    dimension, index = target.dimension, target.index

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = module.forward_heads(input_ids, attention_mask)[dimension]
        return torch.softmax(logits.float(), dim=-1)[:, index]

    lig = LayerIntegratedGradients(forward, module.encoder.get_input_embeddings())
    with torch.enable_grad():
        attr = lig.attribute(
            ids,
            baselines=baseline,
            additional_forward_args=(mask,),
            n_steps=steps,
            internal_batch_size=max(target.chunk, 1),
        )
    per_token = attr.sum(dim=-1)[0].detach().cpu().double().numpy()
    target.calls += steps
    words = np.zeros(len(query.words))
    for (s, _), keep, value in zip(spans, in_text, per_token, strict=True):
        if keep:
            words[_word_at(query, s)] += value
    return words


def _word_at(query: Query, char: int) -> int:
    """The word holding character ``char`` of the normalised text (the previous word for a gap)."""
    found = 0
    for i, w in enumerate(query.words):
        if w.norm_start <= char:
            found = i
        if char < w.norm_end:
            break
    return found


# ---------------------------------------------------------------------- lime and occlusion
def _presence_model(query: Query, target: Target) -> Callable[[Any], Any]:
    """Captum's forward function over word-presence vectors: each row's kept words, scored."""
    import torch

    def forward(presence: torch.Tensor) -> torch.Tensor:
        rows = (presence > 0.5).cpu().numpy()
        texts = [query.keep(row.tolist()) for row in rows]
        return torch.from_numpy(target.probabilities(texts))

    return forward


def _lime(query: Query, target: Target, budget: int, seed: int) -> np.ndarray:
    import torch
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr import Lime

    torch.manual_seed(seed)  # captum draws its perturbations from torch's generator
    n = len(query.words)
    lime = Lime(_presence_model(query, target), interpretable_model=SkLearnLinearRegression())
    attr = lime.attribute(
        torch.ones(1, n, dtype=torch.float64),
        baselines=0.0,
        feature_mask=torch.arange(n).unsqueeze(0),
        n_samples=max(budget, n + 1),
        perturbations_per_eval=max(budget, n + 1),
    )
    return np.asarray(attr[0].detach().numpy())


def _occlusion(query: Query, target: Target, budget: int, seed: int) -> np.ndarray:
    import torch
    from captum.attr import FeatureAblation

    n = len(query.words)
    ablation = FeatureAblation(_presence_model(query, target))
    attr = ablation.attribute(
        torch.ones(1, n, dtype=torch.float64),
        baselines=0.0,
        feature_mask=torch.arange(n).unsqueeze(0),
        perturbations_per_eval=n,
    )
    return np.asarray(attr[0].detach().numpy())


_METHODS: dict[str, Callable[[Query, Target, int, int], np.ndarray]] = {
    "shap": _shap,
    "ig": _ig,
    "lime": _lime,
    "occlusion": _occlusion,
}


def prefetch(method: str, query: Query) -> list[str]:
    """Texts ``method`` will score for ``query`` whatever the label (occlusion: each word left out),
    so the first model call of an explanation can score them with the query itself."""
    if method != "occlusion" or len(query.words) < 2:
        return []
    n = len(query.words)
    return [query.keep([j != i for j in range(n)]) for i in range(n)]


def warm_up(method: str) -> None:
    """Import the method's library and compile what it compiles on first use, without a model: shap
    JIT-compiles its partition code with numba (about 4 s on this machine's first explanation)."""
    if method == "shap":
        shap = _import_shap()
        masker = shap.maskers.Text(_WordTokenizer(), mask_token=_gap_for(""), collapse_mask_token=False)
        explainer = shap.explainers.Partition(lambda texts: np.zeros(len(texts)), masker)
        explainer(["warm up the explainer"], max_evals=16, silent=True)
    else:
        import captum.attr  # noqa: F401  # the other three are Captum's


def explains_members(method: str) -> bool:
    """Whether ``method`` explains a fused version's fused answer (``ig``: the encoder member's)."""
    return method != "ig"
