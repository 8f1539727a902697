"""The aggregation job: stored search behaviour -> one label distribution per query, plus a report.

``intentloop labels aggregate`` and the demo run it between ingestion and training. Ingestion keeps
a cheap running vote per event (``weak_labels``); this job re-reads the searches of a window with
their full context, which per-event ingestion cannot see (what was skipped, what the shopper
searched next, how likely each rank was to be looked at), and so can correct for position bias,
weigh recent behaviour more, take negative evidence and learn how far to trust each function:

1. searches of the window (``labels.window_days`` back from the newest one) -> ``SearchRecord``;
2. examination propensity per rank fitted on those very clicks (``labels.propensity_method``);
3. every labeling function over every search, votes IPS-weighted and time-decayed, each shopper
   action also counted once;
4. the label policy per query (``labels.policy``): a Dirichlet posterior for every query with
   positive evidence (default), or the earlier thresholded majority vote;
5. with gold labels: a Dawid-Skene label model fitted on the functions' answers, used instead only
   when it beats the majority vote on gold by ``labels.label_model_margin``;
6. ``label_distributions`` replaced and a ``labeling_reports`` row added, in one transaction.

Every configured label dimension (``taxonomy.dimensions``) is labelled from the same searches:
``category`` by the product functions above, ``intent_type`` by ``streams.weak.intent_types``
(behaviour, destination kind and text cues; no position bias to correct), each through the same
policy, label model choice on its own gold labels, and report, stored under its dimension.

The pure parts are ``streams.weak``; this module only reads, wires and writes.
"""

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tqdm import tqdm

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.labels import (
    catalog_kinds,
    catalog_labels,
    gold_labels,
    iter_search_rows,
    newest_search_ts,
    record_labeling_report,
    replace_label_distributions,
    reviewed_gold,
)
from streams.events import ItemKind
from streams.exceptions import NothingToLabelError
from streams.weak import label_model
from streams.weak.analysis import AnalysedFunction, analyse, evidence_buckets, report
from streams.weak.functions import DEFAULT_LFS, LabelingFunction
from streams.weak.intent_types import DEFAULT_TYPE_LFS, IntentTypeFunction, tabulate_types
from streams.weak.policies import (
    DirichletPosterior,
    LabelDistribution,
    LabelPolicy,
    Threshold,
    label_all,
    label_prior,
)
from streams.weak.propensity import Propensity, estimate_propensity
from streams.weak.records import SearchRecord, records_from_search_rows
from streams.weak.settings import LabelSettings
from streams.weak.vote_table import VoteTable, lf_outputs, tabulate

log = logging.getLogger(__name__)

MAJORITY = "majority"
DAWID_SKENE = "dawid_skene"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DimensionResult:
    """What one run wrote for one dimension: the report (stored as ``report_id``) and the
    distributions."""

    report_id: int
    report: dict[str, Any]
    distributions: dict[str, LabelDistribution]

    def summary(self) -> dict[str, Any]:
        """The headline numbers: no per-function or per-rank detail."""
        r = self.report
        return {
            "report_id": self.report_id,
            "method": r["method"],
            "searches": r["searches"],
            "queries": r["queries"],
            "labelled": r["labelled"],
            "abstained": r["abstained"]["total"],
            "coverage": r["coverage"],
            "evidence_coverage": r.get("evidence_coverage"),
            "policy": r.get("policy"),
            "gold": r["comparison"]["n_gold"],
            "gold_accuracy": r["gold_accuracy"],
            "wall_s": r["wall_s"],
        }


@dataclass(frozen=True)
class AggregationResult:
    """What one run wrote, per dimension; the category's result is the run's headline (its
    ``report_id``, ``report`` and ``distributions``), as before dimensions existed."""

    dimensions: dict[str, DimensionResult]
    # what an incremental run folded (streams.labels_incremental.FoldSummary.as_dict); None: full run
    fold: dict[str, Any] | None = None

    @property
    def category(self) -> DimensionResult:
        return self.dimensions[CATEGORY]

    @property
    def report_id(self) -> int:
        return self.category.report_id

    @property
    def report(self) -> dict[str, Any]:
        return self.category.report

    @property
    def distributions(self) -> dict[str, LabelDistribution]:
        return self.category.distributions

    @property
    def method(self) -> str:
        return str(self.report["method"])

    def summary(self) -> dict[str, Any]:
        """The headline numbers (the CLI's JSON line): the category's, and each other dimension's
        under ``dimensions``."""
        others = {d: r.summary() for d, r in self.dimensions.items() if d != CATEGORY}
        head = self.category.summary() | {"mode": "full" if self.fold is None else "incremental"}
        return head | ({"dimensions": others} if others else {}) | ({"fold": self.fold} if self.fold else {})


