"""The promotion gate: bless a candidate adapter only if it beats what the run could have shipped
without it, knows what gold says, and is no worse than the champion.

A candidate is **blessed** when, on the same held-out rows scored in the same run:

1. it beats the baselines the run trains on the same training rows — the TF-IDF + logistic
   regression model and the label prior (the label mix: what learning nothing from the text
   scores) — by ``baseline_margin`` on every gated metric. This is relative, so it holds on noisy
   weak labels and on hundreds of labels alike, where an absolute floor would judge label noise;
2. when at least ``min_gold_for_floors`` held-out rows carry gold labels, it clears the absolute
   floors (``min_macro_f1``, ``min_accuracy``) **on those gold rows**: absolute numbers mean
   something only against human labels;
3. for every metric in ``metrics`` (macro-F1 and accuracy by default), overall and on every
   frequency slice (head, torso, tail) with at least ``min_slice_examples`` rows, it is at most
   ``tolerance`` below the champion — an average gain must not hide a loss on the head (most of the
   traffic) or the tail (most of the queries);
4. the champion could be evaluated at all: a champion that cannot be loaded on this base (the
   encoder changed) is a decision for a human (``intentloop registry promote``), not a free pass.

The held-out rows are the validation bucket of the training split (:mod:`trainer.split` hashes the
query text, so a query is held out in every refresh: neither candidate nor champion trained on it,
provided the champion used the same ``val_fraction``), labelled with the gold label where one is
stored and the weak label otherwise, plus every ``eval`` gold query (never trained on). Every
decision is written to ``gate_decisions`` with its reasons and all reports, so a rejected adapter
stays inspectable (its artifact and version row stay; it is just not promoted).
"""

import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from store.artifacts import ArtifactStore
from store.db import Database
from store.evaluations import query_frequencies, record_gate_decision
from store.exceptions import ArtifactError
from store.labels import LabelledQuery, gold_by_purpose
from trainer.dataset import Example
from trainer.evaluation import SLICES, Predictor, evaluate, frequency_slices, metric
from trainer.exceptions import ModelError, NotEnoughDataError
from trainer.pipeline import snapshot_examples, to_examples
from trainer.settings import GateSettings, ModelSettings, TrainSettings
from trainer.split import is_validation, split_by_query

log = logging.getLogger(__name__)

_EPS = 1e-9  # float noise allowance when a candidate ties the champion exactly


@dataclass(frozen=True)
class Check:
    """One gate condition and how the candidate fared on it."""

    kind: str  # "baseline" | "floor" | "no_regression" | "champion_unavailable"
    metric: str
    slice: str  # "overall" or a slice name
    value: float
    threshold: float
    passed: bool
    reference: float | None = None  # the champion's value (no_regression)
    skipped: bool = False  # reported, not gated (slice too small)
    detail: str = ""

    def describe(self) -> str:
        if self.kind == "champion_unavailable":
            return self.detail
        if self.skipped:
            if self.kind == "floor":
                return self.detail
            return f"{self.slice} {self.metric} not gated: {self.detail}"
        if self.kind == "floor":
            op = ">=" if self.passed else "<"
            return f"{self.slice} {self.metric} {self.value:.4f} {op} floor {self.threshold:.4f}"
        assert self.reference is not None
        if self.kind == "baseline":
            margin = self.threshold - self.reference
            if self.passed and self.value >= self.reference:
                return f"{self.metric} {self.value:.4f} beats {self.detail} {self.reference:.4f}"
            if self.passed:
                return (
                    f"{self.metric} {self.value:.4f} trails {self.detail} {self.reference:.4f} "
                    f"within the margin ({margin:+.4f})"
                )
            return (
                f"{self.metric} {self.value:.4f} does not beat the {self.detail} baseline "
                f"{self.reference:.4f} on the same rows (margin {margin:+.4f})"
            )
        drop = self.reference - self.value
        if self.passed:
            return (
                f"{self.slice} {self.metric} {self.value:.4f} vs champion {self.reference:.4f}: no regression"
            )
        return (
            f"{self.slice} {self.metric} regressed: {self.value:.4f} vs champion {self.reference:.4f} "
            f"(drop {drop:.4f} > tolerance {self.reference - self.threshold:.4f})"
        )


