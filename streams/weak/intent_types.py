"""Weak evidence of the intent *type* of a search: did the shopper want to buy, browse, ask or get help?

The category labeling functions (:mod:`streams.weak.functions`) say *which part of the catalogue* a
search is about; these say *what the shopper wanted to do*. Two kinds of evidence, kept apart so
the label model and the function analysis can weigh them separately:

- **behaviour and destination**: a purchase or add-to-cart votes *buy*; several products viewed at
  length with nothing carted votes *browse* (comparing); a click on a content page (guide, review,
  FAQ: catalogue ``kind`` ``content``) votes *ask*; a click on a help page (order status, returns,
  contact: ``kind`` ``help``) votes *help*;
- **text**: question words vote *ask*, words of trouble (refund, broken, cancel...) vote *help*,
  words of comparison (best, vs, review...) vote *browse*, in English, German, French, Spanish and
  Chinese. Weaker by default: the words are cues, the behaviour is what happened.

Each function returns at most one vote per search and ``[]`` to abstain. :func:`tabulate_types`
sums them into the same :class:`~streams.weak.vote_table.VoteTable` the category functions fill,
so the label policy, the Dawid-Skene label model and the function analysis judge both dimensions
alike (``streams.labels_job``).
"""

import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Protocol

from tqdm import tqdm

from store.dimensions import ASK, BROWSE, BUY, HELP, INTENT_TYPES
from streams.events import FeedbackType, ItemKind
from streams.weak.records import SearchRecord
from streams.weak.vote_table import VoteTable, decay

__all__ = [
    "ASK",
    "BROWSE",
    "BUY",
    "HELP",
    "INTENT_TYPES",
    "TypeTally",
    "TypeVote",
    "tabulate_types",
    "type_votes",
]


@dataclass(frozen=True, slots=True)
class TypeVote:
    """``weight`` of evidence from labeling function ``lf`` that the search's intent type is ``label``."""

    lf: str
    label: str
    weight: float


class IntentTypeFunction(Protocol):
    """What the aggregation will need of an intent-type labeling function."""

    @property
    def name(self) -> str: ...

    @property
    def polarity(self) -> int: ...  # every intent-type function votes for a label: +1

    def votes(self, record: SearchRecord, kinds: Mapping[str, ItemKind]) -> list[TypeVote]: ...


def _kind(kinds: Mapping[str, ItemKind], product_id: str) -> ItemKind:
    return kinds.get(product_id, ItemKind.product)  # the catalogue contract: absent means product


@dataclass(frozen=True)
class Bought:
    """A purchase or an add-to-cart of a product: the shopper came to buy."""

    name: str = "bought"
    weight: float = 1.0
    cart_weight: float = 0.7  # a cart is a weaker commitment than a purchase
    polarity: int = 1

    def votes(self, record: SearchRecord, kinds: Mapping[str, ItemKind]) -> list[TypeVote]:
        acts = [
            i
            for i in record.interactions
            if i.type in (FeedbackType.purchase, FeedbackType.add_to_cart)
            and _kind(kinds, i.product_id) is ItemKind.product
        ]
        if not acts:
            return []
        bought = any(i.type is FeedbackType.purchase for i in acts)
        return [TypeVote(self.name, BUY, self.weight if bought else self.cart_weight)]


@dataclass(frozen=True)
class Compared:
    """Several products viewed at length and none carted or bought: the shopper was comparing."""

    name: str = "compared"
    weight: float = 0.6
    # Three, not two: on the simulator two long looks fire on 24% of buyers' searches as well
    # (precision 0.47 for browse in the busy shop), three on 6% (0.67); docs/labeling.md.
    min_products: int = 3
    min_dwell_ms: int = 15_000
    polarity: int = 1

    def votes(self, record: SearchRecord, kinds: Mapping[str, ItemKind]) -> list[TypeVote]:
        if record.of_type(FeedbackType.purchase) or record.of_type(FeedbackType.add_to_cart):
            return []
        viewed = {
            i.product_id
            for i in record.of_type(FeedbackType.click)
            if _kind(kinds, i.product_id) is ItemKind.product and (i.dwell_ms or 0) >= self.min_dwell_ms
        }
        return [TypeVote(self.name, BROWSE, self.weight)] if len(viewed) >= self.min_products else []