def run_aggregation(
    db: Database,
    settings: LabelSettings,
    *,
    dimensions: Sequence[str] = (CATEGORY,),
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    type_lfs: Sequence[IntentTypeFunction] = DEFAULT_TYPE_LFS,
    progress: bool = True,
) -> AggregationResult:
    """Aggregate the window's searches into label distributions of every dimension in
    ``dimensions`` and store them with a report each.

    Raises :class:`NothingToLabelError` when there is no search to label (nothing is replaced then:
    an empty window must not wipe out the labels training currently reads).
    """
    started = time.monotonic()
    with db.session() as session:
        newest = newest_search_ts(session)
        if newest is None:
            raise NothingToLabelError("no searches are stored yet: ingest traffic first")
        since = newest - timedelta(seconds=settings.window_s) if settings.window_s is not None else _EPOCH
        rows = tqdm(
            iter_search_rows(session, since=since),
            desc="reading searches",
            unit="row",
            disable=not progress,
            leave=False,
        )
        records = records_from_search_rows(rows)
        catalog = catalog_labels(session)
        kinds = {pid: ItemKind(kind) for pid, kind in catalog_kinds(session).items()}
        gold = {d: {g.norm_text: g.label for g in gold_labels(session, dimension=d)} for d in dimensions}
        reviewed = {d: reviewed_gold(session, d) for d in dimensions}  # the review page's share of gold
    if not records:
        raise NothingToLabelError(f"no searches since {since.isoformat()} (INTENTLOOP_LABELS__WINDOW_DAYS)")
    labelled: dict[str, tuple[dict[str, LabelDistribution], dict[str, Any]]] = {}
    for dimension in dimensions:
        if dimension == INTENT_TYPE:
            labelled[dimension] = label_type_records(
                records,
                kinds,
                gold[dimension],
                settings,
                lfs=type_lfs,
                reviewed=reviewed[dimension],
                window=(since, newest),
                progress=progress,
            )
        else:
            labelled[dimension] = label_records(
                records,
                catalog,
                gold[dimension],
                settings,
                lfs=lfs,
                reviewed=reviewed[dimension],
                window=(since, newest),
                progress=progress,
            )
    return write_results(db, labelled, started=started, n_searches=len(records))


def write_results(
    db: Database,
    labelled: Mapping[str, tuple[dict[str, LabelDistribution], dict[str, Any]]],
    *,
    started: float,
    n_searches: int,
) -> AggregationResult:
    """Step 6, shared by the full and the incremental run: every dimension's distributions
    replaced and its report added, in one transaction (readers never see a mix)."""
    wall_s = round(time.monotonic() - started, 2)
    results: dict[str, DimensionResult] = {}
    with db.session() as session:
        for dimension, (chosen, report_body) in labelled.items():
            method = report_body["method"]
            rows_out = [d.to_dict() | {"method": method} for d in chosen.values()]
            report_body["wall_s"] = wall_s
            report_body["dimension"] = dimension
            replace_label_distributions(session, rows_out, dimension)
            report_id = record_labeling_report(session, report_body, dimension)
            results[dimension] = DimensionResult(report_id, report_body, chosen)
    for dimension, r in results.items():
        log.info(
            "aggregated %d searches into %d queries of %s (%d labelled, method %s) in %.1fs: report %d",
            n_searches,
            r.report["queries"],
            dimension,
            r.report["labelled"],
            r.report["method"],
            wall_s,
            r.report_id,
        )
    return AggregationResult(results)


