"""Deterministic split by query text: a query is in validation forever, whichever refresh runs.

Hashing the normalised text (rather than shuffling) means the same query never moves between
train and validation across nightly refreshes, so validation scores are never inflated by leakage.
"""

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from store.labels import LabelledQuery

T = TypeVar("T")

_BUCKETS = 10_000


def is_validation(text: str, val_fraction: float, salt: str = "") -> bool:
    digest = hashlib.blake2b(f"{salt}{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS < val_fraction * _BUCKETS


def split_by_query(
    items: Sequence[T], key: Callable[[T], str], val_fraction: float
) -> tuple[list[T], list[T]]:
    train: list[T] = []
    val: list[T] = []
    for item in items:
        (val if is_validation(key(item), val_fraction) else train).append(item)
    return train, val


def held_out_rows(
    val_rows: Sequence["LabelledQuery"],
    gold: Mapping[str, str],
    val_fraction: float,
    eval_gold: Collection[str] = (),
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The rows candidate and champion are scored on, and how many labels came from gold.

    The validation split's queries with their weak labels, overridden by gold where a query has a
    gold label, plus every gold query that falls in the validation bucket and every ``eval_gold``
    query wherever it falls (never trained on). ``train`` gold queries in the training bucket are
    left out: the candidate trained on them.
    """
    rows = {r.norm_text: r.label for r in val_rows}
    from_gold = 0
    for query, label in gold.items():
        if query in eval_gold or is_validation(query, val_fraction):
            rows[query] = label
            from_gold += 1
    ordered = sorted(rows.items())
    return ordered, {"rows": len(ordered), "gold": from_gold, "weak": len(ordered) - from_gold}