@dataclass(frozen=True)
class ClickedProduct:
    """A product clicked, nothing carted and no comparison: weak evidence of buying. A product
    search is transactional unless something says otherwise; a comparison (``unless``) is that
    something, and the search then votes *browse* alone."""

    name: str = "clicked_product"
    weight: float = 0.3
    polarity: int = 1
    unless: Compared = Compared()

    def votes(self, record: SearchRecord, kinds: Mapping[str, ItemKind]) -> list[TypeVote]:
        if record.of_type(FeedbackType.purchase) or record.of_type(FeedbackType.add_to_cart):
            return []  # Bought's evidence, not this one's
        if self.unless.votes(record, kinds):
            return []
        clicked = any(
            _kind(kinds, i.product_id) is ItemKind.product for i in record.of_type(FeedbackType.click)
        )
        return [TypeVote(self.name, BUY, self.weight)] if clicked else []


@dataclass(frozen=True)
class OpenedPage:
    """A click on a page of one ``kind``: a guide answers a question, a returns page is help."""

    name: str
    kind: ItemKind
    label: str
    weight: float = 1.0
    polarity: int = 1

    def votes(self, record: SearchRecord, kinds: Mapping[str, ItemKind]) -> list[TypeVote]:
        clicked = any(_kind(kinds, i.product_id) is self.kind for i in record.of_type(FeedbackType.click))
        return [TypeVote(self.name, self.label, self.weight)] if clicked else []


def _whole_word(cue: str) -> bool:
    """Latin-script words match whole (``vs`` is not in ``canvas``; accented letters are Latin too);
    Chinese and punctuation ("?") match anywhere: Chinese is written without spaces."""
    return all(c.isspace() or ("LATIN" in unicodedata.name(c, "") and c.isalpha()) for c in cue)


def _cue_pattern(words: Sequence[str]) -> re.Pattern[str]:
    latin = [re.escape(w) for w in words if _whole_word(w)]
    cjk = [re.escape(w) for w in words if not _whole_word(w)]
    parts = [rf"(?<!\w)(?:{'|'.join(latin)})(?!\w)"] if latin else []
    if cjk:
        parts.append("|".join(cjk))
    return re.compile("|".join(parts))


@dataclass(frozen=True)
class TextCue:
    """Words that say what the shopper wants to do, in several languages."""

    name: str
    label: str
    words: tuple[str, ...]
    weight: float = 0.5
    polarity: int = 1

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The cues as one expression, compiled on first use."""
        return _cue_pattern(self.words)

    def votes(self, record: SearchRecord, kinds: Mapping[str, ItemKind]) -> list[TypeVote]:
        return [TypeVote(self.name, self.label, self.weight)] if self.pattern.search(record.norm_text) else []


QUESTION_WORDS = (
    # en, de, fr, es (normalised text is lower case; accents kept)
    *("how", "what", "which", "why", "when", "where", "who", "can i", "do i", "does", "is it", "should i"),
    *("wie", "welche", "welcher", "warum", "wann"),  # not "was", "wo": English words too
    *("comment", "quel", "quelle", "pourquoi", "quand", "où", "est ce que"),
    *("cómo", "como", "qué", "cuál", "cual", "por qué", "cuándo", "dónde"),
    *("怎么", "如何", "什么", "为什么", "哪里", "吗", "能不能", "可以吗"),
    *("?", "\uff1f", "¿"),  # the fullwidth question mark of Chinese text
)
HELP_WORDS = (
    *("refund", "return", "returns", "broken", "damaged", "cancel", "cancellation", "complaint", "warranty"),
    *("track order", "order status", "where is my order", "my order", "contact us", "customer service"),
    # the words of customer-service requests (account, payment and delivery trouble)
    *("help", "assistance", "problem", "problems", "issue", "issues", "agent", "password", "login"),
    *("account", "invoice", "bill", "reimbursement", "refunds", "money back", "unsubscribe", "defective"),
    *("not working", "doesn't work", "missing", "charged twice", "shipping address", "payment"),
    *("rückgabe", "rücksendung", "erstattung", "kaputt", "defekt", "stornieren", "reklamation", "bestellung"),
    *("remboursement", "retour", "cassé", "annuler", "réclamation", "livraison", "commande"),
    *("reembolso", "devolución", "devolucion", "roto", "cancelar", "reclamación", "pedido", "envío"),
    *("退货", "退款", "坏了", "取消订单", "物流", "投诉", "客服", "我的订单", "保修"),
)
COMPARE_WORDS = (
    # not "top" ("crop top") nor German "test" ("covid test")
    *("best", "vs", "versus", "compare", "comparison", "review", "reviews", "ideas", "alternatives"),
    *("beste", "bester", "vergleich", "testsieger"),
    *("meilleur", "meilleure", "comparatif", "avis"),
    *("mejor", "mejores", "comparar", "comparativa", "opiniones"),
    *("最好", "推荐", "对比", "哪个好", "评测", "排行"),
)

BEHAVIOUR_LFS: tuple[IntentTypeFunction, ...] = (
    Bought(),
    ClickedProduct(),
    Compared(),
    OpenedPage("read_content", ItemKind.content, ASK),
    OpenedPage("opened_help", ItemKind.help, HELP),
)
TEXT_LFS: tuple[IntentTypeFunction, ...] = (
    TextCue("question_words", ASK, QUESTION_WORDS),
    TextCue("help_words", HELP, HELP_WORDS, weight=0.6),
    TextCue("compare_words", BROWSE, COMPARE_WORDS, weight=0.4),
)
DEFAULT_TYPE_LFS = BEHAVIOUR_LFS + TEXT_LFS


def type_votes(
    record: SearchRecord,
    kinds: Mapping[str, ItemKind],
    lfs: Sequence[IntentTypeFunction] = DEFAULT_TYPE_LFS,
) -> list[TypeVote]:
    """Every function's vote on one search (at most one each), in ``lfs`` order."""
    return [v for lf in lfs for v in lf.votes(record, kinds)]


