"""Baselines every candidate adapter is measured against, trained on the same training split.

- **TF-IDF + logistic regression** (word 1-2-grams and character 2-5-grams within words; defined
  once, as the fused model's lexical member, :mod:`trainer.members.lexical`): seconds to train, no
  encoder. If LoRA cannot beat it — especially on the tail, where a query's words were
  rarely seen in training and a pretrained encoder should generalise — the encoder is not earning
  its cost.
- **Full fine-tuning** of the same encoder (every weight trains): the quality LoRA is trying to
  reach at a fraction of the trainable parameters and time. Slow on a CPU, hence optional.

Both are returned as :class:`trainer.evaluation.Predictor` objects and scored by the same
:func:`trainer.evaluation.evaluate` as the candidate, on the same rows.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.classifier import IntentClassifier, LoadedModel
from trainer.dataset import Example
from trainer.finetune import FitResult, fit
from trainer.inputs import InputFormat
from trainer.members.lexical import LexicalModel, train_lexical
from trainer.settings import TrainSettings

# The lexical member of a fused model is the TF-IDF baseline: one pipeline, defined there.
TfidfBaseline = LexicalModel
train_tfidf = train_lexical


@dataclass(frozen=True)
class TrainedModel:
    """An in-memory fine-tuned classifier and its training metrics (never saved as an artifact)."""

    predictor: LoadedModel
    metrics: dict[str, Any]


def as_predictor(model: IntentClassifier, tokenizer: Any, labels: list[str], max_length: int) -> LoadedModel:
    """Wrap a freshly trained in-memory classifier like a served one, for :func:`evaluate`."""
    device = next(model.parameters()).device
    model.eval()
    return LoadedModel(model, tokenizer, {"labels": list(labels), "max_length": max_length}, device)


def from_fit(result: FitResult, labels: list[str], max_length: int) -> TrainedModel:
    return TrainedModel(as_predictor(result.model, result.tokenizer, labels, max_length), result.metrics)


def train_full_finetune(
    train: list[Example],
    val: list[Example],
    labels: list[str],
    base_dir: Path,
    settings: TrainSettings,
    max_length: int,
    *,
    progress: bool = True,
    input_format: InputFormat | None = None,
) -> TrainedModel:
    """Fine-tune every encoder weight with the same loop, data and schedule as the LoRA candidate,
    at ``settings.gate.full_ft_learning_rate`` (LoRA's rate would wreck pretrained weights).
    ``input_format``: the candidate's template and pooling, so the comparison is like for like."""
    full = settings.model_copy(update={"learning_rate": settings.gate.full_ft_learning_rate})
    result = fit(
        train,
        val,
        labels,
        base_dir,
        full,
        max_length,
        progress=progress,
        full_finetune=True,
        input_format=input_format,
    )
    trained = from_fit(result, labels, max_length)
    trained.metrics["method"] = "full_finetune"
    return trained


@dataclass(frozen=True)
class LabelPriorBaseline:
    """Answers every query with the training rows' label mix (weighted like training): what a model
    that learned nothing from the text scores. Its accuracy is the top label's share, so on a
    lopsided label set it is a bar a useless model may clear by the absolute floors alone."""

    labels: list[str]
    prior: np.ndarray
    metrics: dict[str, Any]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.tile(self.prior, (len(texts), 1))


def train_label_prior(train: list[Example], labels: list[str]) -> LabelPriorBaseline:
    """The weighted label mix of ``train`` over ``labels`` (labels without rows get none)."""
    index = {label: i for i, label in enumerate(labels)}
    mix = np.zeros(len(labels), dtype=np.float64)
    for e in train:
        if e.label in index:
            mix[index[e.label]] += max(e.weight, 0.0)
    total = mix.sum()
    prior = mix / total if total > 0 else np.full(len(labels), 1.0 / max(len(labels), 1))
    return LabelPriorBaseline(list(labels), prior, {"method": "label_prior", "train_examples": len(train)})
