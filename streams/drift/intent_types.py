"""Drift of the intent type, and the help-surge alert.

The intent type has no ingestion-time vote (it needs the whole search: what was opened, for how
long, what was carted), so its stream is computed by the drift job from the window's stored
searches: each search's top intent-type vote (``streams.weak.intent_types``), searches without any
vote left out. It is compared with the previous window like the other streams; against the
champion's training snapshot it is not (the snapshot records the category's label counts only).

A **help surge** is its own alert: a window where the share of *help* searches is at least
``help_surge_factor`` times, and ``help_surge_min_delta`` above, the share over the windows before
it in the check. Shoppers searching for refunds, order status and broken products in numbers is
an incident before it is a drift: a checkout outage, a delivery wave gone wrong, a recalled product.
"""

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from store.db import Database
from store.labels import catalog_kinds, iter_search_rows
from streams.drift.stats import Comparison, Thresholds, compare
from streams.events import ItemKind
from streams.weak.intent_types import HELP, type_votes
from streams.weak.records import records_from_search_rows

WindowCounts = dict[datetime, dict[str, int]]


def intent_type_window_counts(
    db: Database, *, since: datetime, until: datetime, window_s: int
) -> WindowCounts:
    """Window start -> {intent type: searches whose top vote it is}, for searches in ``[since, until)``."""
    with db.session() as session:
        kinds = {pid: ItemKind(kind) for pid, kind in catalog_kinds(session).items()}
        records = records_from_search_rows(iter_search_rows(session, since=since, until=until))
    out: dict[datetime, Counter[str]] = {}
    for rec in records:
        votes = type_votes(rec, kinds)
        if not votes:
            continue
        weights: dict[str, float] = {}
        for v in votes:
            weights[v.label] = weights.get(v.label, 0.0) + v.weight
        top = max(sorted(weights), key=lambda label: weights[label])
        start = datetime.fromtimestamp(int(rec.ts.timestamp()) // window_s * window_s, rec.ts.tzinfo)
        out.setdefault(start, Counter())[top] += 1
    return {start: dict(c) for start, c in out.items()}


def help_surges(
    counts: WindowCounts,
    lo: datetime,
    hi: datetime,
    window_s: int,
    thresholds: Thresholds,
    *,
    factor: float,
    min_delta: float,
    min_searches: int,
) -> list[tuple[datetime, Comparison]]:
    """Per window in ``[lo, hi)`` with a baseline before it: the window against the pooled windows
    before it, its verdict the help-surge rule's (the statistics are the usual ones, for the page)."""
    out = []
    start = lo
    baseline: Counter[str] = Counter()
    for earlier, window in counts.items():
        if earlier < lo:
            baseline.update(window)
    while start < hi:
        current = counts.get(start)
        if current and sum(baseline.values()) > 0:
            n, n_ref = sum(current.values()), sum(baseline.values())
            share, ref_share = current.get(HELP, 0) / n, baseline.get(HELP, 0) / n_ref
            c = compare(current, dict(baseline), thresholds)
            surge = n >= min_searches and share >= factor * ref_share and share - ref_share >= min_delta
            why = (
                f"help surge: {share:.1%} of {n} searches were help searches, against {ref_share:.1%} "
                f"before (x{share / ref_share if ref_share else float('inf'):.1f})"
            )
            status: Any = "alert" if surge else ("ok" if n >= min_searches else "insufficient")
            out.append((start, replace(c, status=status, reasons=[why] if surge else [])))
        if current:
            baseline.update(current)
        start += timedelta(seconds=window_s)
    return out
