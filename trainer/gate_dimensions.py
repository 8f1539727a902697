"""The gate for the other label dimensions: each extra head judged on its own held-out rows.

A multi-head candidate is one version: it is promoted, served and rolled back whole, so the gate
judges every head before it blesses any. For each dimension configured (the intent type), on that
dimension's held-out rows (the validation bucket of the latest aggregation's labels, gold overriding
them, and every eval gold label of the dimension), the head must beat the dimension's label prior
(what learning nothing from the text scores) and must not regress against the champion's head of
the same dimension (:func:`trainer.gate_rules.dimension_checks`). A candidate that lacks a head its
champion serves would silently take a dimension away from the search team: that is a failed check.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from store.db import Database
from store.labels import distribution_snapshot, gold_by_purpose
from trainer.baselines import LabelPriorBaseline, train_label_prior
from trainer.evaluation import FrequencySlices, evaluate
from trainer.settings import TrainSettings
from trainer.snapshot import to_example
from trainer.split import held_out_rows, is_validation

Report = dict[str, Any]


class MultiHead(Protocol):
    """A loaded model that may carry extra heads (``trainer.classifier.LoadedModel``)."""

    @property
    def head_labels(self) -> dict[str, list[str]]: ...

    def predict_heads(self, texts: list[str]) -> dict[str, np.ndarray]: ...


class HeadPredictor:
    """One extra head of a loaded model as a plain predictor (what ``evaluate`` scores)."""

    def __init__(self, model: MultiHead, dimension: str) -> None:
        self.model, self.dimension = model, dimension
        self.labels = list(model.head_labels[dimension])

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_heads(list(texts))[self.dimension]


@dataclass(frozen=True)
class DimensionHeldOut:
    """One dimension's held-out rows and the label-prior baseline trained on its training rows."""

    dimension: str
    rows: list[tuple[str, str]]
    counts: Mapping[str, int]
    bounds: FrequencySlices
    kinds: Mapping[str, Collection[str]] | None
    prior: LabelPriorBaseline
    eval_set: dict[str, Any]

    def score(self, model: MultiHead) -> Report | None:
        """The head's report, or ``None`` when the model has no head for this dimension."""
        if self.dimension not in model.head_labels:
            return None
        return evaluate(HeadPredictor(model, self.dimension), self.rows, self.counts, self.bounds, self.kinds)

    def score_prior(self) -> Report:
        return evaluate(self.prior, self.rows, self.counts, self.bounds, self.kinds)


def dimension_held_out(
    db: Database,
    train: TrainSettings,
    dimension: str,
    counts: Mapping[str, int],
    bounds: FrequencySlices,
    kinds: Mapping[str, Collection[str]] | None = None,
) -> DimensionHeldOut | None:
    """The held-out set of ``dimension`` (see the module docstring); ``None`` without labels."""
    with db.session() as session:
        rows = distribution_snapshot(session, dimension=dimension)
        gold = gold_by_purpose(session, dimension)
    frac = train.val_fraction
    val_rows = [r for r in rows if is_validation(r.norm_text, frac) and r.norm_text not in gold.eval]
    held, composition = held_out_rows(val_rows, gold.all, frac, set(gold.eval))
    if not held:
        return None
    training = [
        to_example(r, train)
        for r in rows
        if not is_validation(r.norm_text, frac) and r.norm_text not in gold.all
    ]
    labels = sorted({*(label for _, label in held), *(e.label for e in training)})
    prior = train_label_prior(training, labels)
    return DimensionHeldOut(
        dimension, held, counts, bounds, kinds, prior, {**composition, "train_rows": len(training)}
    )
