"""Step 1 of labeling: every labeling function over every search, summed into a :class:`VoteTable`.

:func:`tabulate` keeps two views of the votes:

- per (query, function, label) the summed votes, decayed by the age of their search
  (``exp(-ln 2 * age / half_life)``): what the LF analysis and the Dawid-Skene label model read;
- per (query, label) the *actions*: every shopper action counted once, however many functions
  see it (a click at rank 5 below skipped results is one click, not a ``click_dwell`` plus a
  ``click_below_skips`` vote), with its strength (purchase 3, add-to-cart 2, click 1) apart from
  its inverse-propensity factor.

Step 2, a label policy turning one query's evidence into its label distribution, is
``streams.weak.policies``; the table is shared by the policies, the label model and the analysis.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tqdm import tqdm

from streams.weak.functions import DEFAULT_LFS, LabelingFunction, Vote
from streams.weak.propensity import Propensity
from streams.weak.records import SearchRecord

# query text -> labeling function -> label -> decayed net weight
NetVotes = dict[str, dict[str, dict[str, float]]]
# query text -> labeling function -> (its label, +1 for / -1 against)
LFOutputs = dict[str, dict[str, tuple[str, int]]]
# query text -> label -> weight
LabelWeights = dict[str, dict[str, float]]
Weighted = tuple[str, float]  # (label, weight)
# Votes that cancel (a click for and a skip against one label) leave a float residue (~1e-17) whose
# sign depends on the order of the sums; a summed weight within NOISE of zero is zero, so that
# answers and label sets do not hang on it (the incremental run sums in another order). Evidence
# that small would be 40 half-lives old.
NOISE = 1e-12
_TIE = 1e-9  # relative: weights this close are a tie (equal skips summed in another order differ ~1e-13)


def top_label(weights: Mapping[str, float]) -> tuple[str, float]:
    """The largest weight's label, ties (within ``_TIE``) broken by name: a float residue of the
    order of the sums must not pick the label."""
    best = max(weights.values())
    label = min(k for k, w in weights.items() if w >= best - _TIE * max(abs(best), NOISE))
    return label, weights[label]


@dataclass(frozen=True, slots=True)
class VoteTable:
    """Every labeling function's summed votes, per query and label (what aggregation reads)."""

    net: NetVotes
    support: dict[str, float]  # query -> decayed positive weight (threshold policy's evidence)
    searches: dict[str, int]  # query -> searches seen (voted on or not)
    lf_searches: dict[str, int]  # labeling function -> searches it cast a counted vote on
    lf_votes: dict[str, int]  # labeling function -> counted votes
    actions: LabelWeights | None = None  # query -> label -> action strength, each action once
    shares: LabelWeights | None = None  # query -> label -> decayed, IPS-weighted net action weight

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


def _per_product(votes: Iterable[Vote]) -> dict[str, tuple[float, float, float]]:
    """One search's votes folded per product: (strongest positive strength, its IPS factor, most
    negative weight). A product the shopper bought was also clicked and carted: one action, as strong
    as its strongest sign; evidence against it (a return, a skip) is its most negative vote."""
    out: dict[str, tuple[float, float, float]] = {}
    for v in votes:
        strength, ips, against = out.get(v.product_id, (0.0, 1.0, 0.0))
        if v.weight > 0 and v.strength > strength:
            strength, ips = v.strength, v.ips
        elif v.weight < 0:
            against = min(against, v.weight)
        out[v.product_id] = (strength, ips, against)
    return out


def tabulate(
    records: Iterable[SearchRecord],
    catalog: Mapping[str, str | None],
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    propensity: Propensity | None = None,
    now: datetime | None = None,
    half_life_s: float | None = None,
    progress: bool = False,
) -> VoteTable:
    """Run ``lfs`` over ``records`` and tabulate their votes (see the module docstring).

    ``catalog`` maps product id -> intent label; votes for products it lacks (unknown) or maps to
    ``None`` (outside the taxonomy) are not counted. ``now`` defaults to the newest search, so that
    decay is relative to the data and a replayed log labels the same as a live one. ``progress``
    shows a bar (the one slow loop of an aggregation: every function over every search).
    """
    records = list(records)
    if now is None and records:
        now = max(r.ts for r in records)
    tally = _Tally(catalog, lfs, propensity)
    for rec in tqdm(records, desc="labeling functions", unit="search", disable=not progress, leave=False):
        w = decay((now - rec.ts).total_seconds(), half_life_s) if now is not None else 1.0
        tally.add(rec, w)
    return tally.table()


