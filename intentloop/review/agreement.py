"""How much reviewers agree: Cohen's kappa per pair of reviewers and over the first two per query.

Raw agreement flatters a skewed label set (two reviewers who both answer "fashion" to everything
agree 90% on a 90% fashion queue); kappa discounts the agreement their own label frequencies would
give by chance. Pure Python on purpose: the dashboard shows it and must not load the ML stack
(``tests/unit/test_review_agreement.py`` checks it against scikit-learn's ``cohen_kappa_score``).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations


def kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two reviewers' labels on the same items; ``None`` where it is undefined
    (no items, or chance agreement is certain: both always gave one and the same label)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels against {len(b)}: kappa compares the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[label] * cb[label] for label in ca) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class PairAgreement:
    """Two reviewers over the queries both labelled (skips are not labels)."""

    first: str
    second: str
    items: int
    agreement: float  # share of those queries given the same label
    kappa: float | None


@dataclass(frozen=True)
class Agreement:
    """Every pair of reviewers, and the pooled figure: the first two reviewers (by name) of each
    double-reviewed query, whoever they are."""

    pairs: list[PairAgreement]
    items: int
    agreement: float | None
    kappa: float | None


def agreement(reviewed: Sequence[tuple[str, dict[str, str]]]) -> Agreement:
    """Agreement figures of ``(query, {reviewer: label})`` rows (``store.review.double_reviewed``)."""
    by_pair: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    pooled_a: list[str] = []
    pooled_b: list[str] = []
    for _query, labels in reviewed:
        names = sorted(labels)
        for x, y in combinations(names, 2):
            left, right = by_pair.setdefault((x, y), ([], []))
            left.append(labels[x])
            right.append(labels[y])
        if len(names) >= 2:
            pooled_a.append(labels[names[0]])
            pooled_b.append(labels[names[1]])
    pairs = [
        PairAgreement(x, y, len(la), _share(la, lb) or 0.0, kappa(la, lb))
        for (x, y), (la, lb) in sorted(by_pair.items())
    ]
    return Agreement(pairs, len(pooled_a), _share(pooled_a, pooled_b), kappa(pooled_a, pooled_b))


def _share(a: Sequence[str], b: Sequence[str]) -> float | None:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None
