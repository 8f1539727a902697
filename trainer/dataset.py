"""The unit of training data: one normalised query, its weak label and how much to trust it."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """``label`` is the top label (what hard training, metrics and the baselines use); ``target``
    the label distribution soft training learns instead, as sorted (label, probability) pairs."""

    text: str
    label: str
    weight: float = 1.0  # scales this example's share of the loss (the label policy's trust in it)
    gold: bool = False  # a human-verified label (early stopping prefers these rows)
    target: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True)
class HeadRows:
    """The rows of one extra label dimension (``store.dimensions``, e.g. the intent type), trained
    as a second head on the shared encoder: ``Example.label`` is that dimension's label."""

    dimension: str
    labels: list[str]
    train: list[Example]
    val: list[Example]


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    """How many examples carry each label."""
    return dict(Counter(e.label for e in examples))
