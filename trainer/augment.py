"""Misspelt copies of training queries, so the adapter learns that "hedphones" still means headphones.

Real query logs misspell a tenth or more of their queries (Cucerzan & Brill 2004 report 10-15% of web
queries), and most misspellings are one edit away from the intended word (Damerau 1964). A
sub-word tokenizer splits a misspelt word into pieces the encoder rarely saw in pre-training, so an
adapter trained only on clean queries scores them poorly, while a character n-gram model barely
notices. Training on a noisy copy of a share of the rows is the standard remedy (Belinkov & Bisk
2018; Karpukhin et al. 2019, "Training on synthetic noise improves robustness to natural noise").

The noise here is deliberately generic, not the simulator's keyboard model: one random edit
(deletion, transposition, substitution by any letter, a doubled letter) in a word of four or more
Latin letters, or two words run together. Words in other scripts (Chinese, Cyrillic...) and digits
are never touched: a random edit there is not how those shoppers err (pinyin input picks wrong
homophones), so queries without a Latin word get no copy. The first letter of a word is kept.
"""

import random
from collections.abc import Callable
from dataclasses import replace

from trainer.dataset import Example

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_MIN_WORD = 4  # shorter words are often brands, sizes or units whose misspelling is another word


def _eligible(word: str) -> bool:
    return len(word) >= _MIN_WORD and word.isascii() and word.isalpha()


def _delete(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + word[i + 1 :]


def _double(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    return word[: i + 1] + word[i:]


def _transpose(rng: random.Random, word: str) -> str:
    pairs = [i for i in range(1, len(word) - 1) if word[i] != word[i + 1]]  # "ss" swapped is no slip
    if not pairs:
        return _double(rng, word)
    i = rng.choice(pairs)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _substitute(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    letter = rng.choice(_LETTERS.replace(word[i].lower(), ""))
    return word[:i] + letter + word[i + 1 :]


_EDITS: tuple[Callable[[random.Random, str], str], ...] = (_delete, _transpose, _substitute, _double)
_JOIN_SHARE = 0.1  # of the copies of multi-word queries: two words run together instead of an edit


def misspell(rng: random.Random, text: str) -> str | None:
    """``text`` with one slip in a Latin word, or ``None`` when it has no word to misspell."""
    words = text.split(" ")
    eligible = [i for i, w in enumerate(words) if _eligible(w)]
    if not eligible:
        return None
    if len(words) > 1 and rng.random() < _JOIN_SHARE:
        i = rng.randrange(len(words) - 1)
        return " ".join([*words[:i], words[i] + words[i + 1], *words[i + 2 :]])
    i = rng.choice(eligible)
    words[i] = rng.choice(_EDITS)(rng, words[i])
    return " ".join(words)


def with_typos(examples: list[Example], share: float, seed: int) -> list[Example]:
    """``examples`` followed by misspelt copies of about ``share`` of them (same label, target and
    weight). Seeded, so a run's rows and weights stay reproducible; ``share`` 0 returns the list."""
    if share <= 0:
        return examples
    rng = random.Random(seed)
    copies: list[Example] = []
    for e in examples:
        if rng.random() >= share:
            continue
        noisy = misspell(rng, e.text)
        if noisy is not None and noisy != e.text:
            copies.append(replace(e, text=noisy))
    return examples + copies
