"""Step 2 of labeling: a :class:`LabelPolicy` turns one query's evidence into a :class:`LabelDistribution`.

Step 1, the table of votes and actions the policies read, is ``streams.weak.vote_table``.

- :class:`DirichletPosterior` (the default, ``policy=posterior``): every query with positive
  evidence gets a label distribution: the Dirichlet posterior whose prior is the overall label
  mix with strength ``prior_strength`` and whose counts are the query's action strengths, split
  between labels by their IPS-weighted, time-decayed shares. One click is weak but real evidence
  (its posterior stays close to the prior), consistent clicks are strong. IPS is
  *self-normalised* per query: it redistributes a query's evidence between labels but never adds
  evidence, so a deep click cannot outweigh a top click by being deep (Swaminathan & Joachims,
  "The self-normalized estimator for counterfactual learning", NeurIPS 2015), and each weight is
  clipped besides (``max_ips_weight``; Joachims, Swaminathan & Schnabel, WSDM 2017). Decay moves
  a query's split towards its recent behaviour but does not shrink its evidence, so a backfilled
  log is never decayed away. A query abstains only without positive evidence (``no_evidence``)
  or when its evidence contradicts itself (top share under ``min_confidence``:
  ``contradictory``).
- :class:`Threshold` (``policy=threshold``, the earlier behaviour): the weighted majority vote of
  the functions' summed votes, abstaining under ``min_evidence`` decayed positive weight
  (``min_evidence``) or ``min_confidence`` top share (``min_confidence``).
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from streams.weak.functions import DEFAULT_LFS, LabelingFunction
from streams.weak.propensity import Propensity
from streams.weak.records import SearchRecord
from streams.weak.vote_table import NOISE, VoteTable, tabulate, top_label

NO_EVIDENCE, MIN_EVIDENCE, MIN_CONFIDENCE, CONTRADICTORY = (
    "no_evidence",
    "min_evidence",
    "min_confidence",
    "contradictory",
)
_MIN_SHARE = 1e-3  # labels with less posterior mass are left out of a stored distribution


@dataclass(frozen=True, slots=True)
class LabelDistribution:
    """The aggregated weak label of one query.

    ``label`` is the top label even when abstaining (a dashboard shows what it would have been);
    training reads only rows with ``abstained`` false. ``confidence`` is the top label's probability,
    ``evidence`` the positive evidence behind the query (posterior policy: the strength of its
    actions, each counted once; threshold policy: the decayed positive vote weight), ``searches``
    how many searches of the window typed it, and ``weight`` how far the evidence rather than the
    prior decides the distribution (``evidence / (evidence + prior_strength)``; 1.0 under the
    threshold policy): what training may scale the example by.
    """

    norm_text: str
    label: str | None
    confidence: float
    evidence: float
    distribution: dict[str, float]
    abstained: bool
    reason: str = ""  # NO_EVIDENCE | MIN_EVIDENCE | MIN_CONFIDENCE | CONTRADICTORY when abstained
    searches: int = 0
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; shallow (``asdict``'s deep copy cost seconds per aggregation)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return out | {"distribution": dict(self.distribution)}


def below(value: float, limit: float) -> bool:
    """``value < limit`` beyond float rounding: a share of exactly 3/5 is not under 0.6 because its
    sums came out 0.59999999 (the incremental run sums in another order than the full one)."""
    return value < limit - 1e-9 * max(1.0, abs(limit))


def label_totals(per_lf: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """A query's net weight per label over all functions, clipped at zero (negatives only subtract)."""
    totals: dict[str, float] = defaultdict(float)
    for labels in per_lf.values():
        for label, weight in labels.items():
            totals[label] += weight
    return {label: w for label, w in totals.items() if w > NOISE}


def _ranked(totals: Mapping[str, float]) -> dict[str, float]:
    """Shares of the positive totals, largest first (ties broken by name, for determinism)."""
    positive = {label: w for label, w in totals.items() if w > NOISE}
    if not positive:
        return {}
    total = sum(positive.values())
    top, _ = top_label(positive)  # first, even where a float residue ranks a tied label above it
    ranked = sorted(positive.items(), key=lambda kv: (kv[0] != top, -kv[1], kv[0]))
    return {label: w / total for label, w in ranked}


def distribution_of(
    norm_text: str,
    totals: Mapping[str, float],
    evidence: float,
    min_evidence: float,
    min_confidence: float,
    searches: int = 0,
) -> LabelDistribution:
    """The threshold policy's decision: shares, top label and the abstention."""
    shares = _ranked(totals)
    if not shares:
        return LabelDistribution(norm_text, None, 0.0, evidence, {}, True, NO_EVIDENCE, searches)
    label, confidence = next(iter(shares.items()))
    reason = ""
    if below(evidence, min_evidence):
        reason = MIN_EVIDENCE
    elif below(confidence, min_confidence):
        reason = MIN_CONFIDENCE
    return LabelDistribution(norm_text, label, confidence, evidence, shares, bool(reason), reason, searches)


