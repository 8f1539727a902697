"""Typo copies of training rows: one edit in a Latin word, other scripts untouched, reproducible."""

import random

from trainer.augment import misspell, with_typos
from trainer.dataset import Example


def _distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def test_one_edit_keeps_first_letters_and_numbers() -> None:
    rng = random.Random(3)
    for _ in range(300):
        text = "wireless headphones 65in"
        noisy = misspell(rng, text)
        assert noisy is not None and noisy != text
        assert _distance(noisy, text) == 1  # one edit, or one space removed
        assert noisy.endswith("65in") or "65in" in noisy
        assert noisy[0] == "w"


def test_other_scripts_and_short_words_are_left_alone() -> None:
    rng = random.Random(0)
    assert misspell(rng, "蓝牙耳机") is None
    assert misspell(rng, "tv 4k") is None  # no word of 4+ letters
    for _ in range(100):
        noisy = misspell(rng, "蓝牙耳机 wireless")
        assert noisy is not None and noisy.startswith("蓝牙耳机")


def test_copies_are_appended_with_the_label_and_weight_and_reproducible() -> None:
    rows = [Example(f"running shoes size {i}", "shoes", weight=0.7) for i in range(1000)]
    rows.append(Example("蓝牙耳机", "audio"))
    out = with_typos(rows, 0.5, seed=4)
    assert out[: len(rows)] == rows
    copies = out[len(rows) :]
    assert 400 < len(copies) < 600
    assert all(
        c.label == "shoes" and c.weight == 0.7 and c.text not in {r.text for r in rows} for c in copies
    )
    assert with_typos(rows, 0.5, seed=4) == out
    assert with_typos(rows, 0.0, seed=4) is rows
