"""What a shopper actually types for the text the simulator drew: often not the catalogue's words.

Per search (``SimConfig.realism`` on), one :class:`Phraser` draws, in this order and always the same
three draws first: a shape, whether the product is named by an alternative name, whether the query
is misspelt; then what the shape needs. The shapes, exclusive, and the text they make:

- plain: the drawn catalogue text ("running shoes for men");
- question: a question or long natural-language query ("what running shoes should i buy");
- brand only: one of the intent's brands ("sony"), ambiguous across the brand's leaves;
- model number: a model or unit with the name ("pixel 8 phone case", "27in computer monitor");
- attribute first: the attribute before the name ("men running shoes");
- other language: the name in Spanish, German, French or Chinese ("laufschuhe", "跑步鞋").

Tags (``Simulation.kinds``, normalised text -> tags; untagged texts are absent):

- ``paraphrase``: names the product by a colloquial or regional name ("sneakers", "phone cover");
- ``unseen_phrasing``: that name is one of the leaf's held-out phrasings (:func:`held_out_phrasings`):
  a benchmark keeps these texts out of training, so no training query of the intent used the word;
  a misspelt held-out phrasing keeps the tag (it came from one);
- ``typo``: misspelt (:mod:`streams.simulator.typos`);
- ``question``, ``brand_only``, ``model_number``, ``attribute_first``, ``other_language``: the shape.

Every phrased text votes for its truth with the leaf the shopper meant (:class:`Phrased.meant`); a
text that several leaves produced ("sony") is ambiguous and its truth is the majority of its votes.
"""

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streams.simulator.realism import ShopperRealism
from streams.simulator.typos import misspell
from streams.simulator.vocabulary import FOREIGN_WORDS, PHRASINGS, PRICES, QUESTION_TEMPLATES, Leaf
from streams.simulator.world import QueryText

PARAPHRASE, UNSEEN_PHRASING, TYPO = "paraphrase", "unseen_phrasing", "typo"
QUESTION, BRAND_ONLY, MODEL_NUMBER = "question", "brand_only", "model_number"
ATTRIBUTE_FIRST, OTHER_LANGUAGE = "attribute_first", "other_language"
TAGS = (
    UNSEEN_PHRASING,
    TYPO,
    QUESTION,
    PARAPHRASE,
    BRAND_ONLY,
    MODEL_NUMBER,
    OTHER_LANGUAGE,
    ATTRIBUTE_FIRST,
)
# What a lexical engine matches badly: the engine shows fewer relevant products for these.
HARD_FOR_ENGINE = frozenset({TYPO, PARAPHRASE, QUESTION, BRAND_ONLY, OTHER_LANGUAGE})
LANGUAGES = ("es", "de", "fr", "zh")
_FOREIGN_WORD_SHARE = 0.5  # other-language queries that add "cheap", "best", ... in that language
_LEADING_SMALL_WORDS = ("for ", "with ", "in ")


def _stable_unit(*parts: str) -> float:
    """A number in [0, 1) fixed by ``parts`` alone: not Python's salted ``hash``, not an rng draw."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def held_out_phrasings(
    path: str, synonyms: Sequence[str], share: float, known: Iterable[str] = ()
) -> frozenset[str]:
    """The ``share`` of a leaf's alternative names kept out of training (at least one when positive,
    never all), in the order of a stable hash of ``(path, phrase)``.

    Only a name with a word of its own can be held out: one that neither ``known`` (the leaf's other
    words: catalogue, brands, models, question templates) nor the leaf's other names contain. Else
    a training query would already use every word of it ("ear buds" beside "in ear headphones").
    """
    if share <= 0 or len(synonyms) < 2:
        return frozenset()
    k = min(len(synonyms) - 1, max(1, round(share * len(synonyms))))
    known = set(known)
    others = {name: {w for o in synonyms if o != name for w in o.split()} for name in synonyms}
    candidates = [s for s in synonyms if set(s.split()) - others[s] - known]
    return frozenset(sorted(candidates, key=lambda s: _stable_unit(path, s))[:k])


@dataclass(frozen=True)
class Phrased:
    """One search's text as typed (before case and whitespace variants) and what it is."""

    text: str
    tags: frozenset[str]
    meant: int  # leaf of the text the shopper meant to type: the text's vote for its truth
    ambiguous: bool  # a slip on an ambiguous catalogue text ("cheap aple") stays ambiguous


