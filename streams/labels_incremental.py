"""Incremental, shardable aggregation: the default of ``intentloop labels aggregate``.

The full run (``streams.labels_job.run_aggregation``, ``--full``) re-reads every search of the
window and runs every labeling function over it. This one keeps per-query sufficient statistics
(``streams.weak.incremental``) in Postgres per *time bucket* of searches (``labels.bucket_hours``)
and only folds the buckets that changed; its result equals the full run's, to float rounding
(``tests/integration/test_labels_incremental.py`` asserts it). How each hard part stays exact:

- **the window slides**: statistics are kept per bucket, so a bucket that left the window is
  dropped whole; the bucket the window starts in is partly outside it, so its searches from the
  window start on are read and folded in memory every run (one bucket's worth);
- **late feedback and late searches**: every run fingerprints each bucket in SQL (its searches and
  their feedback, counted and hashed: both are append-only, so any addition moves a count) and
  refolds a bucket whose fingerprint changed since it was folded. A new search can also change
  the *previous* search of its session (whose "next search" it becomes: what a reformulation
  function reads), so the buckets of those predecessors are refolded too;
- **time decay** counts back from the newest search: stored weights are anchored at their
  bucket's start and rescaled when summed;
- **position bias**: the propensity is refitted every run from stored impression counts and
  applied to votes stored as linear forms in it; the rare search whose votes are not linear in
  the propensity is stored whole and tabulated with the fitted propensity at the end;
- **the label model, the policy prior, the function analysis and the report** are global but only
  read the per-query table: they run on the assembled table every time, as in the full run;
- **settings, labeling functions or the catalog changed**: they are part of each fold's ``config``;
  a change refolds every bucket (past votes depend on them).

Sharding: ``--shard i/N`` folds only the queries with ``md5(query) % N == i``
(``store.label_stats.query_hash``) of the stale buckets and writes nothing else; N such processes
can run at once (an indexed Kubernetes Job). The plain run afterwards reuses every bucket all N
shards folded against its current fingerprint, folds what is still stale (what arrived since)
itself, and combines.
"""

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tqdm import tqdm

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.label_stats import (
    FoldState,
    bucket_fingerprints,
    catalog_digest,
    drop_buckets,
    fold_states,
    impression_cells,
    iter_bucket_rows,
    iter_buckets_rows,
    kept_records,
    predecessor_buckets,
    replace_bucket,
    summed_stats,
)
from store.labels import catalog_kinds, catalog_labels, gold_labels, newest_search_ts, reviewed_gold
from streams.events import ItemKind
from streams.exceptions import NothingToLabelError
from streams.labels_job import AggregationResult, label_table, write_results
from streams.weak.functions import DEFAULT_LFS, LabelingFunction
from streams.weak.incremental import (
    DECAYED,
    ONE,
    Folded,
    Folder,
    Key,
    assemble,
    decay_factor,
    impression_counts,
    record_from_json,
    record_to_json,
    records_from_linked_rows,
    with_exceptions,
)
from streams.weak.intent_types import DEFAULT_TYPE_LFS, IntentTypeFunction
from streams.weak.propensity import Propensity, fit_counts
from streams.weak.settings import LabelSettings
from streams.weak.vote_table import VoteTable

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORMAT = 1  # bumped when what is stored per bucket changes meaning: every bucket is refolded


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the queries with ``md5(query) % count == index``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str) -> "Shard":
        """``"i/N"`` (0 <= i < N), as ``--shard`` takes it."""
        try:
            index, count = (int(part) for part in spec.split("/"))
        except ValueError:
            raise ValueError(f"a shard is i/N, e.g. 0/4, got {spec!r}") from None
        if not 0 <= index < count:
            raise ValueError(f"shard index must be in [0, {count}), got {spec!r}")
        return cls(index, count)


@dataclass(frozen=True)
class FoldSummary:
    """What one process folded: buckets refolded, searches read, searches kept whole, buckets that
    were already current, and the seconds spent."""

    shard: str
    folded_buckets: int
    folded_searches: int
    kept_whole: int
    current_buckets: int
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Inputs:
    """What folding needs from the store, read once per run."""

    newest: datetime
    since: datetime
    first: int  # the bucket the window starts in: recomputed every run, never stored
    fingerprints: dict[int, str]  # every later bucket of the window
    config: str
    catalog: dict[str, str]
    kinds: dict[str, ItemKind]


