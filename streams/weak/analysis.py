"""How each labeling function behaves: coverage, overlap, conflict and accuracy on gold labels.

What ``intentloop labels report`` prints and the dashboard keeps: a function that covers little, or
conflicts a lot and is inaccurate where gold labels exist, is a candidate for a lower weight or
removal. Definitions follow Snorkel's ``LFAnalysis`` so the numbers read the same:

- coverage: share of queries the function answers (and of searches it casts a counted vote on);
- overlap: share of queries where it and at least one other function answer;
- conflict: share of queries where it answers and another function disagrees with it;
- accuracy: share of gold queries it answers that it gets right.

Each function's answer for a query is ``aggregate.lf_outputs``: its top label (for) or, for a
function that only voted against, the label it voted against. Two answers disagree when they are
for different labels, or one is for and the other against the same label; two "against" answers
never disagree. An "against" answer is right when the gold label is another one.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from streams.weak.policies import LabelDistribution
from streams.weak.vote_table import LFOutputs, VoteTable, lf_outputs

Answer = tuple[str, int]  # (label, +1 for / -1 against)


class AnalysedFunction(Protocol):
    """What the analysis needs of a labeling function, of either dimension."""

    @property
    def name(self) -> str: ...

    @property
    def polarity(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LFStats:
    """One labeling function's report line (shares are of all queries / searches in the table)."""

    name: str
    polarity: int
    n_votes: int
    search_coverage: float
    coverage: float
    overlap: float
    conflict: float
    accuracy: float | None  # None without gold labels it answers
    n_gold: int  # gold-labelled queries it answers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def disagree(a: Answer, b: Answer) -> bool:
    """Whether two functions' answers for one query contradict each other."""
    (la, sa), (lb, sb) = a, b
    if sa > 0 and sb > 0:
        return la != lb
    if sa < 0 and sb < 0:
        return False
    return la == lb


def correct(answer: Answer, gold: str) -> bool:
    """A "for" answer is right on the gold label, an "against" answer on any other label."""
    label, sign = answer
    return (label == gold) if sign > 0 else (label != gold)


def analyse(
    table: VoteTable, lfs: Sequence[AnalysedFunction], gold: Mapping[str, str] | None = None
) -> list[LFStats]:
    """One :class:`LFStats` per function in ``lfs`` (in that order), from a tabulated vote table."""
    outputs = lf_outputs(table)
    n_queries = max(len(table.searches), 1)
    n_searches = max(table.n_searches, 1)
    return [_stats(lf, outputs, table, n_queries, n_searches, gold or {}) for lf in lfs]


def _stats(
    lf: AnalysedFunction,
    outputs: LFOutputs,
    table: VoteTable,
    n_queries: int,
    n_searches: int,
    gold: Mapping[str, str],
) -> LFStats:
    answered = overlapping = conflicting = n_gold = right = 0
    for q, answers in outputs.items():
        mine = answers.get(lf.name)
        if mine is None:
            continue
        answered += 1
        others = [a for name, a in answers.items() if name != lf.name]
        overlapping += bool(others)
        conflicting += any(disagree(mine, other) for other in others)
        if q in gold:
            n_gold += 1
            right += correct(mine, gold[q])
    return LFStats(
        name=lf.name,
        polarity=lf.polarity,
        n_votes=table.lf_votes.get(lf.name, 0),
        search_coverage=table.lf_searches.get(lf.name, 0) / n_searches,
        coverage=answered / n_queries,
        overlap=overlapping / n_queries,
        conflict=conflicting / n_queries,
        accuracy=right / n_gold if n_gold else None,
        n_gold=n_gold,
    )


def report(stats: Sequence[LFStats]) -> list[dict[str, Any]]:
    """The rows as plain dicts (JSON for the dashboard's ``labeling_reports``)."""
    return [s.to_dict() for s in stats]


# Evidence buckets by how many searches typed the query: the long tail is the "1" bucket.
BUCKETS: tuple[tuple[str, int, int | None], ...] = (("1", 1, 1), ("2-3", 2, 3), ("4+", 4, None))


def bucket_of(searches: int) -> str:
    """The evidence bucket of a query searched ``searches`` times (0 counts as the 1 bucket)."""
    for name, low, high in BUCKETS:
        if searches >= low and (high is None or searches <= high):
            return name
    return BUCKETS[0][0]


def evidence_buckets(
    distributions: Mapping[str, LabelDistribution], gold: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Coverage and accuracy on ``gold`` per evidence bucket (1 search, 2-3, 4+).

    ``coverage`` is labelled / queries, ``evidence_coverage`` labelled / queries with any positive
    evidence (what abstention costs where shoppers did act), ``accuracy`` the top label's on the
    gold queries the bucket labels.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, _, _ in BUCKETS:
        rows = [d for d in distributions.values() if bucket_of(d.searches) == name]
        with_evidence = [d for d in rows if d.evidence > 0]
        labelled = [d for d in rows if not d.abstained and d.label is not None]
        scored = [d for d in labelled if d.norm_text in gold]
        right = sum(d.label == gold[d.norm_text] for d in scored)
        out[name] = {
            "queries": len(rows),
            "with_evidence": len(with_evidence),
            "labelled": len(labelled),
            "coverage": round(len(labelled) / len(rows), 4) if rows else None,
            "evidence_coverage": round(len(labelled) / len(with_evidence), 4) if with_evidence else None,
            "n_gold": len(scored),
            "accuracy": round(right / len(scored), 4) if scored else None,
        }
    return out
