"""Deterministic split by query text: a query is in validation forever, whichever refresh runs.

Hashing the normalised text (rather than shuffling) means the same query never moves between
train and validation across nightly refreshes, so validation scores are never inflated by leakage.
"""

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

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
