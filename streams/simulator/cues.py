"""What a shopper who is not buying types: a cue of the intent type around the product's name.

A browsing, asking or help search (``SimConfig.intent_types``) is first phrased as any search is
(:class:`streams.simulator.phrasing.Phraser`: paraphrases, typos and shapes at their rates, so the
tag shares do not move); then, at its type's cue rate, :class:`Purposes` wraps that text in a cue:
"best {q}", "how to clean {q}", "return {q}". The product stays named, so the category truth of
every text is still defined. A search in another language gets a cue in that language
("{q} vergleich", "如何清洗{q}"). Some cues are words the text labeling functions know ("best",
"how"), some are not ("top rated", "size guide"), and a text phrased as a question by the Phraser
already reads as asking: text evidence is deliberately imperfect.

The type is drawn per search from its own rng (seeded from the config's seed), so the main rng's
draws are those of a shop without intent types.
"""

import random

from streams.simulator.pages import HELP_TOPIC_INDEX
from streams.simulator.phrasing import LANGUAGES, OTHER_LANGUAGE, QUESTION, _cjk, _Words
from streams.simulator.purposes import IntentTypeMix
from streams.weak.intent_types import ASK, BROWSE, BUY, HELP

# {q}: the phrased text; {b1}, {b2}: two brands of the leaf. "en" plus LANGUAGES.
BROWSE_CUES: dict[str, tuple[str, ...]] = {
    "en": (
        *("best {q}", "{q} reviews", "compare {q}", "{b1} vs {b2} {q}", "top rated {q}"),
        *("{q} comparison", "{q} alternatives", "{q} review", "{b1} or {b2} {q}"),
    ),
    "es": ("mejores {q}", "comparativa {q}", "{q} opiniones"),
    "de": ("beste {q}", "{q} vergleich", "{q} testsieger"),
    "fr": ("meilleur {q}", "{q} comparatif", "{q} avis"),
    "zh": ("{q}哪个好", "{q}推荐", "{q}对比", "{q}评测"),
}
ASK_CUES: dict[str, tuple[str, ...]] = {
    "en": (
        *("how to clean {q}", "what size {q}", "how to choose {q}", "how to use {q}", "is {q} worth it"),
        *("{q} size guide", "{q} buying guide", "{q} care", "which {q} to get", "{q} how long"),
    ),
    "es": ("cómo elegir {q}", "qué {q} comprar", "cómo limpiar {q}"),
    "de": ("wie wähle ich {q}", "welche {q}", "{q} reinigen"),
    "fr": ("comment choisir {q}", "quelle taille {q}", "comment nettoyer {q}"),
    "zh": ("{q}怎么选", "如何清洗{q}", "{q}什么牌子好"),
}
# (template, help topic slug): the page the engine shows first for it.
HELP_CUES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (
        ("return {q}", "returns-and-refunds"),
        ("refund for broken {q}", "returns-and-refunds"),
        ("{q} return label", "returns-and-refunds"),
        ("where is my {q} order", "track-your-order"),
        ("track {q} order", "track-your-order"),
        ("{q} not delivered", "delivery"),
        ("{q} delivery late", "delivery"),
        ("{q} charged twice", "payment"),
        ("cancel {q} order", "cancel-an-order"),
        ("{q} warranty", "warranty-and-repairs"),
        ("{q} not working", "warranty-and-repairs"),
        ("{q} stopped working", "warranty-and-repairs"),
        ("{q} customer service", "contact-customer-service"),
        ("{q} complaint", "contact-customer-service"),
        ("{q} order login", "account-and-password"),
    ),
    "es": (("devolución {q}", "returns-and-refunds"), ("{q} roto", "warranty-and-repairs")),
    "de": (("{q} rücksendung", "returns-and-refunds"), ("{q} kaputt", "warranty-and-repairs")),
    "fr": (("retour {q}", "returns-and-refunds"), ("{q} cassé", "warranty-and-repairs")),
    "zh": (("{q}退货", "returns-and-refunds"), ("{q}坏了", "warranty-and-repairs")),
}


def language_of(text: str, tags: frozenset[str], words: _Words) -> str:
    """``en``, or the language of an other-language search (its leaf's translation in the text)."""
    if OTHER_LANGUAGE not in tags:
        return "en"
    if _cjk(text):
        return "zh"
    for lang, translation in zip(LANGUAGES, words.translations, strict=True):
        if lang != "zh" and translation in text:
            return lang
    return "en"  # a misspelt translation: an English cue around it


class Purposes:
    """Per search: the intent type (:meth:`draw`) and the cue around its text (:meth:`cue`)."""

    def __init__(self, mix: IntentTypeMix, seed: int) -> None:
        self.mix = mix
        self.rng = random.Random(f"intent-types:{seed}")
        self.cuts = mix.cuts
        self.cue_rates = {BROWSE: mix.browse_cue_rate, ASK: mix.ask_cue_rate, HELP: mix.help_cue_rate}

    def draw(self) -> str:
        """One search's intent type, from the mix."""
        u = self.rng.random()
        buy, browse, ask = self.cuts
        if u < buy:
            return BUY
        if u < browse:
            return BROWSE
        return ASK if u < ask else HELP

    def cue(self, itype: str, text: str, tags: frozenset[str], words: _Words) -> tuple[str, int | None]:
        """``text`` as a shopper of ``itype`` types it, and (help) the index of the help topic it
        names (None: no cue, or no topic)."""
        rng = self.rng
        if rng.random() >= self.cue_rates[itype] or (itype == ASK and QUESTION in tags):
            return text, None  # typed as a buyer would, or already a question
        lang = language_of(text, tags, words)
        topic: int | None = None
        if itype == HELP:
            template, slug = rng.choice(HELP_CUES[lang])
            topic = HELP_TOPIC_INDEX[slug]
        else:
            template = rng.choice((BROWSE_CUES if itype == BROWSE else ASK_CUES)[lang])
        b1, b2 = rng.sample(words.brands, 2) if len(words.brands) > 1 else (words.brands[0],) * 2
        said = template.format(q=text, b1=b1, b2=b2)
        if words.uses_held_out(said) and not words.uses_held_out(text):
            return text, None  # the cue's words made a held-out phrasing ("top" + "tank"): none then
        return said, topic
