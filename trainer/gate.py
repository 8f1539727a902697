"""The promotion gate, run: score the candidate, the champion and the baselines on the same
held-out rows, let :func:`trainer.gate_rules.decide` judge, and record the verdict.

The held-out rows are the validation bucket of the training split (:mod:`trainer.split` hashes the
query text, so a query is held out in every refresh: neither candidate nor champion trained on it,
provided the champion used the same ``val_fraction``), labelled with the gold label where one is
stored and the weak label otherwise, plus every ``eval`` gold query (never trained on). Every model
is scored by :func:`trainer.evaluation.evaluate` (the metrics of :mod:`trainer.metrics`, the ones
training's validation uses). Every decision is written to ``gate_decisions`` with its reasons and
all reports, so a rejected adapter stays inspectable (its artifact and version row stay; it is just
not promoted). The rules themselves (what blesses a candidate) are in :mod:`trainer.gate_rules`.

A **fused** candidate (one whose loaded model offers :class:`FusedPredictor`'s ``member_predictors``)
is also scored member by member on the same rows; the decision records every member's report beside
the fused one and applies the member rule (rule 5 of :mod:`trainer.gate_rules`). On weak-labelled
held-out rows a fused model (candidate or champion) is scored with its memory blind to those rows'
queries (:func:`unleaked`): their labels come from the clicks the memory holds. The gate does not
know how a fused version is stored: the loader hands it the members as plain predictors.
"""

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from store.artifacts import ArtifactStore
from store.db import Database
from store.dimensions import CATEGORY
from store.evaluations import query_frequencies, record_gate_decision
from store.exceptions import ArtifactError
from store.labels import LabelledQuery, gold_by_purpose
from trainer.dataset import Example
from trainer.evaluation import FrequencySlices, Predictor, evaluate, frequency_slices
from trainer.exceptions import ModelError, NotEnoughDataError
from trainer.gate_dimensions import DimensionHeldOut, dimension_held_out
from trainer.gate_rules import DimensionReports, GateDecision, decide
from trainer.settings import ModelSettings, TrainSettings
from trainer.snapshot import snapshot_examples, to_examples
from trainer.split import held_out_rows, split_by_query

log = logging.getLogger(__name__)