@dataclass(frozen=True)
class _Words:
    """A leaf's words for phrasing, lower case."""

    nouns: tuple[str, ...]  # longest first, to find the catalogue name inside a text
    synonyms: tuple[str, ...]
    held_out: frozenset[str]
    adjectives: tuple[str, ...]
    modifiers: tuple[str, ...]
    brands: tuple[str, ...]
    models: tuple[str, ...]
    translations: tuple[str, ...]  # in LANGUAGES order

    @classmethod
    def of(cls, leaf: Leaf, held_out_share: float) -> "_Words":
        extra = PHRASINGS[leaf.path]
        return cls(
            tuple(sorted(leaf.nouns, key=len, reverse=True)),
            tuple(extra["synonyms"]),
            held_out_phrasings(leaf.path, extra["synonyms"], held_out_share, _known_words(leaf)),
            leaf.adjectives,
            leaf.modifiers,
            tuple(b.lower() for b in leaf.brands),
            tuple(extra["models"]),
            tuple(extra["translations"][lang] for lang in LANGUAGES),
        )

    def uses_held_out(self, text: str) -> bool:
        padded = f" {text} "
        return any(f" {name} " in padded for name in self.held_out)

    def noun_in(self, text: str) -> str | None:
        padded = f" {text} "
        return next((n for n in self.nouns if f" {n} " in padded), None)


def _known_words(leaf: Leaf) -> set[str]:
    """Every word a training query of ``leaf`` may use without an alternative name (translations
    included: French "ordinateur portable" has the English "portable")."""
    extra = PHRASINGS[leaf.path]
    phrases = [
        *leaf.nouns,
        *leaf.adjectives,
        *leaf.modifiers,
        *extra["models"],
        *extra["translations"].values(),
    ]
    phrases += [b.lower() for b in leaf.brands]
    phrases += [t.replace("{", " {").replace("}", "} ") for t in QUESTION_TEMPLATES]
    return {w for p in phrases for w in p.split() if not w.startswith("{")}


def _attribute(modifier: str) -> str:
    """``"for men"`` -> ``"men"``: how an attribute reads in front of the name."""
    for small in _LEADING_SMALL_WORDS:
        if modifier.startswith(small):
            return modifier[len(small) :]
    return modifier


