"""The simulated shop's taxonomy and words: real English, so models learn something meaningful.

The words are data, not code: ``vocabulary.json`` next to this module (package data, so an installed
wheel has it). Its sections:

- ``taxonomy``: top-level category -> subcategory -> ``brands`` and ``leaves``; each leaf (the third
  path segment) has ``nouns``, ``adjectives`` and ``modifiers``. A product of a leaf is
  ``brand + adjective + noun [+ modifier]``; query texts are combinations of the same words.
- ``ambiguous``: words shoppers type meaning products of different top-level categories ("apple":
  fruit or a phone), each with the leaf paths it may mean.
- ``neutral_prefixes`` / ``neutral_suffixes``: words that keep an ambiguous query ambiguous
  ("cheap apple", "mouse deals"); ``generic_prefixes``: words any product query may start with.
- ``locales``: the shoppers' locales and their shares; ``colors``: what product titles may end with.
- What realistic shoppers type beyond the catalogue (``streams.simulator.phrasing``): ``phrasings``,
  per leaf path its colloquial and regional ``synonyms`` (British and American), ``models`` (model
  numbers and units) and ``translations`` (es, de, fr, zh); ``brand_misspellings`` (how shoppers
  misspell a brand, lower case); ``question_templates`` (``{name}``, ``{adj}``, ``{mod}``,
  ``{brand}``, ``{model}``, ``{price}`` slots); ``prices``; ``foreign_words`` per language.

File order is meaningful: the simulator draws from these lists by index, so reordering a list
changes every simulated event for a seed.
"""

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, TypedDict


class LeafWords(TypedDict):
    """The words of one leaf category."""

    nouns: list[str]
    adjectives: list[str]
    modifiers: list[str]


class LeafPhrasings(TypedDict):
    """What shoppers call a leaf's products beyond the catalogue's words."""

    synonyms: list[str]
    models: list[str]
    translations: dict[str, str]


class Subcategory(TypedDict):
    """A second-level category: brands shared by its leaves, and the leaves."""

    brands: list[str]
    leaves: dict[str, LeafWords]


def _load() -> dict[str, Any]:
    return json.loads(files("streams.simulator").joinpath("vocabulary.json").read_text(encoding="utf-8"))


_DATA = _load()
TAXONOMY: dict[str, dict[str, Subcategory]] = _DATA["taxonomy"]
AMBIGUOUS: dict[str, tuple[str, ...]] = {term: tuple(paths) for term, paths in _DATA["ambiguous"].items()}
NEUTRAL_PREFIXES: tuple[str, ...] = tuple(_DATA["neutral_prefixes"])
NEUTRAL_SUFFIXES: tuple[str, ...] = tuple(_DATA["neutral_suffixes"])
GENERIC_PREFIXES: tuple[str, ...] = tuple(_DATA["generic_prefixes"])
LOCALES: tuple[tuple[str, float], ...] = tuple(_DATA["locales"].items())
COLORS: tuple[str, ...] = tuple(_DATA["colors"])
PHRASINGS: dict[str, LeafPhrasings] = _DATA["phrasings"]
BRAND_MISSPELLINGS: dict[str, tuple[str, ...]] = {b: tuple(v) for b, v in _DATA["brand_misspellings"].items()}
QUESTION_TEMPLATES: tuple[str, ...] = tuple(_DATA["question_templates"])
PRICES: tuple[str, ...] = tuple(_DATA["prices"])
FOREIGN_WORDS: dict[str, tuple[str, ...]] = {lang: tuple(v) for lang, v in _DATA["foreign_words"].items()}
_SMALL_WORDS = frozenset({"for", "with", "in", "of", "and", "a", "to", "on"})


@dataclass(frozen=True)
class Leaf:
    """A third-level category: the unit of ground-truth intent."""

    path: str
    top: str
    brands: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    modifiers: tuple[str, ...]


def leaves() -> list[Leaf]:
    """Every leaf of :data:`TAXONOMY`, in a stable order (the file's)."""
    return [
        Leaf(
            f"{top}/{sub}/{name}",
            top,
            tuple(category["brands"]),
            tuple(words["nouns"]),
            tuple(words["adjectives"]),
            tuple(words["modifiers"]),
        )
        for top, subs in TAXONOMY.items()
        for sub, category in subs.items()
        for name, words in category["leaves"].items()
    ]


def title_case(text: str) -> str:
    """``"pre seasoned cast iron skillet with lid"`` -> ``"Pre Seasoned Cast Iron Skillet with Lid"``."""
    words = text.split()
    return " ".join(
        w if (i and w in _SMALL_WORDS) or not w[:1].islower() else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


LEAVES: tuple[Leaf, ...] = tuple(leaves())
