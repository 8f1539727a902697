"""Labeling functions: small, independent heuristics that each turn one search into votes.

A vote is for a *product* (``Vote.product_id``); the aggregator turns products into intent labels
through the catalog, so a function never needs to know the taxonomy. A positive weight is evidence
that the product's label is what the shopper meant, a negative one evidence that it is not.

Functions are frozen dataclasses: their knobs (weights, thresholds) are fields, so a configured set
is a value that can be logged, compared and stored with the labels it produced.

Adding one
    Write a frozen dataclass with ``name``, ``weight`` and ``polarity`` fields and a
    ``votes(record, propensity) -> list[Vote]`` method (it satisfies :class:`LabelingFunction`), say
    in its docstring why its evidence is evidence, and pass ``(*DEFAULT_LFS, MyLF())`` to
    ``aggregate``. Return one vote per product at most (the helpers below deduplicate), scale a click
    by ``propensity.weight(rank)`` when it is position-biased evidence, and return ``[]`` to abstain.
    ``analysis.analyse`` then reports its coverage, overlap, conflicts and accuracy on gold labels.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from streams.events import FeedbackType
from streams.weak.propensity import Propensity
from streams.weak.records import Interaction, SearchRecord


@dataclass(frozen=True, slots=True)
class Vote:
    """``weight`` of evidence from labeling function ``lf`` for (or, when negative, against) the
    label of ``product_id``.

    ``ips`` is the inverse-propensity factor already inside ``weight`` (1.0 for evidence that is not
    position-debiased): the posterior label policy needs the action's own strength
    (``weight / ips``) apart from its debiasing factor, so that one shopper action is counted once
    as evidence and IPS only moves the split between labels (see ``streams.weak.policies``).
    """

    lf: str
    product_id: str
    weight: float
    ips: float = 1.0

    @property
    def strength(self) -> float:
        """The vote's weight without its inverse-propensity factor."""
        return self.weight / self.ips if self.ips > 0 else self.weight