class Phraser:
    """Turns each drawn search into what the shopper types; its own rng, so the easy shop's draws
    (``realism=None``) are untouched and a seed still fixes everything."""

    def __init__(self, realism: ShopperRealism, leaves: Sequence[Leaf], seed: int) -> None:
        self.realism = realism
        self.rng = random.Random(f"shopper-realism:{seed}")
        self.words = [_Words.of(leaf, realism.held_out_share) for leaf in leaves]
        self.cuts = realism.shape_cuts

    def phrase(self, entry: QueryText, intent: int) -> Phrased | None:
        """What is typed for ``entry`` by a shopper meaning leaf ``intent``; None: the catalogue text."""
        rng, cfg = self.rng, self.realism
        u, para, typo = rng.random(), rng.random() < cfg.paraphrase_rate, rng.random() < cfg.typo_rate
        words = self.words[intent]
        tags: set[str] = set()
        meant, ambiguous = intent, False
        q, b, m, a, o = self.cuts
        if u < q:
            text = self._question(words, self._name(words, para, tags))
            tags.add(QUESTION)
        elif u < b:
            text = rng.choice(words.brands)
            tags.add(BRAND_ONLY)
        elif u < m:
            text = self._model(words, self._name(words, para, tags))
            tags.add(MODEL_NUMBER)
        elif u < a:
            text = self._attribute_first(entry, words, para, tags)
            tags.add(ATTRIBUTE_FIRST)
        elif u < o:
            text = self._other_language(words)
            typo = typo and not _cjk(text)
            tags.add(OTHER_LANGUAGE)
        elif para:
            text = self._paraphrase(entry, words, tags)
        elif typo:
            text, meant, ambiguous = entry.text, entry.truth, entry.ambiguous
        else:
            return None
        if typo:
            text = misspell(rng, text)
            tags.add(TYPO)
            if self.words[meant].uses_held_out(text):  # "face wash" run together: "facewash"
                tags.add(UNSEEN_PHRASING)
        return Phrased(text, frozenset(tags), meant, ambiguous)

    def _name(self, words: _Words, para: bool, tags: set[str]) -> str:
        """The product's name: an alternative one (tagged) when ``para``, else a catalogue noun."""
        if not para:
            return self.rng.choice(words.nouns)
        name = self.rng.choice(words.synonyms)
        tags.add(PARAPHRASE)
        if name in words.held_out:
            tags.add(UNSEEN_PHRASING)
        return name

    def _paraphrase(self, entry: QueryText, words: _Words, tags: set[str]) -> str:
        """The catalogue text with its name replaced ("sneakers for men"); just the name when the
        text has none of the leaf's nouns (an ambiguous text such as "cheap apple")."""
        noun = words.noun_in(entry.text) if not entry.ambiguous else None
        name = self._name(words, True, tags)
        if noun is None:
            return name
        return f" {entry.text} ".replace(f" {noun} ", f" {name} ", 1).strip()

    def _question(self, words: _Words, name: str) -> str:
        rng = self.rng
        template = rng.choice(QUESTION_TEMPLATES)
        filled = template.format(
            name=name,
            adj=rng.choice(words.adjectives),
            mod=rng.choice(words.modifiers),
            brand=rng.choice(words.brands),
            model=rng.choice(words.models),
            price=rng.choice(PRICES),
        )
        return " ".join(filled.split())

    def _model(self, words: _Words, name: str) -> str:
        rng = self.rng
        model = rng.choice(words.models)
        k = rng.randrange(3)
        if k == 0:
            return f"{model} {name}"
        if k == 1:
            return f"{name} {model}"
        return f"{rng.choice(words.brands)} {name} {model}"

    def _attribute_first(self, entry: QueryText, words: _Words, para: bool, tags: set[str]) -> str:
        """The attribute before the name: the text's own modifier moved to the front, or one of the
        leaf's ("men running shoes", "16gb ram laptop")."""
        noun = words.noun_in(entry.text) if not entry.ambiguous else None
        name = self._name(words, para, tags)
        if noun is None:
            return f"{_attribute(self.rng.choice(words.modifiers))} {name}"
        before, _, after = f" {entry.text} ".partition(f" {noun} ")
        attribute = _attribute(after.strip() or self.rng.choice(words.modifiers))
        return " ".join(f"{attribute} {before} {name}".split())

    def _other_language(self, words: _Words) -> str:
        rng = self.rng
        i = rng.randrange(len(LANGUAGES))
        text, lang = words.translations[i], LANGUAGES[i]
        if rng.random() >= _FOREIGN_WORD_SHARE:
            return text
        word = rng.choice(FOREIGN_WORDS[lang])
        if lang == "zh":
            return text + word  # no spaces between Chinese words
        return f"{word} {text}" if lang == "de" else f"{text} {word}"


def _cjk(text: str) -> bool:
    """Chinese text: no typo model here for it (the QWERTY slips make no sense on it)."""
    return any("\u4e00" <= c <= "\u9fff" for c in text)
