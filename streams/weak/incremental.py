"""Per-query sufficient statistics of the vote table: what incremental and sharded aggregation store.

A full aggregation (``streams.labels_job``) runs every labeling function over every search of the
window at once. Everything it computes from the searches is a *sum over searches* once three
things are pulled out of the per-search work, and this module keeps those sums, keyed by query, so
that they can be stored per time bucket, summed over any set of buckets and shards, and turned
into exactly the :class:`~streams.weak.vote_table.VoteTable` the full run would have built:

- **time decay** counts back from the newest search, which moves every run: a search's weight is
  stored against a fixed anchor (its bucket's start), ``2 ** ((ts - anchor) / half_life)``, and
  multiplied by ``2 ** ((anchor - newest) / half_life)`` when read (``decay_factor``): the product is
  the full run's ``decay(newest - ts)``;
- **position bias**: the propensity is fitted on all clicks of the window, so votes are folded as
  linear forms in it (``streams.weak.symbolic``) and evaluated once it is fitted; its own
  estimators need only impression and click counts per (query, product, rank), kept here too
  (``shown`` / ``clicks``); a search whose tabulation is not linear in the propensity is kept whole
  (``Folded.exceptions``) and tabulated at the end with the fitted one;
- counts (searches per query, searches and votes per function) are plain sums.

Keys are ``(dimension, kind, query, function, label, basis)``; pure, no I/O.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from store.dimensions import CATEGORY, INTENT_TYPE
from streams.events import FeedbackType, ItemKind
from streams.weak.functions import LabelingFunction
from streams.weak.intent_types import IntentTypeFunction, TypeTally
from streams.weak.propensity import ImpressionCounts, Propensity
from streams.weak.records import Interaction, SearchRecord
from streams.weak.symbolic import ONE, SymbolicPropensity, Undetermined, basis_value, terms_of
from streams.weak.vote_table import VoteTable, _Tally

__all__ = ["ONE"]  # re-exported: the basis of evaluated statistics

Key = tuple[str, str, str, str, str, str]  # dimension, kind, query, function, label, basis
# kinds whose values carry the search's decay weight (the rest are counts or undecayed strengths)
DECAYED = frozenset({"net", "support", "shares"})
MAX_RANK = 20  # streams.weak.propensity.impressions_from_records' default: deeper ranks are noise


def anchored_weight(ts: datetime, anchor: datetime, half_life_s: float | None) -> float:
    """A search's decay weight against a fixed ``anchor``: ``2 ** ((ts - anchor) / half_life)``."""
    if half_life_s is None:
        return 1.0
    return float(2.0 ** ((ts - anchor).total_seconds() / half_life_s))


def decay_factor(anchor: datetime, newest: datetime, half_life_s: float | None) -> float:
    """What turns weights anchored at ``anchor`` into the full run's decay from ``newest``."""
    if half_life_s is None:
        return 1.0
    return float(2.0 ** ((anchor - newest).total_seconds() / half_life_s))


@dataclass
class Folded:
    """The statistics of some searches: summed values per key, and the searches kept whole with
    their anchored weight (tabulated once the propensity is known)."""

    stats: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    exceptions: list[tuple[SearchRecord, float]] = field(default_factory=list)

    def add(self, key: Key, value: float) -> None:
        self.stats[key] += value


@dataclass(frozen=True)
class Folder:
    """Folds searches into :class:`Folded` statistics for the configured dimensions and functions."""

    catalog: Mapping[str, str | None]
    kinds: Mapping[str, ItemKind]
    lfs: Sequence[LabelingFunction]
    type_lfs: Sequence[IntentTypeFunction]
    dimensions: Sequence[str]
    half_life_s: float | None

    def fold(self, records: Iterable[SearchRecord], anchor: datetime, into: Folded | None = None) -> Folded:
        """The statistics of ``records``, weights anchored at ``anchor``."""
        out = into if into is not None else Folded()
        symbolic = SymbolicPropensity()
        tally = _Tally(self.catalog, self.lfs, symbolic, per_query_counts=True)  # type: ignore[arg-type]
        types = TypeTally(self.kinds, self.type_lfs, per_query_counts=True)
        category, intent_type = CATEGORY in self.dimensions, INTENT_TYPE in self.dimensions
        for rec in records:
            w = anchored_weight(rec.ts, anchor, self.half_life_s)
            if intent_type:
                types.add(rec, w)
            if category:
                _fold_impressions(rec, out)
                try:
                    tally.add(rec, w)
                except Undetermined:  # all or nothing: the tally is as it was
                    out.exceptions.append((rec, w))
        if category:
            assert tally.lf_counts is not None
            _fold_table(CATEGORY, tally.table(), tally.lf_counts, out)
        if intent_type:
            assert types.lf_counts is not None
            counts = {q: {lf: [n, n] for lf, n in per.items()} for q, per in types.lf_counts.items()}
            _fold_table(INTENT_TYPE, types.table(), counts, out)
        return out