class LabelingFunction(Protocol):
    """What the aggregator and the analysis need from a labeling function."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def polarity(self) -> int: ...  # +1: mainly evidence for a label, -1: against

    def votes(self, record: SearchRecord, propensity: Propensity | None) -> list[Vote]: ...


def _first_per_product(interactions: Iterable[Interaction]) -> list[Interaction]:
    """One interaction per product (the first): a shopper clicking twice is not twice the evidence."""
    seen: dict[str, Interaction] = {}
    for i in interactions:
        seen.setdefault(i.product_id, i)
    return list(seen.values())


def _ips(propensity: Propensity | None, rank: int, enabled: bool) -> float:
    return propensity.weight(rank) if enabled and propensity is not None else 1.0


def _ips_vote(lf: str, product_id: str, weight: float, ips: float) -> Vote:
    return Vote(lf, product_id, weight * ips, ips)


def _examined(propensity: Propensity | None, rank: int) -> float:
    """How sure we are the shopper saw ``rank``: a non-click there is only evidence if they did."""
    return propensity.examination(rank) if propensity is not None else 1.0


@dataclass(frozen=True, slots=True)
class Conversion:
    """A conversion (add-to-cart, purchase) on a product: strong, low-noise evidence of intent.

    Not IPS-weighted by default: conversions are rare and precise, and multiplying a single deep one
    by up to ``max_weight`` would let it outvote many shallow ones.
    """

    name: str
    kind: FeedbackType
    weight: float
    ips: bool = False
    polarity: int = 1

    def votes(self, record: SearchRecord, propensity: Propensity | None) -> list[Vote]:
        return [
            _ips_vote(self.name, i.product_id, self.weight, _ips(propensity, i.position, self.ips))
            for i in _first_per_product(record.of_type(self.kind))
        ]


@dataclass(frozen=True, slots=True)
class ClickDwell:
    """A click the shopper stayed on (dwell >= ``min_dwell_ms``): a satisfied click.

    Short clicks are dropped because they are mostly misclicks and bounces. A click without a dwell
    time (a log that has none) counts. Clicks are position-biased, so with a propensity each is
    weighted by ``1 / theta_rank``.
    """

    name: str = "click_dwell"
    weight: float = 1.0
    min_dwell_ms: int = 10_000
    ips: bool = True
    polarity: int = 1

    def votes(self, record: SearchRecord, propensity: Propensity | None) -> list[Vote]:
        return [
            _ips_vote(self.name, i.product_id, self.weight, _ips(propensity, i.position, self.ips))
            for i in _first_per_product(record.of_type(FeedbackType.click))
            if i.dwell_ms is None or i.dwell_ms >= self.min_dwell_ms
        ]


@dataclass(frozen=True, slots=True)
class ClickBelowSkips:
    """A click at rank k below unclicked ranks (skip-above, from the cascade model).

    The shopper passed over what was above to reach rank k: evidence for the clicked product and,
    weaker, against the skipped ones. With a propensity the click is IPS-weighted and each skip is
    scaled by the chance its rank was examined at all (an unseen product was not rejected). Clicks
    shorter than ``min_dwell_ms`` are ignored: a bounce is not a choice.
    """

    name: str = "click_below_skips"
    weight: float = 0.5
    skip_weight: float = 0.15
    min_dwell_ms: int = 5_000
    ips: bool = True
    polarity: int = 1

    def votes(self, record: SearchRecord, propensity: Propensity | None) -> list[Vote]:
        clicks = [
            i
            for i in _first_per_product(record.of_type(FeedbackType.click))
            if i.dwell_ms is None or i.dwell_ms >= self.min_dwell_ms
        ]
        clicked = record.clicked_positions()
        deepest_skip = -1
        out: list[Vote] = []
        for i in clicks:
            skipped_above = [r for r in range(min(i.position, len(record.shown))) if r not in clicked]
            if skipped_above:
                out.append(
                    _ips_vote(self.name, i.product_id, self.weight, _ips(propensity, i.position, self.ips))
                )
                deepest_skip = max(deepest_skip, skipped_above[-1])
        for r in range(deepest_skip + 1):
            if r not in clicked:
                out.append(Vote(self.name, record.shown[r], -self.skip_weight * _examined(propensity, r)))
        return out


@dataclass(frozen=True, slots=True)
class Returned:
    """A returned purchase: the product was bought and turned out not to be what was wanted."""

    name: str = "return"
    weight: float = 2.0
    polarity: int = -1

    def votes(self, record: SearchRecord, propensity: Propensity | None) -> list[Vote]:
        return [
            Vote(self.name, i.product_id, -self.weight)
            for i in _first_per_product(record.of_type(FeedbackType.return_))
        ]


@dataclass(frozen=True, slots=True)
class Reformulation:
    """No click, then a different query in the same session within ``within_s``: what was shown on
    top was not what the shopper meant.

    Small negative votes for the top ``top_k`` products, each scaled by the chance its rank was
    examined. Weak on purpose: a shopper may also move on to an unrelated need.
    """

    name: str = "reformulation"
    weight: float = 0.3
    within_s: float = 60.0
    top_k: int = 3
    polarity: int = -1

    def votes(self, record: SearchRecord, propensity: Propensity | None) -> list[Vote]:
        reformulated = (
            record.next_norm_text is not None
            and record.next_norm_text != record.norm_text
            and record.next_gap_s is not None
            and 0 <= record.next_gap_s <= self.within_s
        )
        if not reformulated or record.clicked_positions():
            return []
        return [
            Vote(self.name, pid, -self.weight * _examined(propensity, r))
            for r, pid in enumerate(record.shown[: self.top_k])
        ]


DEFAULT_LFS: tuple[LabelingFunction, ...] = (
    Conversion("purchase", FeedbackType.purchase, 3.0),
    Conversion("add_to_cart", FeedbackType.add_to_cart, 2.0),
    ClickDwell(),
    ClickBelowSkips(),
    Returned(),
    Reformulation(),
)
