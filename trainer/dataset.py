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


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    """How many examples carry each label."""
    return dict(Counter(e.label for e in examples))