@dataclass(frozen=True)
class GateDecision:
    """Blessed or not, why (human-readable), and every check behind it."""

    blessed: bool
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "blessed": self.blessed,
            "reasons": list(self.reasons),
            "checks": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}
                for c in self.checks
            ],
        }


def decide(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings,
    *,
    champion_version: str | None = None,
    champion_error: str | None = None,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    gold: Mapping[str, Any] | None = None,
) -> GateDecision:
    """The verdict on ``candidate`` given the baselines', the champion's and its own gold-only
    reports on the same rows (pure).

    ``baselines``: name -> report (``tfidf``, ``label_prior``). ``gold``: the candidate's report
    on the held-out gold rows only (floors apply to it when it has enough rows). ``champion`` None
    with no ``champion_error``: there is no champion, no-regression checks do not apply.
    Rejected: ``reasons`` lists every failed check. Blessed: every check that passed.
    """
    checks = [*_baseline_checks(candidate, baselines or {}, settings), *_floor_checks(gold, settings)]
    if champion_error is not None:
        detail = (
            f"champion {champion_version} could not be evaluated ({champion_error}): the no-regression "
            "check cannot run; review and promote by hand (`intentloop registry promote`)"
        )
        checks.append(Check("champion_unavailable", "-", "overall", math.nan, math.nan, False, detail=detail))
    elif champion is not None:
        checks.extend(_regression_checks(candidate, champion, settings))
    failed = [c for c in checks if not c.passed]
    if failed:
        return GateDecision(False, [c.describe() for c in failed], checks)
    reasons = [c.describe() for c in checks]
    if champion is None:
        reasons.append("no champion yet: no regression to check")
    return GateDecision(True, reasons, checks)


def _baseline_checks(
    candidate: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], settings: GateSettings
) -> list[Check]:
    checks = []
    for name, report in sorted(baselines.items()):
        for metric_name in settings.metrics:
            value, ref = metric(candidate, metric_name), metric(report, metric_name)
            bar = ref + settings.baseline_margin
            passed = not math.isnan(value) and (math.isnan(ref) or value >= bar - _EPS)
            checks.append(Check("baseline", metric_name, "overall", value, bar, passed, ref, detail=name))
    return checks


def _floor_checks(gold: Mapping[str, Any] | None, settings: GateSettings) -> list[Check]:
    n = int(gold.get("n", 0)) if gold else 0
    floors = (("macro_f1", settings.min_macro_f1), ("accuracy", settings.min_accuracy))
    if gold is None or n < settings.min_gold_for_floors:
        detail = (
            f"{n} held-out gold rows < min_gold_for_floors {settings.min_gold_for_floors}: absolute floors "
            "not applied (they only mean something on human labels)"
        )
        return [Check("floor", "-", "gold", math.nan, math.nan, True, skipped=True, detail=detail)]
    return [
        Check("floor", name, "gold", (v := metric(gold, name)), floor, passed=v >= floor - _EPS)
        for name, floor in floors
    ]


def _regression_checks(
    candidate: Mapping[str, Any], champion: Mapping[str, Any], settings: GateSettings
) -> list[Check]:
    checks = []
    for slice_name in (None, *SLICES):
        where = slice_name or "overall"
        n = int(candidate.get("n", 0)) if slice_name is None else _slice_n(candidate, slice_name)
        for name in settings.metrics:
            value, ref = metric(candidate, name, slice_name), metric(champion, name, slice_name)
            floor = ref - settings.tolerance
            if slice_name is not None and n < settings.min_slice_examples:
                detail = f"{n} held-out rows < min_slice_examples {settings.min_slice_examples}"
                checks.append(
                    Check("no_regression", name, where, value, floor, True, ref, skipped=True, detail=detail)
                )
                continue
            checks.append(Check("no_regression", name, where, value, floor, value >= floor - _EPS, ref))
    return checks