def _bucket_us(bucket_s: float) -> int:
    return round(bucket_s * 1_000_000)


def _bucket_start(bucket: int, bucket_s: float) -> datetime:
    """Exact, in integer microseconds, as the store's numeric bucket arithmetic."""
    return _EPOCH + timedelta(microseconds=bucket * _bucket_us(bucket_s))


def _bucket_of(ts: datetime, bucket_s: float) -> int:
    return ((ts - _EPOCH) // timedelta(microseconds=1)) // _bucket_us(bucket_s)


def _config(
    settings: LabelSettings,
    dimensions: Sequence[str],
    lfs: Sequence[LabelingFunction],
    type_lfs: Sequence[IntentTypeFunction],
    catalog: str,
) -> str:
    """Everything a bucket's statistics depend on besides its searches."""
    return json.dumps(
        {
            "format": _FORMAT,
            "bucket_s": settings.bucket_s,
            "half_life_s": settings.half_life_s,
            "dimensions": sorted(dimensions),
            "lfs": [repr(lf) for lf in lfs] if CATEGORY in dimensions else [],
            "type_lfs": [repr(lf) for lf in type_lfs] if INTENT_TYPE in dimensions else [],
            "catalog": catalog,
        },
        sort_keys=True,
    )


def _read_inputs(
    db: Database,
    settings: LabelSettings,
    dimensions: Sequence[str],
    lfs: Sequence[LabelingFunction],
    type_lfs: Sequence[IntentTypeFunction],
) -> _Inputs:
    with db.session() as session:
        newest = newest_search_ts(session)
        if newest is None:
            raise NothingToLabelError("no searches are stored yet: ingest traffic first")
        since = newest - timedelta(seconds=settings.window_s) if settings.window_s is not None else _EPOCH
        first = _bucket_of(since, settings.bucket_s)
        later = _bucket_start(first + 1, settings.bucket_s)
        fingerprints = bucket_fingerprints(session, since=later, bucket_s=settings.bucket_s)
        config = _config(settings, dimensions, lfs, type_lfs, catalog_digest(session))
        catalog = catalog_labels(session)
        kinds = {pid: ItemKind(kind) for pid, kind in catalog_kinds(session).items()}
    return _Inputs(newest, since, first, fingerprints, config, catalog, kinds)


def _is_current(
    states: Sequence[FoldState], fingerprint: str, config: str, shard: Shard, combine: bool
) -> bool:
    """Whether a bucket's stored statistics are those of its current searches for ``shard``; the
    combining run also accepts a complete set of shards of any count."""
    fresh = {(s.n_shards, s.shard) for s in states if s.fingerprint == fingerprint and s.config == config}
    if (shard.count, shard.index) in fresh:
        return True
    if not combine:
        return False
    counts = {n for n, _ in fresh}
    return any(all((n, i) in fresh for i in range(n)) for n in counts)


def fold(
    db: Database,
    settings: LabelSettings,
    *,
    shard: Shard = Shard(),
    dimensions: Sequence[str] = (CATEGORY,),
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    type_lfs: Sequence[IntentTypeFunction] = DEFAULT_TYPE_LFS,
    progress: bool = True,
    _inputs: _Inputs | None = None,
    _combine: bool = False,
) -> FoldSummary:
    """Fold ``shard``'s queries of every bucket whose searches, feedback or configuration changed
    since it was last folded (``--shard i/N``); writes statistics only, no labels."""
    started = time.monotonic()
    inputs = _inputs or _read_inputs(db, settings, dimensions, lfs, type_lfs)
    bs = settings.bucket_s
    with db.session() as session:
        by_bucket: dict[int, list[FoldState]] = {}
        for state in fold_states(session):
            by_bucket.setdefault(state.bucket, []).append(state)
        stale = {
            b
            for b, fp in inputs.fingerprints.items()
            if not _is_current(by_bucket.get(b, []), fp, inputs.config, shard, _combine)
        }
        for b in sorted(stale):  # a new search is the new "next search" of its predecessor
            lo, hi = _bucket_start(b, bs), _bucket_start(b + 1, bs)
            stale |= predecessor_buckets(session, lo=lo, hi=hi, bucket_s=bs) & inputs.fingerprints.keys()
    folder = Folder(inputs.catalog, inputs.kinds, lfs, type_lfs, dimensions, settings.half_life_s)
    n_searches = kept = 0
    order = sorted(stale)
    # One statement reads every stale bucket (feedback is scanned once, not once per bucket); each
    # bucket's statistics are swapped in by a transaction of its own as its rows arrive.
    with db.session() as reading:
        found = iter_buckets_rows(
            reading,
            buckets=order,
            lo=_bucket_start(order[0], bs) if order else inputs.since,
            hi=_bucket_start(order[-1] + 1, bs) if order else inputs.since,
            bucket_s=bs,
            shard=shard.index,
            n_shards=shard.count,
        )
        pending = next(found, None)
        for b in tqdm(order, desc=f"folding buckets ({shard.index}/{shard.count})", disable=not progress):
            rows: list[Sequence[Any]] = []
            if pending is not None and pending[0] == b:  # a bucket without searches of this shard: none
                rows, pending = pending[1], next(found, None)
            n_searches, kept = _fold_bucket(
                db, folder, b, rows, shard, inputs, bucket_s=bs, n_searches=n_searches, kept=kept
            )
    summary = FoldSummary(
        shard=f"{shard.index}/{shard.count}",
        folded_buckets=len(stale),
        folded_searches=n_searches,
        kept_whole=kept,
        current_buckets=len(inputs.fingerprints) - len(stale),
        wall_s=round(time.monotonic() - started, 2),
    )
    log.info("folded %s", summary.as_dict())
    return summary


def _fold_bucket(
    db: Database,
    folder: Folder,
    bucket: int,
    rows: Sequence[Sequence[Any]],
    shard: Shard,
    inputs: _Inputs,
    *,
    bucket_s: float,
    n_searches: int,
    kept: int,
) -> tuple[int, int]:
    """Fold one bucket's rows and swap its statistics in (its own transaction); the running counts
    of searches folded and kept whole, updated."""
    lo = _bucket_start(bucket, bucket_s)
    records = records_from_linked_rows(rows)
    folded = folder.fold(records, anchor=lo)
    with db.session() as session:
        replace_bucket(
            session,
            bucket=bucket,
            shard=shard.index,
            n_shards=shard.count,
            fingerprint=inputs.fingerprints[bucket],
            config=inputs.config,
            stats=folded.stats,
            records=[(record_to_json(r), r.norm_text, w) for r, w in folded.exceptions],
        )
    return n_searches + len(records), kept + len(folded.exceptions)


def run_incremental(
    db: Database,
    settings: LabelSettings,
    *,
    dimensions: Sequence[str] = (CATEGORY,),
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    type_lfs: Sequence[IntentTypeFunction] = DEFAULT_TYPE_LFS,
    progress: bool = True,
) -> AggregationResult:
    """Fold what changed, then label every query of the window from the summed statistics and
    store distributions and reports exactly as :func:`~streams.labels_job.run_aggregation` does.

    Raises :class:`NothingToLabelError` when the window holds no search (nothing is replaced).
    """
    started = time.monotonic()
    inputs = _read_inputs(db, settings, dimensions, lfs, type_lfs)
    summary = fold(
        db,
        settings,
        dimensions=dimensions,
        lfs=lfs,
        type_lfs=type_lfs,
        progress=progress,
        _inputs=inputs,
        _combine=True,
    )
    stats, kept, propensity = _summed(db, settings, inputs, dimensions, lfs, type_lfs)
    tables: dict[str, VoteTable] = {}
    for dimension in dimensions:
        if dimension == INTENT_TYPE:
            tables[dimension] = assemble(stats, dimension, [lf.name for lf in type_lfs])
        else:
            table = assemble(stats, dimension, [lf.name for lf in lfs], propensity)
            tables[dimension] = with_exceptions(table, kept, inputs.catalog, lfs, propensity)
    n_searches = tables[dimensions[0]].n_searches
    if not n_searches:
        raise NothingToLabelError(
            f"no searches since {inputs.since.isoformat()} (INTENTLOOP_LABELS__WINDOW_DAYS)"
        )
    with db.session() as session:
        gold = {d: {g.norm_text: g.label for g in gold_labels(session, dimension=d)} for d in dimensions}
        reviewed = {d: reviewed_gold(session, d) for d in dimensions}
    theta = propensity.theta if propensity is not None else ()
    labelled = {
        d: label_table(
            tables[d],
            n_searches,
            type_lfs if d == INTENT_TYPE else lfs,
            gold[d],
            settings,
            (inputs.since, inputs.newest),
            theta if d != INTENT_TYPE else (),
            reviewed[d],
        )
        for d in dimensions
    }
    result = write_results(db, labelled, started=started, n_searches=n_searches)
    return AggregationResult(result.dimensions, fold=summary.as_dict())


def _summed(
    db: Database,
    settings: LabelSettings,
    inputs: _Inputs,
    dimensions: Sequence[str],
    lfs: Sequence[LabelingFunction],
    type_lfs: Sequence[IntentTypeFunction],
) -> tuple[dict[Key, float], list[Any], Propensity | None]:
    """Every bucket's statistics summed, rescaled to the newest search and evaluated under the
    propensity fitted on them, plus the window's first bucket folded now; the searches kept whole
    (with their rescaled weights); the propensity."""
    bs, hl = settings.bucket_s, settings.half_life_s
    buckets = sorted(inputs.fingerprints)
    folder = Folder(inputs.catalog, inputs.kinds, lfs, type_lfs, dimensions, hl)
    first_lo = _bucket_start(inputs.first, bs)
    with db.session() as session:
        stale_out = [s.bucket for s in fold_states(session) if s.bucket not in inputs.fingerprints]
        drop_buckets(session, stale_out)  # left the window (or now its partly-read first bucket)
        rows = iter_bucket_rows(session, lo=inputs.since, hi=_bucket_start(inputs.first + 1, bs))
        live = folder.fold(records_from_linked_rows(rows), anchor=first_lo)
        # the live bucket's statistics, its impressions apart: the propensity comes first
        stats: dict[Key, float] = {}
        _add_rescaled(stats, live, decay_factor(first_lo, inputs.newest, hl))
        impressions = {k: v for k, v in stats.items() if k[1] in ("shown", "clicks")}
        propensity = None
        if CATEGORY in dimensions:
            live_queries = sorted({k[2] for k in impressions})
            cells = impression_cells(session, buckets=buckets, dimension=CATEGORY, also=live_queries)
            for q, item, rank, shown, clicks in (tuple(row) for row in cells):
                key = (CATEGORY, "shown", q, "", item, rank)
                impressions[key] = impressions.get(key, 0.0) + float(shown)
                if clicks:
                    key = (CATEGORY, "clicks", q, "", item, rank)
                    impressions[key] = impressions.get(key, 0.0) + float(clicks)
            propensity = fitted_propensity(impressions, settings)
        factors = evaluation_factors(propensity)
        for row in summed_stats(
            session, buckets=buckets, bucket_s=bs, newest=inputs.newest, half_life_s=hl, factors=factors
        ):
            key = (*row[:5], ONE)
            stats[key] = stats.get(key, 0.0) + float(row[5])  # type: ignore[index]
        kept = [
            (record_from_json(r), w * decay_factor(_bucket_start(b, bs), inputs.newest, hl))
            for b, w, r in kept_records(session, buckets)
        ]
    kept += [(r, w * decay_factor(first_lo, inputs.newest, hl)) for r, w in live.exceptions]
    return stats, kept, propensity


_RANKS = 1000  # IPS factors and examination probabilities handed to SQL; deeper ranks take the last


def evaluation_factors(propensity: Propensity | None) -> tuple[list[float], list[float]]:
    """Per rank, the IPS factor and the examination probability (``store.label_stats`` applies
    them to the stored linear forms)."""
    if propensity is None:
        return [1.0] * _RANKS, [1.0] * _RANKS
    return (
        [propensity.weight(r) for r in range(_RANKS)],
        [propensity.examination(r) for r in range(_RANKS)],
    )


def _add_rescaled(stats: dict[Key, float], folded: Folded, factor: float) -> None:
    for key, value in folded.stats.items():
        stats[key] = stats.get(key, 0.0) + (value * factor if key[1] in DECAYED else value)


def fitted_propensity(stats: Mapping[Key, float], settings: LabelSettings) -> Propensity:
    """The window's propensity from summed statistics (what the report's theta shows)."""
    return fit_counts(impression_counts(stats), settings.propensity_method, settings.max_ips_weight)