def label_records(
    records: Sequence[SearchRecord],
    catalog: Mapping[str, str | None],
    gold: Mapping[str, str],
    settings: LabelSettings,
    *,
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    window: tuple[datetime, datetime] | None = None,
    progress: bool = False,
    reviewed: Mapping[str, str] | None = None,
) -> tuple[dict[str, LabelDistribution], dict[str, Any]]:
    """Steps 2-5 on records already read (pure: the job and ``bench train`` share it): the label
    distribution per query and the report. Time decay counts back from the newest record.
    ``reviewed``: the part of ``gold`` people labelled on the review page (reported apart)."""
    table, propensity = vote_table(records, catalog, settings, lfs=lfs, progress=progress)
    window = window or (min(r.ts for r in records), max(r.ts for r in records))
    return label_table(table, len(records), lfs, gold, settings, window, propensity.theta, reviewed or {})


def label_type_records(
    records: Sequence[SearchRecord],
    kinds: Mapping[str, ItemKind],
    gold: Mapping[str, str],
    settings: LabelSettings,
    *,
    lfs: Sequence[IntentTypeFunction] = DEFAULT_TYPE_LFS,
    window: tuple[datetime, datetime] | None = None,
    progress: bool = False,
    reviewed: Mapping[str, str] | None = None,
) -> tuple[dict[str, LabelDistribution], dict[str, Any]]:
    """:func:`label_records` for the intent-type dimension: the same policy, label-model choice
    and report over the intent-type functions' table (no propensity: ``theta`` is empty)."""
    newest = max(r.ts for r in records)
    table = tabulate_types(
        records, kinds, lfs, now=newest, half_life_s=settings.half_life_s, progress=progress
    )
    window = window or (min(r.ts for r in records), newest)
    return label_table(table, len(records), lfs, gold, settings, window, (), reviewed or {})


def label_table(
    table: VoteTable,
    n_searches: int,
    lfs: Sequence[AnalysedFunction],
    gold: Mapping[str, str],
    settings: LabelSettings,
    window: tuple[datetime, datetime],
    theta: Sequence[float],
    reviewed: Mapping[str, str],
) -> tuple[dict[str, LabelDistribution], dict[str, Any]]:
    """Steps 4-5 and the report on a tabulated dimension: policy, label-model choice on gold
    (the full and the incremental run share it from the vote table on)."""
    policy = label_policy(table, settings)
    voted = label_all(table, policy)
    chosen, comparison, model_info = _choose(table, voted, gold, settings, policy)
    report_body = build_report(
        settings=settings,
        window=window,
        n_searches=n_searches,
        distributions=chosen,
        method=comparison["use"],
        theta=theta,
        lf_rows=lf_report(table, lfs, gold, reviewed),
        comparison=comparison,
        model_info=model_info,
        gold=gold,
        prior=getattr(policy, "prior", None),
        reviewed=reviewed,
    )
    return chosen, report_body


