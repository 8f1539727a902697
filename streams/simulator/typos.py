"""Misspellings as shoppers make them: one slip per query, on a QWERTY keyboard.

The kinds follow the classic taxonomy of single-error misspellings (Damerau 1964: substitution,
deletion, insertion, transposition; most real misspellings are one of these), with substitutions by
a key next to the intended one, insertions as a doubled letter, plus the two spacing slips of query
logs (a word split in two, two words run together) and a brand's common misspelling ("addidas",
"sketchers"). The first letter of a word is kept: people rarely get it wrong. Everything is drawn
from the ``rng`` passed in, so a seed fixes every typo.
"""

import random
import re
from collections.abc import Callable

from streams.simulator.vocabulary import BRAND_MISSPELLINGS

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_BRAND_SHARE = 0.5  # chance a query naming a brand with a known misspelling gets that one
_BRANDS = tuple(
    (re.compile(rf"(?<!\S){re.escape(b)}(?!\S)"), wrong) for b, wrong in BRAND_MISSPELLINGS.items()
)


def _adjacent_keys() -> dict[str, str]:
    """Each letter's neighbours on a QWERTY keyboard: left and right, and the keys above and below."""
    near: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for i, key in enumerate(row):
            keys = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            # Each row sits about half a key right of the one above it.
            if r > 0:
                keys += [_ROWS[r - 1][j] for j in (i, i + 1) if j < len(_ROWS[r - 1])]
            if r + 1 < len(_ROWS):
                keys += [_ROWS[r + 1][j] for j in (i - 1, i) if 0 <= j < len(_ROWS[r + 1])]
            near[key] = "".join(keys)
    return near


ADJACENT = _adjacent_keys()


def _adjacent(rng: random.Random, word: str) -> str:
    letters = [i for i in range(1, len(word)) if word[i] in ADJACENT]
    if not letters:
        return word
    i = rng.choice(letters)
    return word[:i] + rng.choice(ADJACENT[word[i]]) + word[i + 1 :]


def _drop(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + word[i + 1 :]


def _double(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    return word[: i + 1] + word[i:]


def _swap(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _split(rng: random.Random, word: str) -> str:
    i = rng.randrange(2, len(word) - 1)
    return f"{word[:i]} {word[i:]}"


_IN_WORD: tuple[Callable[[random.Random, str], str], ...] = (_adjacent, _drop, _double, _swap, _split)


def misspell(rng: random.Random, text: str) -> str:
    """``text`` with one slip; always different from ``text`` when it has a word of 3+ characters
    or two words (otherwise a letter is doubled)."""
    if rng.random() < _BRAND_SHARE:
        for pattern, wrong in _BRANDS:
            if pattern.search(text):
                return pattern.sub(rng.choice(wrong), text, count=1)
    words = text.split(" ")
    k = rng.randrange(len(_IN_WORD) + (len(words) > 1))
    if k == len(_IN_WORD):  # two words run together
        i = rng.randrange(len(words) - 1)
        return " ".join([*words[:i], words[i] + words[i + 1], *words[i + 2 :]])
    long_words = [i for i, w in enumerate(words) if len(w) >= 3]
    if not long_words:
        return text + text[-1]
    i = rng.choice(long_words)
    slip = _IN_WORD[k] if len(words[i]) >= 4 or _IN_WORD[k] is not _split else _drop
    slipped = slip(rng, words[i])
    if slipped == words[i]:  # a swap of equal letters, a key with no neighbour: drop one instead
        slipped = _drop(rng, words[i])
    return " ".join([*words[:i], slipped, *words[i + 1 :]])
