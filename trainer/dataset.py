"""The unit of training data: one normalised query, its weak label and how much to trust it."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    weight: float = 1.0  # the label's confidence: scales this example's share of the loss
    gold: bool = False  # a human-verified label (early stopping prefers these rows)


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    """How many examples carry each label."""
    return dict(Counter(e.label for e in examples))