def lf_report(
    table: VoteTable, lfs: Sequence[AnalysedFunction], gold: Mapping[str, str], reviewed: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One report row per function: its analysis on all gold, plus ``review_accuracy`` and
    ``n_review`` on the reviewed part of it alone (reviewed queries were chosen where the model
    was unsure or the functions silent, so a function's accuracy there is its accuracy where it
    matters, not on the easy queries files tend to hold)."""
    rows = report(analyse(table, lfs, gold))
    on_review = analyse(table, lfs, reviewed) if reviewed else []
    for i, row in enumerate(rows):
        row["review_accuracy"] = on_review[i].accuracy if on_review else None
        row["n_review"] = on_review[i].n_gold if on_review else 0
    return rows


def vote_table(
    records: Sequence[SearchRecord],
    catalog: Mapping[str, str | None],
    settings: LabelSettings,
    *,
    lfs: Sequence[LabelingFunction] = DEFAULT_LFS,
    progress: bool = False,
) -> tuple[VoteTable, Propensity]:
    """Steps 2-3: the position-bias estimate and every function's votes on ``records``, decayed from
    the newest one. Its ``actions`` are also what the behaviour memory of a fused model remembers."""
    newest = max(r.ts for r in records)
    propensity = estimate_propensity(
        records, method=settings.propensity_method, max_weight=settings.max_ips_weight
    )
    table = tabulate(
        records, catalog, lfs, propensity, now=newest, half_life_s=settings.half_life_s, progress=progress
    )
    return table, propensity


def label_policy(table: VoteTable, settings: LabelSettings) -> LabelPolicy:
    """The configured policy; the posterior's prior is the label mix of ``table`` itself."""
    if settings.policy == "threshold":
        return Threshold(settings.min_evidence, settings.min_confidence)
    return DirichletPosterior(
        label_prior(table), settings.prior_strength, settings.min_evidence, settings.min_confidence
    )


def _choose(
    table: VoteTable,
    voted: dict[str, LabelDistribution],
    gold: Mapping[str, str],
    settings: LabelSettings,
    policy: LabelPolicy,
) -> tuple[dict[str, LabelDistribution], dict[str, Any], dict[str, Any]]:
    """Majority vote, or the label model where it wins on gold; returns (distributions, comparison,
    model details).

    Without gold labels there is nothing to compare on, so the label model is not even fitted: the
    majority vote is the default and stays so until someone loads gold labels.
    """
    if not gold:
        comparison = label_model.compare({}, voted, {}, margin=settings.label_model_margin)
        return voted, comparison | {"reason": "no gold labels: load some with `labels gold load`"}, {}
    outputs = lf_outputs(table)
    model = label_model.fit(outputs)
    modelled = label_model.distributions(model.predict(outputs), table, policy=policy)
    # Score the model on what it would actually label, after the same abstention rules as majority.
    used = {q: d.distribution for q, d in modelled.items() if not d.abstained}
    comparison = label_model.compare(gold, voted, used, margin=settings.label_model_margin)
    model_info = {"n_iter": model.n_iter, "labels": len(model.labels), "functions": list(model.lfs)}
    if comparison["use"] != DAWID_SKENE:
        return voted, comparison, model_info
    # Queries the model has no answer for (no function fired) keep majority's no-evidence row.
    return {q: modelled.get(q, d) for q, d in voted.items()}, comparison, model_info


def build_report(
    *,
    settings: LabelSettings,
    window: tuple[datetime, datetime],
    n_searches: int,
    distributions: Mapping[str, LabelDistribution],
    method: str,
    theta: Sequence[float],
    lf_rows: list[dict[str, Any]],
    comparison: dict[str, Any],
    model_info: dict[str, Any],
    gold: Mapping[str, str],
    prior: Mapping[str, float] | None = None,
    reviewed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The stored report (JSON): what the dashboard and ``intentloop labels report`` show.

    Pure, so its shape is tested without a database.
    """
    labelled = {q: d for q, d in distributions.items() if not d.abstained and d.label is not None}
    reasons = Counter(d.reason for d in distributions.values() if d.abstained)
    scored = [q for q in labelled if q in gold]
    reviewed = reviewed or {}
    on_review = [q for q in labelled if q in reviewed]
    with_evidence = sum(1 for d in distributions.values() if d.evidence > 0)
    return {
        "computed_at": datetime.now(UTC).isoformat(),
        "window": {"since": window[0].isoformat(), "until": window[1].isoformat()},
        "settings": settings.model_dump(mode="json"),
        "method": method,
        "searches": n_searches,
        "queries": len(distributions),
        "labelled": len(labelled),
        "coverage": round(len(labelled) / max(len(distributions), 1), 4),
        "abstained": {"total": sum(reasons.values()), "by_reason": dict(sorted(reasons.items()))},
        "policy": settings.policy,
        "evidence_coverage": round(len(labelled) / with_evidence, 4) if with_evidence else None,
        "buckets": evidence_buckets(distributions, gold),
        "prior": (
            {k: round(v, 4) for k, v in sorted(prior.items(), key=lambda kv: -kv[1])[:20]} if prior else None
        ),
        "gold_accuracy": (
            round(sum(labelled[q].label == gold[q] for q in scored) / len(scored), 4) if scored else None
        ),
        "n_gold": len(gold),
        "n_review": len(reviewed),
        "review_accuracy": (
            round(sum(labelled[q].label == reviewed[q] for q in on_review) / len(on_review), 4)
            if on_review
            else None
        ),
        "propensity": {
            "method": settings.propensity_method,
            "theta": [round(t, 4) for t in theta],
        },
        "labeling_functions": lf_rows,
        "comparison": comparison,
        "label_model": model_info,
    }