class LabelPolicy(Protocol):
    """How one query's evidence becomes its label distribution (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def evidence(self, table: VoteTable, query: str) -> tuple[dict[str, float], float]:
        """The query's positive weight per label (to be shared out) and its evidence."""
        ...

    def decide(
        self, query: str, totals: Mapping[str, float], evidence: float, searches: int
    ) -> LabelDistribution: ...


@dataclass(frozen=True)
class Threshold:
    """The weighted majority vote of the functions' summed votes, with hard evidence/share cuts."""

    min_evidence: float = 2.0
    min_confidence: float = 0.6
    name: str = "threshold"

    def evidence(self, table: VoteTable, query: str) -> tuple[dict[str, float], float]:
        return label_totals(table.net.get(query, {})), table.support.get(query, 0.0)

    def decide(
        self, query: str, totals: Mapping[str, float], evidence: float, searches: int
    ) -> LabelDistribution:
        return distribution_of(query, totals, evidence, self.min_evidence, self.min_confidence, searches)


@dataclass(frozen=True)
class DirichletPosterior:
    """Dirichlet posterior per query: prior ``strength`` x ``prior`` (the overall label mix) plus the
    query's action strengths, split between labels by their debiased shares.

    ``min_evidence`` (0 by default) can still demand more evidence; ``min_confidence`` is the share of
    the query's own evidence its top label needs, below which the evidence is contradictory.
    """

    prior: Mapping[str, float]
    strength: float = 1.0
    min_evidence: float = 0.0
    min_confidence: float = 0.6
    name: str = "posterior"

    def evidence(self, table: VoteTable, query: str) -> tuple[dict[str, float], float]:
        shares = (table.shares or {}).get(query, {})
        actions = (table.actions or {}).get(query, {})
        return {label: w for label, w in shares.items() if w > NOISE}, sum(actions.values())

    def decide(
        self, query: str, totals: Mapping[str, float], evidence: float, searches: int
    ) -> LabelDistribution:
        shares = _ranked(totals)
        if evidence <= 0:
            return LabelDistribution(query, None, 0.0, evidence, {}, True, NO_EVIDENCE, searches, 0.0)
        if not shares:  # shoppers acted, and skipped or returned as much: evidence against itself
            return LabelDistribution(query, None, 0.0, evidence, {}, True, CONTRADICTORY, searches, 0.0)
        a = self.strength
        posterior = {
            label: (evidence * shares.get(label, 0.0) + a * self.prior.get(label, 0.0)) / (evidence + a)
            for label in {*shares, *self.prior}
        }
        top, confidence = top_label(posterior)  # the prior can outweigh thin evidence: the posterior's
        ranked = sorted(posterior.items(), key=lambda kv: (kv[0] != top, -kv[1], kv[0]))
        kept = {label: p for label, p in ranked if not below(p, _MIN_SHARE) or label in shares}
        reason = ""
        if below(evidence, self.min_evidence):
            reason = MIN_EVIDENCE
        elif below(next(iter(shares.values())), self.min_confidence):  # the query's own evidence disagrees
            reason = CONTRADICTORY
        weight = evidence / (evidence + a)
        return LabelDistribution(
            query, top, confidence, evidence, kept, bool(reason), reason, searches, weight
        )


def label_prior(table: VoteTable, smoothing: float = 1.0) -> dict[str, float]:
    """The overall label mix of the evidence (every action once, split by its query's shares), with
    ``smoothing`` added to each label seen: the prior a query with little evidence leans on."""
    mix: dict[str, float] = defaultdict(float)
    for query, actions in (table.actions or {}).items():
        evidence = sum(actions.values())
        for label, share in _ranked((table.shares or {}).get(query, {})).items():
            mix[label] += evidence * share
    total = sum(mix.values()) + smoothing * len(mix)
    return {label: (w + smoothing) / total for label, w in sorted(mix.items())} if mix else {}


def label_all(table: VoteTable, policy: LabelPolicy) -> dict[str, LabelDistribution]:
    """Every query of ``table`` through ``policy`` (abstaining ones included)."""
    out = {}
    for q, n in table.searches.items():
        totals, evidence = policy.evidence(table, q)
        out[q] = policy.decide(q, totals, evidence, n)
    return out


def majority(
    table: VoteTable, min_evidence: float = 2.0, min_confidence: float = 0.6
) -> dict[str, LabelDistribution]:
    """The threshold policy over every query in ``table`` (abstaining ones included)."""
    return label_all(table, Threshold(min_evidence, min_confidence))


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
    """Per normalised query, the threshold policy's label distribution (see the module)."""
    table = tabulate(records, catalog, lfs, propensity, now, half_life_s)
    return majority(table, min_evidence, min_confidence)