def _fold_impressions(rec: SearchRecord, out: Folded) -> None:
    """The propensity's sufficient statistics ("shown" impressions policy, ranks under MAX_RANK)."""
    q, clicked = rec.norm_text, rec.clicked_positions()
    for r in range(min(len(rec.shown), MAX_RANK)):
        out.add((CATEGORY, "shown", q, "", rec.shown[r], str(r)), 1.0)
        if r in clicked:
            out.add((CATEGORY, "clicks", q, "", rec.shown[r], str(r)), 1.0)


def _fold_table(
    dimension: str, table: VoteTable, lf_counts: Mapping[str, Mapping[str, list[int]]], out: Folded
) -> None:
    """A vote table (its values possibly linear forms) into per-query statistics."""
    for q, n in table.searches.items():
        out.add((dimension, "searches", q, "", "", ONE), float(n))
    for q, per_lf in table.net.items():
        for lf, labels in per_lf.items():
            for label, value in labels.items():
                for basis, c in terms_of(value).items():
                    out.add((dimension, "net", q, lf, label, basis), c)
    for q, value in table.support.items():
        for basis, c in terms_of(value).items():
            out.add((dimension, "support", q, "", "", basis), c)
    for kind, weights in (("actions", table.actions or {}), ("shares", table.shares or {})):
        for q, labels in weights.items():
            for label, value in labels.items():
                for basis, c in terms_of(value).items():
                    out.add((dimension, kind, q, "", label, basis), c)
    for q, per in lf_counts.items():
        for lf, (n_searches, n_votes) in per.items():
            out.add((dimension, "lf_searches", q, lf, "", ONE), float(n_searches))
            out.add((dimension, "lf_votes", q, lf, "", ONE), float(n_votes))


def impression_counts(stats: Mapping[Key, float]) -> ImpressionCounts:
    """The propensity estimators' input from summed statistics."""
    pair_ids: dict[tuple[str, str], int] = {}
    cells: dict[tuple[int, int], list[float]] = {}
    for (_, kind, q, _, item, rank), value in stats.items():
        if kind not in ("shown", "clicks"):
            continue
        cell = cells.setdefault((pair_ids.setdefault((q, item), len(pair_ids)), int(rank)), [0.0, 0.0])
        cell[kind == "clicks"] += value
    pairs = np.fromiter((p for p, _ in cells), dtype=np.int64, count=len(cells))
    ranks = np.fromiter((r for _, r in cells), dtype=np.int64, count=len(cells))
    shown = np.fromiter((v[0] for v in cells.values()), dtype=np.float64, count=len(cells))
    clicks = np.fromiter((v[1] for v in cells.values()), dtype=np.float64, count=len(cells))
    return ImpressionCounts(pairs, ranks, shown, clicks)


def assemble(
    stats: Mapping[Key, float],
    dimension: str,
    lf_names: Sequence[str],
    propensity: Propensity | None = None,
) -> VoteTable:
    """The vote table of ``dimension`` from summed, decay-rescaled statistics, linear forms
    evaluated under the fitted ``propensity`` (one pass: this is the combining run's hot loop)."""
    factors: dict[str, float] = {}
    net: dict[str, dict[str, dict[str, float]]] = {}
    support: dict[str, float] = {}
    actions: dict[str, dict[str, float]] = {}
    shares: dict[str, dict[str, float]] = {}
    searches: dict[str, float] = {}
    lf_counts = {"lf_searches": dict.fromkeys(lf_names, 0.0), "lf_votes": dict.fromkeys(lf_names, 0.0)}
    for (dim, kind, q, lf, label, basis), value in stats.items():
        if dim != dimension or kind in ("shown", "clicks"):
            continue
        factor = factors.get(basis)
        if factor is None:
            factor = factors[basis] = basis_value(basis, propensity)
        v = value * factor
        if kind == "net":
            per = net.setdefault(q, {}).setdefault(lf, {})
            per[label] = per.get(label, 0.0) + v
        elif kind == "support":
            support[q] = support.get(q, 0.0) + v
        elif kind == "actions" or kind == "shares":
            per = (actions if kind == "actions" else shares).setdefault(q, {})
            per[label] = per.get(label, 0.0) + v
        elif kind == "searches":
            searches[q] = searches.get(q, 0.0) + v
        else:
            counts = lf_counts[kind]
            counts[lf] = counts.get(lf, 0.0) + v
    return VoteTable(
        net,
        support,
        {q: round(n) for q, n in searches.items()},
        {lf: round(n) for lf, n in lf_counts["lf_searches"].items()},
        {lf: round(n) for lf, n in lf_counts["lf_votes"].items()},
        actions,
        shares,
    )


