"""Baselines every candidate adapter is measured against, trained on the same training split.

- **TF-IDF + logistic regression** (word 1-2-grams and character 2-5-grams within words): seconds
  to train, no encoder. If LoRA cannot beat it — especially on the tail, where a query's words were
  rarely seen in training and a pretrained encoder should generalise — the encoder is not earning
  its cost.
- **Full fine-tuning** of the same encoder (every weight trains): the quality LoRA is trying to
  reach at a fraction of the trainable parameters and time. Slow on a CPU, hence optional.

Both are returned as :class:`trainer.evaluation.Predictor` objects and scored by the same
:func:`trainer.evaluation.evaluate` as the candidate, on the same rows.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from trainer.classifier import IntentClassifier, LoadedModel
from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError
from trainer.finetune import FitResult, fit
from trainer.inputs import InputFormat
from trainer.settings import TrainSettings


class TfidfBaseline:
    """A fitted TF-IDF + logistic-regression pipeline speaking the ``Predictor`` protocol."""

    def __init__(self, pipeline: Pipeline, labels: list[str], metrics: dict[str, Any]) -> None:
        self._pipeline = pipeline
        self._labels = list(labels)
        self.metrics = metrics
        classes = [str(c) for c in pipeline.classes_]
        # predict_proba columns follow ``classes_``; map them onto ``labels`` (absent ones get 0).
        self._columns = [classes.index(label) if label in classes else -1 for label in self._labels]

    @property
    def labels(self) -> list[str]:
        return self._labels

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self._labels)), dtype=np.float32)
        raw = self._pipeline.predict_proba(list(texts))
        out = np.zeros((len(texts), len(self._labels)), dtype=np.float32)
        for j, col in enumerate(self._columns):
            if col >= 0:
                out[:, j] = raw[:, col]
        return out


def train_tfidf(train: list[Example], labels: list[str], *, seed: int = 13, c: float = 10.0) -> TfidfBaseline:
    """Fit the TF-IDF baseline; example weights (label confidence) weight the loss as in LoRA training."""
    if len({e.label for e in train}) < 2:
        raise NotEnoughDataError("the TF-IDF baseline needs training examples of at least 2 labels")
    started = time.monotonic()
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1)),
        ]
    )
    pipeline = Pipeline(
        [("features", features), ("clf", LogisticRegression(C=c, max_iter=2000, random_state=seed))]
    )
    weights = np.asarray([max(e.weight, 0.0) for e in train], dtype=np.float64)
    pipeline.fit([e.text for e in train], [e.label for e in train], clf__sample_weight=weights)
    wall = time.monotonic() - started
    metrics = {
        "method": "tfidf_logreg",
        "train_examples": len(train),
        "wall_s": round(wall, 3),
        "samples_per_s": round(len(train) / wall, 2) if wall > 0 else None,
    }
    return TfidfBaseline(pipeline, labels, metrics)


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
