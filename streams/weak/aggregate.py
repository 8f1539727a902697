"""From votes to one label distribution per normalised query: the weighted majority vote.

Two steps, so that the label model and the analysis can share the first:

1. :func:`tabulate` runs every labeling function over every search and sums the votes per
   (query, function, label), each decayed by the age of its search: ``exp(-ln 2 * age / half_life)``,
   so that what shoppers do now outweighs what they did a month ago (assortments and meanings drift).
2. :func:`majority` turns a query's summed votes into a :class:`LabelDistribution`: negative votes
   subtract from a label's positive ones (never below zero), shares are over what is left, and the
   query abstains when there is too little evidence or the top label's share is too low.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from tqdm import tqdm

from streams.weak.functions import DEFAULT_LFS, LabelingFunction
from streams.weak.propensity import Propensity
from streams.weak.records import SearchRecord

# query text -> labeling function -> label -> decayed net weight
NetVotes = dict[str, dict[str, dict[str, float]]]
# query text -> labeling function -> (its label, +1 for / -1 against)
LFOutputs = dict[str, dict[str, tuple[str, int]]]


@dataclass(frozen=True, slots=True)
class LabelDistribution:
    """The aggregated weak label of one query.

    ``label`` is the top label even when abstaining (a dashboard shows what it would have been);
    training reads only rows with ``abstained`` false. ``confidence`` is the top label's share,
    ``evidence`` the decayed positive weight behind the query (before negative votes).
    """

    norm_text: str
    label: str | None
    confidence: float
    evidence: float
    distribution: dict[str, float]
    abstained: bool
    reason: str = ""  # "no_evidence" | "min_evidence" | "min_confidence" when abstained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class VoteTable:
    """Every labeling function's summed votes, per query and label (what aggregation reads)."""

    net: NetVotes
    support: dict[str, float]  # query -> decayed positive weight
    searches: dict[str, int]  # query -> searches seen (voted on or not)
    lf_searches: dict[str, int]  # labeling function -> searches it cast a counted vote on
    lf_votes: dict[str, int]  # labeling function -> counted votes

    @property
    def n_searches(self) -> int:
        return sum(self.searches.values())


def decay(age_s: float, half_life_s: float | None) -> float:
    """The weight of behaviour ``age_s`` seconds old: halves every ``half_life_s`` (``None``: no decay).

    Behaviour from the future (clock skew) counts fully rather than more.
    """
    if half_life_s is None:
        return 1.0
    return math.exp(-math.log(2.0) * max(age_s, 0.0) / half_life_s)


def tabulate(
    records: Iterable[SearchRecord],
    catalog: Mapping[str, str | None],
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    propensity: Propensity | None = None,
    now: datetime | None = None,
    half_life_s: float | None = None,
    progress: bool = False,
) -> VoteTable:
    """Run ``lfs`` over ``records`` and sum their votes per (query, function, label).

    ``catalog`` maps product id -> intent label; votes for products it lacks (unknown) or maps to
    ``None`` (outside the taxonomy) are not counted. ``now`` defaults to the newest search, so that
    decay is relative to the data and a replayed log labels the same as a live one. ``progress``
    shows a bar (the one slow loop of an aggregation: every function over every search).
    """
    records = list(records)
    if now is None and records:
        now = max(r.ts for r in records)
    net: NetVotes = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    support: dict[str, float] = defaultdict(float)
    searches: dict[str, int] = defaultdict(int)
    lf_searches: dict[str, int] = dict.fromkeys((lf.name for lf in lfs), 0)
    lf_votes: dict[str, int] = dict.fromkeys((lf.name for lf in lfs), 0)
    for rec in tqdm(records, desc="labeling functions", unit="search", disable=not progress, leave=False):
        searches[rec.norm_text] += 1
        w = decay((now - rec.ts).total_seconds(), half_life_s) if now is not None else 1.0
        for lf in lfs:
            labelled = ((catalog.get(v.product_id), v.weight * w) for v in lf.votes(rec, propensity))
            counted = [(label, weight) for label, weight in labelled if label is not None]
            for label, weight in counted:
                net[rec.norm_text][lf.name][label] += weight
                support[rec.norm_text] += max(weight, 0.0)
            lf_searches[lf.name] += bool(counted)
            lf_votes[lf.name] += len(counted)
    return VoteTable(_plain(net), dict(support), dict(searches), lf_searches, lf_votes)


def _plain(net: NetVotes) -> NetVotes:
    """Nested defaultdicts -> plain dicts (a missing key must read as missing, not as a new zero)."""
    return {q: {lf: dict(labels) for lf, labels in per_lf.items()} for q, per_lf in net.items()}


def label_totals(per_lf: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """A query's net weight per label over all functions, clipped at zero (negatives only subtract)."""
    totals: dict[str, float] = defaultdict(float)
    for labels in per_lf.values():
        for label, weight in labels.items():
            totals[label] += weight
    return {label: w for label, w in totals.items() if w > 0}


def distribution_of(
    norm_text: str, totals: Mapping[str, float], evidence: float, min_evidence: float, min_confidence: float
) -> LabelDistribution:
    """Shares, top label (ties broken by name, for determinism) and the abstention decision."""
    total = sum(totals.values())
    if total <= 0:
        return LabelDistribution(norm_text, None, 0.0, evidence, {}, True, "no_evidence")
    shares = {label: w / total for label, w in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))}
    label, confidence = next(iter(shares.items()))
    reason = ""
    if evidence < min_evidence:
        reason = "min_evidence"
    elif confidence < min_confidence:
        reason = "min_confidence"
    return LabelDistribution(norm_text, label, confidence, evidence, shares, bool(reason), reason)


def majority(
    table: VoteTable, min_evidence: float = 2.0, min_confidence: float = 0.6
) -> dict[str, LabelDistribution]:
    """The weighted majority vote of every query in ``table`` (abstaining ones included)."""
    return {
        q: distribution_of(
            q, label_totals(table.net.get(q, {})), table.support.get(q, 0.0), min_evidence, min_confidence
        )
        for q in table.searches
    }


def aggregate(
    records: Iterable[SearchRecord],
    catalog: Mapping[str, str | None],
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    propensity: Propensity | None = None,
    now: datetime | None = None,
    half_life_s: float | None = None,
    min_evidence: float = 2.0,
    min_confidence: float = 0.6,
) -> dict[str, LabelDistribution]:
    """Per normalised query, the label distribution of the weighted majority vote (see the module)."""
    table = tabulate(records, catalog, lfs, propensity, now, half_life_s)
    return majority(table, min_evidence, min_confidence)


def lf_outputs(table: VoteTable) -> LFOutputs:
    """Each function's single answer per query: its top net-positive label (+1), or when it has
    none, the label it voted against most (-1). Functions with no net vote abstain (are absent).

    The label model and the analysis both read functions this way.
    """
    out: LFOutputs = {}
    for q, per_lf in table.net.items():
        answers = {}
        for lf, labels in per_lf.items():
            answer = _answer(labels)
            if answer is not None:
                answers[lf] = answer
        if answers:
            out[q] = answers
    return out


def _answer(labels: Mapping[str, float]) -> tuple[str, int] | None:
    ranked = sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))
    if ranked and ranked[0][1] > 0:
        return ranked[0][0], 1
    against = sorted(labels.items(), key=lambda kv: (kv[1], kv[0]))
    if against and against[0][1] < 0:
        return against[0][0], -1
    return None