def with_exceptions(
    table: VoteTable,
    exceptions: Sequence[tuple[SearchRecord, float]],
    catalog: Mapping[str, str | None],
    lfs: Sequence[LabelingFunction],
    propensity: Propensity | None,
) -> VoteTable:
    """``table`` plus the searches kept whole, tabulated with the fitted propensity (their weights
    already rescaled to the newest search)."""
    if not exceptions:
        return table
    tally = _Tally(catalog, lfs, propensity)
    for rec, w in exceptions:
        tally.add(rec, w)
    extra = tally.table()
    net = {q: {lf: dict(labels) for lf, labels in per.items()} for q, per in table.net.items()}
    for q, per in extra.net.items():
        for lf, labels in per.items():
            mine = net.setdefault(q, {}).setdefault(lf, {})
            for label, v in labels.items():
                mine[label] = mine.get(label, 0.0) + v
    return VoteTable(
        net,
        _add(table.support, extra.support),
        {q: n for q, n in _add(table.searches, extra.searches).items()},  # type: ignore[misc]
        _add(table.lf_searches, extra.lf_searches),  # type: ignore[arg-type]
        _add(table.lf_votes, extra.lf_votes),  # type: ignore[arg-type]
        _add_nested(table.actions or {}, extra.actions or {}),
        _add_nested(table.shares or {}, extra.shares or {}),
    )


def _add(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _add_nested(a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]]) -> dict:
    out = {q: dict(v) for q, v in a.items()}
    for q, labels in b.items():
        out[q] = _add(out.get(q, {}), labels)
    return out


def record_to_json(rec: SearchRecord) -> dict[str, Any]:
    """A search kept whole, as JSON for the store."""
    return {
        "query_id": rec.query_id,
        "session_id": rec.session_id,
        "ts": rec.ts.isoformat(),
        "norm_text": rec.norm_text,
        "shown": list(rec.shown),
        "interactions": [
            [i.type.value, i.product_id, i.position, i.dwell_ms, i.ts.isoformat()] for i in rec.interactions
        ],
        "next_norm_text": rec.next_norm_text,
        "next_gap_s": rec.next_gap_s,
    }


def record_from_json(data: Mapping[str, Any]) -> SearchRecord:
    return SearchRecord(
        query_id=data["query_id"],
        session_id=data["session_id"],
        ts=datetime.fromisoformat(data["ts"]),
        norm_text=data["norm_text"],
        shown=tuple(data["shown"]),
        interactions=tuple(
            Interaction(FeedbackType(t), pid, pos, dwell, datetime.fromisoformat(ts))
            for t, pid, pos, dwell, ts in data["interactions"]
        ),
        next_norm_text=data["next_norm_text"],
        next_gap_s=data["next_gap_s"],
    )


def records_from_linked_rows(rows: Iterable[Sequence[Any]]) -> list[SearchRecord]:
    """Records from rows that carry their session's next search themselves
    (``store.label_stats.iter_bucket_rows``): ``(query_id, session_id, ts, norm_text, shown,
    next_norm_text, next_ts, type, product_id, position, dwell_ms, feedback_ts)``, a search's rows
    together. Same records as :func:`~streams.weak.records.records_from_search_rows` builds."""
    heads: dict[str, Sequence[Any]] = {}
    interactions: dict[str, list[Interaction]] = defaultdict(list)
    for row in rows:
        heads.setdefault(row[0], row)
        if row[7] is not None:
            interactions[row[0]].append(Interaction(FeedbackType(row[7]), row[8], row[9], row[10], row[11]))
    out = [
        SearchRecord(
            query_id=h[0],
            session_id=h[1],
            ts=h[2],
            norm_text=h[3],
            shown=tuple(h[4] or ()),
            interactions=tuple(sorted(interactions.get(qid, ()), key=lambda i: (i.ts, i.position))),
            next_norm_text=h[5],
            next_gap_s=(h[6] - h[2]).total_seconds() if h[6] is not None else None,
        )
        for qid, h in heads.items()
    ]
    out.sort(key=lambda r: (r.ts, r.query_id))
    return out
