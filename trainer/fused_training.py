"""The trainer's fusion step: the cheap members beside a fresh adapter, and the fusion over all three.

After the adapter is fitted, a refresh that publishes a fused version

1. trains the **lexical member** on exactly the rows the adapter trained on (same example weights:
   :func:`trainer.members.lexical.train_lexical` weights its loss as fine-tuning does);
2. builds the **behaviour memory** from the stored per-query evidence (``store.labels.behaviour_evidence``);
3. fits the **fusion** (:func:`trainer.fusion.fit_fusion`) on *fusion rows* that no member trained
   on: the snapshot's validation rows (:func:`fusion_rows_of`). Those rows are not trained on, but
   they are not untouched either: fine-tuning picks its best epoch on them, so the encoder member
   looks slightly better on them than on unseen queries and the fusion may trust it a little too
   much. They are the only labelled rows a refresh has that the members did not learn from.

**The leakage rule.** A weak-labelled fusion row's label was derived from the same clicks the
memory remembers for that query: the memory would be right on it by construction, and the fusion
would learn to trust the memory far more than it deserves on queries whose label it does not
already encode. So the memory the fusion is *fitted* with leaves out the evidence of every
weak-labelled fusion row's query (those rows then read memory-absent, as a query the memory does not
know), while gold fusion rows keep theirs: a reviewer's label is independent of the clicks, so they
are where the fusion honestly learns how far the memory is right. The memory that is *published*
is built from all the evidence (with the same prior): serving should know every query it can.
Without gold fusion rows the memory is absent on every fitted row and the fusion gives it no weight
(recorded: ``fusion_memory_rows`` 0).

Pure of I/O: the pipeline reads the rows and the evidence, this module only fits.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from store.taxonomy import normalise_query
from trainer.dataset import Example
from trainer.evaluation import Predictor
from trainer.exceptions import NotEnoughDataError
from trainer.fused_artifact import ADAPTER, DEFAULT_NAMES, LEXICAL, MEMORY, FusedParts
from trainer.fusion import RowFeatures, aligned, fit_fusion
from trainer.members.lexical import train_lexical
from trainer.members.memory import BehaviourMemory, Evidence, build_memory
from trainer.settings import FusionSettings

log = logging.getLogger(__name__)


class FusionRow(NamedTuple):
    """One row the fusion is fitted on: a query, its label, and whether a human gave that label."""

    query: str
    label: str
    gold: bool


@dataclass(frozen=True)
class FusedTraining:
    """What the fusion step made: the parts of a fused version (``None`` when the plain adapter is
    to be published, ``report["skipped"]`` saying why) and the report recorded with the run."""

    parts: FusedParts | None
    report: dict[str, Any] = field(default_factory=dict)


def fusion_rows_of(val: Sequence[Example]) -> list[FusionRow]:
    """The snapshot's validation rows as fusion rows (no member trains on them; fine-tuning picks
    its epoch on them, see the module docstring)."""
    return [FusionRow(e.text, e.label, e.gold) for e in val]


def fit_fused(
    encoder: Predictor,
    train_rows: Sequence[Example],
    fusion_rows: Sequence[FusionRow],
    evidence: Evidence,
    searches: Mapping[str, int],
    labels: Sequence[str],
    settings: FusionSettings,
    *,
    seed: int = 13,
) -> FusedTraining:
    """Train the lexical member, build the memory, fit the fusion (see the module docstring).

    ``encoder``: the fitted adapter (any :class:`~trainer.evaluation.Predictor`); ``train_rows``: the
    rows it trained on; ``fusion_rows``: rows none of the members trained on; ``evidence`` and
    ``searches``: what ``store.labels.behaviour_evidence`` returns; ``labels``: the run's label order.
    Rows whose label is outside ``labels`` (left out of the run) are dropped. Returns parts ``None``
    when fusion is disabled or there are fewer than ``settings.min_rows`` usable fusion rows.
    """
    started = time.monotonic()
    labels = list(labels)
    rows = _usable(fusion_rows, labels)
    counts = {"fusion_rows": len(rows), "fusion_gold_rows": sum(r.gold for r in rows)}
    counts["fusion_weak_rows"] = counts["fusion_rows"] - counts["fusion_gold_rows"]
    if not settings.enabled:
        return _skipped("fusion disabled (INTENTLOOP_TRAIN__FUSION__ENABLED=false)", counts)
    if len(rows) < settings.min_rows:
        return _skipped(
            f"{len(rows)} fusion rows < INTENTLOOP_TRAIN__FUSION__MIN_ROWS {settings.min_rows}: "
            "the plain adapter is published",
            counts,
        )
    lexical = train_lexical(list(train_rows), labels, seed=seed)
    published = _memory(evidence, labels, searches, settings)
    fitted_with = _memory(
        _without_weak_rows(evidence, rows), labels, searches, settings, prior=published.prior
    )
    texts = [r.query for r in rows]
    member_probs = {
        DEFAULT_NAMES[ADAPTER]: aligned(encoder.predict_proba(texts), encoder.labels, labels),
        DEFAULT_NAMES[LEXICAL]: aligned(lexical.predict_proba(texts), lexical.labels, labels),
        DEFAULT_NAMES[MEMORY]: np.asarray(fitted_with.predict_proba(texts), dtype=np.float64),
    }
    features = RowFeatures.of_queries(texts, fitted_with)
    try:
        fusion = fit_fusion(
            member_probs, features, [r.label for r in rows], labels, settings.method, seed=seed
        )
    except NotEnoughDataError as exc:
        return _skipped(f"fusion not fitted: {exc}", counts)
    report = {
        **counts,
        "fusion_memory_rows": int(features.memory_present.sum()),
        "method": fusion.method,
        "member_weights": {m: round(w, 6) for m, w in fusion.member_weights().items()},
        "temperature": round(fusion.temperature, 6),
        "ece_before": fusion.report.get("ece_before"),
        "ece_after": fusion.report.get("ece_after"),
        "cv_nll": fusion.report.get("cv_nll"),
        "memory_queries": len(published),
        "memory_queries_at_fit": len(fitted_with),
        "lexical_train_rows": len(train_rows),
        "wall_s": round(time.monotonic() - started, 3),
    }
    log.info("fused %s: %s", fusion.method, report["member_weights"])
    return FusedTraining(FusedParts(lexical, published, fusion), report)


def _usable(fusion_rows: Sequence[FusionRow], labels: Sequence[str]) -> list[FusionRow]:
    """One row per normalised query (gold wins over weak), labels the run knows, in query order."""
    known = set(labels)
    by_query: dict[str, FusionRow] = {}
    for row in fusion_rows:
        key = normalise_query(row.query)
        if row.label in known and (key not in by_query or (row.gold and not by_query[key].gold)):
            by_query[key] = row
    return [by_query[k] for k in sorted(by_query)]


def _without_weak_rows(evidence: Evidence, rows: Sequence[FusionRow]) -> dict[str, Mapping[str, float]]:
    """``evidence`` less the queries of weak-labelled fusion rows (the leakage rule)."""
    weak = {normalise_query(r.query) for r in rows if not r.gold}
    return {q: per_label for q, per_label in evidence.items() if normalise_query(q) not in weak}


def _memory(
    evidence: Evidence,
    labels: Sequence[str],
    searches: Mapping[str, int],
    settings: FusionSettings,
    prior: np.ndarray | None = None,
) -> BehaviourMemory:
    return build_memory(
        evidence,
        labels,
        searches=searches,
        prior=prior,
        alpha=settings.memory_alpha,
        min_evidence=settings.memory_min_evidence,
        max_queries=settings.memory_max_queries,
    )


def _skipped(reason: str, counts: Mapping[str, int]) -> FusedTraining:
    log.info("no fused version: %s", reason)
    return FusedTraining(None, {"skipped": reason, **counts})