def compact(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of a report (what the CLI prints; the full one is stored)."""
    out = {k: report.get(k) for k in ("n", "accuracy", "macro_f1", "ece")}
    out["slices"] = {
        name: {k: part.get(k) for k in ("n", "accuracy", "macro_f1") if k in part}
        for name, part in report.get("slices", {}).items()
    }
    return out


@runtime_checkable
class FusedPredictor(Predictor, Protocol):
    """A loaded fused version: its own (fused) probabilities, and each member as a predictor of its
    own (name -> predictor, the names the fusion was fitted with), scored on the same rows.

    ``without_memory_of(queries)``: the same version whose behaviour memory has forgotten those
    queries' evidence (they read memory-absent, in the fusion and the memory member alike): the
    gate's weak-labelled held-out rows were labelled from the very clicks the memory remembers, so
    scored with it the memory would be right by construction (see :func:`unleaked`).
    """

    def member_predictors(self) -> Mapping[str, Predictor]: ...

    def without_memory_of(self, queries: Collection[str]) -> "FusedPredictor": ...


Report = dict[str, Any]


def unleaked(model: Predictor, rows: Sequence[tuple[str, str]], gold: Collection[str]) -> Predictor:
    """``model`` as the held-out ``rows`` may fairly score it: a fused version forgets the memory
    evidence of every row whose label is weak (not in ``gold``), the leakage rule the fusion was
    fitted under (:mod:`trainer.fused_training`); gold rows keep it. A plain model is unchanged.
    Applied to candidate and champion alike, so a fused model does not beat a plain one on rows
    whose labels its memory simply repeats."""
    if not isinstance(model, FusedPredictor):
        if hasattr(model, "member_predictors"):  # half a fused model: refuse, never gate it as plain
            raise TypeError(f"{type(model).__name__} has member_predictors but no without_memory_of")
        return model
    return model.without_memory_of(sorted({q for q, _ in rows if q not in gold}))


def score_members(model: Predictor, score: Callable[[Predictor], Report]) -> dict[str, Report]:
    """Each member's report (``score``: the held-out rows' scorer) when ``model`` is fused; ``{}``
    for a plain model, whose gate is then exactly the one before fusion existed."""
    if not isinstance(model, FusedPredictor):
        return {}
    return {name: score(member) for name, member in sorted(model.member_predictors().items())}


def decision_details(
    decision: GateDecision,
    eval_set: Mapping[str, Any],
    train: TrainSettings,
    reports: Mapping[str, Report],
    baselines: Mapping[str, Report],
    members: Mapping[str, Report] | None = None,
) -> dict[str, Any]:
    """What ``gate_decisions.details`` records: the verdict with every check, the rows, the
    settings and every report (a fused candidate's members' too, and the member rule's settings)."""
    details: dict[str, Any] = {
        "decision": decision.as_dict(),
        "eval_set": dict(eval_set),
        "settings": train.gate.model_dump(mode="json"),
        "reports": dict(reports),
        "baselines": dict(baselines),
    }
    if members:
        details["members"] = dict(members)
        details["member_rule"] = train.fusion.model_dump(include={"member_margin", "min_slice_rows"})
    return details


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
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # fused: member -> report

    def summary(self) -> dict[str, Any]:
        members = {"members": {name: compact(r) for name, r in self.members.items()}} if self.members else {}
        return {
            "decision_id": self.decision_id,
            "blessed": self.decision.blessed,
            "reasons": self.decision.reasons,
            "candidate": self.candidate,
            "champion": self.champion,
            "eval_set": self.eval_set,
            "scores": {name: compact(report) for name, report in self.reports.items()},
            "baselines": self.baselines,
            **members,
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
    kinds: Mapping[str, Collection[str]] | None = None,
    dimensions: Sequence[str] = (CATEGORY,),
) -> GateOutcome:
    """Score ``candidate``, ``champion`` and the baselines on the held-out rows, decide, record.

    The training split is rebuilt with the same deterministic snapshot and split as the candidate's
    run; ``trained_snapshot`` (the run's snapshot summary) lets the record show whether the labels
    moved in between (ingestion running meanwhile), which can change the baselines' training rows
    but never leaks: the split is by query hash, so held-out queries are held out for every model.
    ``train_examples``: the rows the candidate trained on (its run's snapshot: fresh + replay +
    gold); the baselines train on exactly these. Without them, on the rebuilt training split.
    ``kinds``: each held-out query's kinds (``typo``, ``question``, ...) when known: every report
    then has kind slices too, which the member rule of a fused candidate also judges.
    ``dimensions``: every other one with labels is judged on its own held-out rows too
    (:mod:`trainer.gate_dimensions`); its reports are ``<dimension>/candidate`` and so on.
    """
    from trainer.classifier import resolve_base_dir

    base_dir = resolve_base_dir(model.base_dir)
    held = _held_out_set(db, train, trained_snapshot, train_examples, kinds)
    extra = {
        d: h
        for d in dimensions
        if d != CATEGORY
        and (h := dimension_held_out(db, train, d, held.counts, held.bounds, kinds)) is not None
    }
    reports, members, heads = _score_candidate(held, artifacts, base_dir, candidate, extra)
    champion_report, champion_error, champion_heads = _score_champion(
        held, artifacts, base_dir, champion, extra
    )
    if champion_report is not None:
        reports["champion"] = champion_report
    judged = _dimension_reports(extra, heads, champion_heads, reports)
    judged |= _dropped_heads(
        artifacts, candidate, champion, [d for d in dimensions if d != CATEGORY and d not in extra]
    )
    baseline_reports, baselines = _score_baselines(held, base_dir, model, train, progress=progress)
    reports.update(baseline_reports)
    decision = decide(
        reports["candidate"],
        champion_report,
        train.gate,
        champion_version=champion,
        champion_error=champion_error,
        baselines={name: reports[name] for name in ("tfidf", "label_prior") if name in reports},
        gold=reports.get("candidate_gold"),
        members=members,
        fusion=train.fusion,
        dimensions=judged,
    )
    eval_set = held.eval_set | ({"dimensions": {d: h.eval_set for d, h in extra.items()}} if extra else {})
    details = decision_details(decision, eval_set, train, reports, baselines, members)
    decision_id = _record(db, decision, details, run_id=run_id, candidate=candidate, champion=champion)
    return GateOutcome(decision_id, decision, candidate, champion, eval_set, reports, baselines, members)


def _dropped_heads(
    artifacts: ArtifactStore, candidate: str, champion: str | None, dimensions: Sequence[str]
) -> dict[str, DimensionReports]:
    """Configured dimensions without held-out rows this time: nothing to score, but a candidate
    without a head its champion serves would still take the dimension away (a failed check)."""
    from trainer.artifact import head_sections

    if champion is None or not dimensions:
        return {}
    try:
        theirs = head_sections(artifacts.fetch(champion)[1])
    except (ModelError, ArtifactError):
        return {}  # the champion_unavailable check speaks for it
    mine = head_sections(artifacts.fetch(candidate)[1])
    return {d: DimensionReports(None, {}, None, True) for d in dimensions if d in theirs and d not in mine}


def _dimension_reports(
    extra: Mapping[str, DimensionHeldOut],
    heads: Mapping[str, Report | None],
    champion_heads: Mapping[str, Report | None] | None,
    reports: dict[str, Report],
) -> dict[str, DimensionReports]:
    """Each extra dimension's reports for the rules; also added to ``reports`` (recorded)."""
    judged = {}
    for d, h in extra.items():
        prior = h.score_prior()
        champ = (champion_heads or {}).get(d)
        judged[d] = DimensionReports(heads.get(d), prior, champ, champ is not None)
        reports[f"{d}/label_prior"] = prior
        for name, report in ((f"{d}/candidate", heads.get(d)), (f"{d}/champion", champ)):
            if report is not None:
                reports[name] = report
    return judged


@dataclass(frozen=True)
class _HeldOut:
    """What every model is scored on (``rows``), and what the baselines train on."""

    rows: list[tuple[str, str]]  # (normalised query, label), sorted
    gold: dict[str, str]  # every gold label, any purpose
    counts: dict[str, int]  # searches per query: the slices
    bounds: FrequencySlices
    eval_set: dict[str, Any]  # what the record says about the rows
    labels: list[str]  # the baselines' label set
    baseline_rows: list[Example]  # the baselines' training rows
    val_rows: list[LabelledQuery]  # the validation split (full fine-tuning's early stopping)
    kinds: Mapping[str, Collection[str]] | None = None  # query -> kinds, when known: kind slices

    def score(self, predictor: Predictor) -> dict[str, Any]:
        return evaluate(predictor, self.rows, self.counts, self.bounds, self.kinds)


def _held_out_set(
    db: Database,
    train: TrainSettings,
    trained_snapshot: Mapping[str, Any] | None,
    train_examples: Sequence[Example] | None,
    kinds: Mapping[str, Collection[str]] | None = None,
) -> _HeldOut:
    """Rebuild the run's split from the store and derive the held-out rows (see the docstring)."""
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
    bounds = frequency_slices(counts, train.gate.head_share, train.gate.torso_share)
    baseline_rows = list(train_examples) if train_examples is not None else to_examples(train_rows)
    eval_set: dict[str, Any] = {
        **composition,
        "source": source,
        "snapshot_queries": len(rows),
        "train_rows": len(baseline_rows),
        "slice_definition": bounds.describe(),
    }
    if trained_snapshot is not None and trained_snapshot.get("queries") != len(rows):
        eval_set["snapshot_drift"] = len(rows) - int(trained_snapshot.get("queries") or 0)
    labels = sorted({*(r.label for r in rows), *(e.label for e in baseline_rows)})
    return _HeldOut(held_out, gold, counts, bounds, eval_set, labels, baseline_rows, val_rows, kinds)


def _score_candidate(
    held: _HeldOut,
    artifacts: ArtifactStore,
    base_dir: Path,
    candidate: str,
    extra: Mapping[str, DimensionHeldOut],
) -> tuple[dict[str, Report], dict[str, Report], dict[str, Report | None]]:
    """The candidate's report on every held-out row and (``candidate_gold``) on the gold ones only:
    the floors apply to the latter; for a fused candidate, each member's report on every held-out
    row; and each extra head's on its dimension's rows. The model is freed on return, before the
    champion loads."""
    from trainer.artifact import load_for_inference

    path, _ = artifacts.fetch(candidate)
    loaded = load_for_inference(base_dir, path)
    heads = {d: h.score(loaded) for d, h in extra.items()}
    candidate_model = unleaked(loaded, held.rows, held.gold)
    reports = {"candidate": held.score(candidate_model)}
    gold_rows = [(q, label) for q, label in held.rows if q in held.gold]
    if gold_rows:
        reports["candidate_gold"] = evaluate(candidate_model, gold_rows, held.counts, held.bounds, held.kinds)
    return reports, score_members(candidate_model, held.score), heads


def _score_champion(
    held: _HeldOut,
    artifacts: ArtifactStore,
    base_dir: Path,
    champion: str | None,
    extra: Mapping[str, DimensionHeldOut],
) -> tuple[dict[str, Any] | None, str | None, dict[str, Report | None] | None]:
    """The champion's report and its extra heads' (``None`` per dimension it lacks), or why it
    could not be scored (a decision for a human, not a pass)."""
    from trainer.artifact import load_for_inference

    if champion is None:
        return None, None, None
    try:
        champion_path, _ = artifacts.fetch(champion)
        loaded = load_for_inference(base_dir, champion_path)
        heads = {d: h.score(loaded) for d, h in extra.items()}
        return held.score(unleaked(loaded, held.rows, held.gold)), None, heads
    except (ModelError, ArtifactError) as exc:
        log.warning("champion %s cannot be evaluated: %s", champion, exc)
        return None, str(exc), None


def _score_baselines(
    held: _HeldOut, base_dir: Path, model: ModelSettings, train: TrainSettings, *, progress: bool
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Train the baselines on the candidate's training rows and score them: (reports, metrics)."""
    from trainer.baselines import train_full_finetune, train_label_prior, train_tfidf
    from trainer.inputs import resolve_input_format

    settings = train.gate
    reports: dict[str, dict[str, Any]] = {}
    baselines: dict[str, dict[str, Any]] = {}
    prior = train_label_prior(held.baseline_rows, held.labels)
    reports["label_prior"], baselines["label_prior"] = held.score(prior), prior.metrics
    if settings.tfidf_baseline:
        tfidf = train_tfidf(held.baseline_rows, held.labels, seed=train.seed)
        reports["tfidf"], baselines["tfidf"] = held.score(tfidf), tfidf.metrics
    if settings.full_ft:
        started = time.monotonic()
        full = train_full_finetune(
            held.baseline_rows,
            to_examples(held.val_rows),
            held.labels,
            base_dir,
            train,
            model.max_length,
            progress=progress,
            input_format=resolve_input_format(model, base_dir),
        )
        reports["full_ft"], baselines["full_ft"] = held.score(full.predictor), full.metrics
        log.info("full fine-tuning baseline took %.1fs", time.monotonic() - started)
    return reports, baselines


def _record(
    db: Database,
    decision: GateDecision,
    details: dict[str, Any],
    *,
    run_id: int | None,
    candidate: str,
    champion: str | None,
) -> int:
    """Write the decision and everything behind it (``details``) to ``gate_decisions``; its id."""
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
    return decision_id