def tabulate_types(
    records: Sequence[SearchRecord],
    kinds: Mapping[str, ItemKind],
    lfs: Sequence[IntentTypeFunction] = DEFAULT_TYPE_LFS,
    *,
    now: datetime | None = None,
    half_life_s: float | None = None,
    progress: bool = False,
) -> VoteTable:
    """Every function's votes on every search, as the category vote table keeps them.

    ``net`` and ``shares`` hold each vote's weight decayed by the search's age: the split between
    labels, where a purchase outweighs a click and behaviour outweighs a word. ``actions``, the
    posterior policy's evidence, counts each search that any function voted on once, split in
    proportion to its votes: every search is one shopper's one intent, however many functions saw
    it, so the label prior (built from ``actions``) is the mix of searches, not of vote weights,
    which would over-count the pages and words that fire strongly. There are no votes against and
    no position bias to correct here: a purchase says *buy* wherever the product was shown.
    """
    if now is None and records:
        now = max(r.ts for r in records)
    tally = TypeTally(kinds, lfs)
    for rec in tqdm(records, desc="intent-type functions", unit="search", disable=not progress, leave=False):
        tally.add(rec, decay((now - rec.ts).total_seconds(), half_life_s) if now is not None else 1.0)
    return tally.table()


class TypeTally:
    """The running sums of :func:`tabulate_types`, one search at a time (``w``: its decay weight).
    Incremental aggregation folds searches through it with a weight of its own anchor."""

    def __init__(
        self,
        kinds: Mapping[str, ItemKind],
        lfs: Sequence[IntentTypeFunction],
        *,
        per_query_counts: bool = False,
    ) -> None:
        self.kinds, self.lfs = kinds, lfs
        # query -> function -> searches voted on (= votes): what incremental aggregation stores per query
        self.lf_counts: dict[str, dict[str, int]] | None = (
            defaultdict(lambda: defaultdict(int)) if per_query_counts else None
        )
        self.net: dict[str, dict[str, dict[str, float]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(float))
        )
        self.support: dict[str, float] = defaultdict(float)
        self.actions: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.shares: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.searches: dict[str, int] = defaultdict(int)
        self.lf_searches = dict.fromkeys((lf.name for lf in lfs), 0)

    def add(self, rec: SearchRecord, w: float) -> None:
        q = rec.norm_text
        self.searches[q] += 1
        votes = type_votes(rec, self.kinds, self.lfs)
        total = sum(v.weight for v in votes)
        for vote in votes:
            self.net[q][vote.lf][vote.label] += vote.weight * w
            self.support[q] += vote.weight * w
            self.actions[q][vote.label] += vote.weight / total
            self.shares[q][vote.label] += vote.weight * w
            self.lf_searches[vote.lf] += 1
            if self.lf_counts is not None:
                self.lf_counts[q][vote.lf] += 1

    def table(self) -> VoteTable:
        return VoteTable(
            {q: {lf: dict(labels) for lf, labels in per_lf.items()} for q, per_lf in self.net.items()},
            dict(self.support),
            dict(self.searches),
            dict(self.lf_searches),
            dict(self.lf_searches),  # one vote per search at most: votes and searches coincide
            {q: dict(v) for q, v in self.actions.items()},
            {q: dict(v) for q, v in self.shares.items()},
        )