class _Tally:
    """The running sums of :func:`tabulate`, one search at a time (``w``: the search's decay weight)."""

    def __init__(
        self,
        catalog: Mapping[str, str | None],
        lfs: Sequence[LabelingFunction],
        propensity: Propensity | None,
        *,
        per_query_counts: bool = False,
    ) -> None:
        self.catalog, self.lfs, self.propensity = catalog, lfs, propensity
        self.net: NetVotes = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
        self.support: dict[str, float] = defaultdict(float)
        self.actions: LabelWeights = defaultdict(lambda: defaultdict(float))
        self.shares: LabelWeights = defaultdict(lambda: defaultdict(float))
        self.searches: dict[str, int] = defaultdict(int)
        self.lf_searches: dict[str, int] = dict.fromkeys((lf.name for lf in lfs), 0)
        self.lf_votes: dict[str, int] = dict.fromkeys((lf.name for lf in lfs), 0)
        # query -> function -> [searches voted on, votes]: what incremental aggregation stores per query
        self.lf_counts: dict[str, dict[str, list[int]]] | None = (
            defaultdict(lambda: defaultdict(lambda: [0, 0])) if per_query_counts else None
        )

    def add(self, rec: SearchRecord, w: float) -> None:
        """Every function's counted votes on ``rec``, then its actions (each once).

        All or nothing: everything is computed before anything is added, so a search whose votes
        cannot be compared (``streams.weak.symbolic.Undetermined``) leaves the sums as they were.
        """
        q, catalog = rec.norm_text, self.catalog
        per_lf = [
            (lf.name, [v for v in lf.votes(rec, self.propensity) if catalog.get(v.product_id) is not None])
            for lf in self.lfs
        ]
        counted_votes = [v for _, counted in per_lf for v in counted]
        positive = [max(v.weight * w, 0.0) for v in counted_votes]
        actions, shares = self._actions(counted_votes, w)
        self.searches[q] += 1
        net, support = self.net, self.support
        for (name, counted), i in zip(per_lf, _starts(per_lf), strict=True):
            for k, v in enumerate(counted):
                net[q][name][catalog[v.product_id]] += v.weight * w  # type: ignore[index]
                support[q] += positive[i + k]
            self.lf_searches[name] += bool(counted)
            self.lf_votes[name] += len(counted)
            if self.lf_counts is not None and counted:
                mine = self.lf_counts[q][name]
                mine[0] += 1
                mine[1] += len(counted)
        for label, value in actions:
            self.actions[q][label] += value
        for label, value in shares:
            self.shares[q][label] += value

    def _actions(self, counted_votes: list[Vote], w: float) -> tuple[list[Weighted], list[Weighted]]:
        """One search's actions per label (each product once) and its decayed share of them."""
        actions: list[Weighted] = []
        chosen: dict[str, float] = defaultdict(float)  # label -> IPS-weighted actions of this search
        passed: dict[str, float] = defaultdict(float)  # label -> evidence against (skips, returns)
        for product_id, (strength, ips, against) in _per_product(counted_votes).items():
            label = self.catalog[product_id]
            assert label is not None
            if strength > 0:
                actions.append((label, max(strength + against, 0.0)))
                chosen[label] += strength * ips + against
            else:
                passed[label] += against
        # A skipped product counts against its label only if the shopper chose nothing of that label
        # in this search: passing over two shoes to click a third is a choice of shoes.
        shares = [(lab, (chosen[lab] if lab in chosen else passed[lab]) * w) for lab in {*chosen, *passed}]
        return actions, shares

    def table(self) -> VoteTable:
        return VoteTable(
            _plain(self.net),
            dict(self.support),
            dict(self.searches),
            self.lf_searches,
            self.lf_votes,
            {q: dict(v) for q, v in self.actions.items()},
            {q: dict(v) for q, v in self.shares.items()},
        )


def _starts(per_lf: Sequence[tuple[str, list[Vote]]]) -> list[int]:
    """Where each function's votes start in the search's flat list of votes."""
    out, at = [], 0
    for _, counted in per_lf:
        out.append(at)
        at += len(counted)
    return out


def _plain(net: NetVotes) -> NetVotes:
    """Nested defaultdicts -> plain dicts (a missing key must read as missing, not as a new zero)."""
    return {q: {lf: dict(labels) for lf, labels in per_lf.items()} for q, per_lf in net.items()}


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
    if not labels:
        return None
    label, weight = top_label(labels)
    if weight > NOISE:
        return label, 1
    label, weight = top_label({k: -w for k, w in labels.items()})
    if weight > NOISE:
        return label, -1
    return None