def _slice_n(report: Mapping[str, Any], slice_name: str) -> int:
    return int(report.get("slices", {}).get(slice_name, {}).get("n", 0))


def held_out_rows(
    val_rows: Sequence[LabelledQuery],
    gold: Mapping[str, str],
    val_fraction: float,
    eval_gold: Collection[str] = (),
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The rows candidate and champion are scored on, and how many labels came from gold.

    The validation split's queries with their weak labels, overridden by gold where a query has a
    gold label, plus every gold query that falls in the validation bucket and every ``eval_gold``
    query wherever it falls (never trained on). ``train`` gold queries in the training bucket are
    left out: the candidate trained on them.
    """
    rows = {r.norm_text: r.label for r in val_rows}
    from_gold = 0
    for query, label in gold.items():
        if query in eval_gold or is_validation(query, val_fraction):
            rows[query] = label
            from_gold += 1
    ordered = sorted(rows.items())
    return ordered, {"rows": len(ordered), "gold": from_gold, "weak": len(ordered) - from_gold}


def compact(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of a report (what the CLI prints; the full one is stored)."""
    out = {k: report.get(k) for k in ("n", "accuracy", "macro_f1", "ece")}
    out["slices"] = {
        name: {k: part.get(k) for k in ("n", "accuracy", "macro_f1") if k in part}
        for name, part in report.get("slices", {}).items()
    }
    return out


@dataclass(frozen=True)
class GateOutcome:
    """A recorded decision plus everything it was based on."""

    decision_id: int
    decision: GateDecision
    candidate: str
    champion: str | None
    eval_set: dict[str, Any]
    reports: dict[str, dict[str, Any]]  # candidate, champion, tfidf, full_ft -> evaluation report
    baselines: dict[str, dict[str, Any]]  # tfidf, full_ft -> training metrics

    def summary(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "blessed": self.decision.blessed,
            "reasons": self.decision.reasons,
            "candidate": self.candidate,
            "champion": self.champion,
            "eval_set": self.eval_set,
            "scores": {name: compact(report) for name, report in self.reports.items()},
            "baselines": self.baselines,
        }


def gate_candidate(
    db: Database,
    artifacts: ArtifactStore,
    model: ModelSettings,
    train: TrainSettings,
    *,
    candidate: str,
    champion: str | None,
    run_id: int | None = None,
    trained_snapshot: Mapping[str, Any] | None = None,
    train_examples: Sequence[Example] | None = None,
    progress: bool = True,
) -> GateOutcome:
    """Score ``candidate``, ``champion`` and the baselines on the held-out rows, decide, record.

    The training split is rebuilt with the same deterministic snapshot and split as the candidate's
    run; ``trained_snapshot`` (the run's snapshot summary) lets the record show whether the labels
    moved in between (ingestion running meanwhile), which can change the baselines' training rows
    but never leaks: the split is by query hash, so held-out queries are held out for every model.
    ``train_examples``: the rows the candidate trained on (its run's snapshot: fresh + replay +
    gold); the baselines train on exactly these. Without them, on the rebuilt training split.
    """
    from trainer.baselines import train_full_finetune, train_label_prior, train_tfidf
    from trainer.inputs import resolve_input_format
    from trainer.model import load_for_inference, resolve_base_dir

    settings = train.gate
    base_dir = resolve_base_dir(model.base_dir)
    rows, source = snapshot_examples(db, train)
    train_rows, val_rows = split_by_query(rows, lambda r: r.norm_text, train.val_fraction)
    with db.session() as session:
        gold_split = gold_by_purpose(session)
        counts = query_frequencies(session)
    gold, eval_gold = gold_split.all, set(gold_split.eval)
    train_rows = [r for r in train_rows if r.norm_text not in gold]  # gold trains only as gold rows
    held_out, composition = held_out_rows(val_rows, gold, train.val_fraction, eval_gold)
    if not held_out:
        raise NotEnoughDataError("no held-out rows to evaluate the candidate on (empty validation split)")
    bounds = frequency_slices(counts, settings.head_share, settings.torso_share)
    eval_set: dict[str, Any] = {
        **composition,
        "source": source,
        "snapshot_queries": len(rows),
        "train_rows": len(train_examples) if train_examples is not None else len(train_rows),
        "slice_definition": bounds.describe(),
    }
    if trained_snapshot is not None and trained_snapshot.get("queries") != len(rows):
        eval_set["snapshot_drift"] = len(rows) - int(trained_snapshot.get("queries") or 0)

    def score(predictor: Predictor) -> dict[str, Any]:
        return evaluate(predictor, held_out, counts, bounds)

    reports: dict[str, dict[str, Any]] = {}
    path, _ = artifacts.fetch(candidate)
    candidate_model = load_for_inference(base_dir, path)
    reports["candidate"] = score(candidate_model)
    gold_rows = [(q, label) for q, label in held_out if q in gold]
    if gold_rows:
        reports["candidate_gold"] = evaluate(candidate_model, gold_rows, counts, bounds)
    del candidate_model
    champion_report: dict[str, Any] | None = None
    champion_error: str | None = None
    if champion is not None:
        try:
            champion_path, _ = artifacts.fetch(champion)
            champion_report = score(load_for_inference(base_dir, champion_path))
            reports["champion"] = champion_report
        except (ModelError, ArtifactError) as exc:
            champion_error = str(exc)
            log.warning("champion %s cannot be evaluated: %s", champion, exc)

    baselines: dict[str, dict[str, Any]] = {}
    labels = sorted({r.label for r in rows})
    baseline_rows = list(train_examples) if train_examples is not None else to_examples(train_rows)
    labels = sorted({*labels, *(e.label for e in baseline_rows)})
    prior = train_label_prior(baseline_rows, labels)
    reports["label_prior"], baselines["label_prior"] = score(prior), prior.metrics
    if settings.tfidf_baseline:
        tfidf = train_tfidf(baseline_rows, labels, seed=train.seed)
        reports["tfidf"], baselines["tfidf"] = score(tfidf), tfidf.metrics
    if settings.full_ft:
        started = time.monotonic()
        full = train_full_finetune(
            baseline_rows,
            to_examples(val_rows),
            labels,
            base_dir,
            train,
            model.max_length,
            progress=progress,
            input_format=resolve_input_format(model, base_dir),
        )
        reports["full_ft"], baselines["full_ft"] = score(full.predictor), full.metrics
        log.info("full fine-tuning baseline took %.1fs", time.monotonic() - started)

    decision = decide(
        reports["candidate"],
        champion_report,
        settings,
        champion_version=champion,
        champion_error=champion_error,
        baselines={name: reports[name] for name in ("tfidf", "label_prior") if name in reports},
        gold=reports.get("candidate_gold"),
    )
    details = {
        "decision": decision.as_dict(),
        "eval_set": eval_set,
        "settings": settings.model_dump(mode="json"),
        "reports": reports,
        "baselines": baselines,
    }
    with db.session() as session:
        decision_id = record_gate_decision(
            session,
            run_id=run_id,
            candidate=candidate,
            champion=champion,
            blessed=decision.blessed,
            reasons=decision.reasons,
            details=details,
        )
    log.info(
        "gate %s candidate %s (champion %s): %s",
        "blessed" if decision.blessed else "rejected",
        candidate,
        champion,
        "; ".join(decision.reasons),
    )
    return GateOutcome(decision_id, decision, candidate, champion, eval_set, reports, baselines)
