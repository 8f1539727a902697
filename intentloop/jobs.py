"""Jobs that span layers (train then promote) and so belong to the composition root."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from intentloop.runtime import Runtime
from store import versions
from store.dimensions import CATEGORY
from store.exceptions import IntentloopError
from store.models import TrainingRun
from store.training import RESUMABLE, TrainingLock, latest_run, mark_dead_runs
from trainer.gate import GateOutcome, gate_candidate
from trainer.pipeline import TrainOutcome, run_training
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)

LATEST = -1  # ``resume=LATEST``: the latest run, which must be failed or interrupted


def runs_dir(rt: Runtime) -> Path:
    """Where run directories (rows, checkpoints) live: ``INTENTLOOP_TRAIN__RUNS_DIR`` or
    ``<state_dir>/runs``."""
    return rt.settings.train.runs_dir or rt.settings.state_dir / "runs"


def _resume_target(rt: Runtime, resume: int) -> TrainingRun:
    """The run ``resume`` names (``LATEST``: the latest run), refusing one that cannot resume."""
    with rt.db.session() as session:
        run = latest_run(session) if resume == LATEST else session.get(TrainingRun, resume)
        if run is None:
            raise IntentloopError(
                "no training run to resume" if resume == LATEST else f"no training run {resume}"
            )
        if run.status not in RESUMABLE:
            raise IntentloopError(
                f"training run {run.id} is {run.status}: only a failed or interrupted run resumes"
                + (" (the latest run; pass its id to resume an older one)" if resume == LATEST else "")
            )
        session.expunge(run)
    return run


def train_and_maybe_promote(
    rt: Runtime,
    *,
    promote: bool = False,
    min_macro_f1: float | None = None,
    full_ft: bool | None = None,
    progress: bool = True,
    resume: int | None = None,
    trigger: str = "manual",
    trigger_detail: dict[str, Any] | None = None,
    lock: TrainingLock | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a candidate, put it through the gate (``trainer/gate.py``), promote it only if blessed.

    Everything happens under the training lock (``store.training``): a second trainer is refused
    with a message naming the holder, and runs left ``running`` by a dead trainer are marked
    ``interrupted`` first. ``lock``: one the caller already holds (the scheduler). ``resume``: a run
    id (or ``LATEST``) to continue from its checkpoint instead of starting a new run; it keeps its
    recorded parameters, only the gate settings and overrides are today's. A failed or interrupted
    run raises before the gate, so it can never move the champion.

    The champion it is compared with is read from the Postgres audit trail (the truth Redis is
    seeded from) before training, and read again before promoting: if someone moved the champion
    meanwhile, the candidate was judged against the wrong model and is not promoted. A rejected
    candidate keeps its artifact, version row and recorded decision. ``min_macro_f1`` and
    ``full_ft`` override ``INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1`` / ``__FULL_FT`` for this run.
    """
    owned = lock is None
    held = lock if lock is not None else TrainingLock(rt.db)
    held.acquire()
    try:
        return _train_locked(
            rt,
            promote=promote,
            min_macro_f1=min_macro_f1,
            full_ft=full_ft,
            progress=progress,
            resume=resume,
            trigger=trigger,
            trigger_detail=trigger_detail,
            on_epoch_end=on_epoch_end,
        )
    finally:
        if owned:
            held.release()


def _train_locked(
    rt: Runtime,
    *,
    promote: bool,
    min_macro_f1: float | None,
    full_ft: bool | None,
    progress: bool,
    resume: int | None,
    trigger: str,
    trigger_detail: dict[str, Any] | None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """The steps of :func:`train_and_maybe_promote`, with the lock held."""
    _mark_dead_runs(rt)
    train, resume_id = _recipe(rt, resume, min_macro_f1=min_macro_f1, full_ft=full_ft)
    with rt.db.session() as session:
        champion = versions.recorded_alias(session)
    outcome = run_training(
        rt.db,
        rt.artifacts,
        rt.settings.model,
        train,
        progress=progress,
        champion=champion,
        runs_dir=runs_dir(rt),
        resume_run=resume_id,
        trigger=trigger,
        trigger_detail=trigger_detail,
        on_epoch_end=on_epoch_end,
        dimensions=rt.settings.taxonomy.dimensions,
    )
    gate = _gate(rt, train, outcome, champion, progress=progress)
    result = _result(outcome, gate, train)
    if promote and gate.decision.blessed:
        result.update(_promote_blessed(rt, outcome, gate, champion))
        if result.get("promoted") and rt.settings.serve.explain.refresh_on_promote:
            result["explanations"] = refresh_explanations(rt, outcome.version)
    return result


def refresh_explanations(rt: Runtime, version: str) -> str:
    """The dashboard's per-label view recomputed for a newly promoted ``version``; what happened.

    Best effort: the promotion has happened whatever this says (no recent traffic, say), and the
    operator can run ``intentloop explain`` later.
    """
    from intentloop.explanations import compute_global_view, load_target
    from trainer.exceptions import ModelError

    try:
        loaded = load_target(rt, version, None, CATEGORY)
        view = compute_global_view(
            rt, loaded, method=rt.settings.serve.explain.method, on_total=lambda _: None, on_each=lambda: None
        )
    except (IntentloopError, ModelError) as exc:
        log.warning("per-label explanations not refreshed for %s: %s", version, exc)
        return f"not refreshed: {exc}"
    return f"refreshed with {view.method}: {len({w.label for w in view.words})} labels explained"


def _mark_dead_runs(rt: Runtime) -> None:
    with rt.db.session() as session:
        dead = mark_dead_runs(session)
    if dead:
        log.warning("training runs %s were left running by a dead trainer: marked interrupted", dead)


def _recipe(
    rt: Runtime, resume: int | None, *, min_macro_f1: float | None, full_ft: bool | None
) -> tuple[TrainSettings, int | None]:
    """The training settings and the run to resume (``None``: a new run).

    A resumed run keeps its own recipe (its checkpoint only fits it) under today's gate; the CLI's
    gate overrides apply either way.
    """
    train = rt.settings.train
    resume_id: int | None = None
    if resume is not None:
        run = _resume_target(rt, resume)
        resume_id = run.id
        train = TrainSettings.model_validate(run.params).model_copy(update={"gate": train.gate})
    overrides = {k: v for k, v in (("min_macro_f1", min_macro_f1), ("full_ft", full_ft)) if v is not None}
    if overrides:
        train = train.model_copy(update={"gate": train.gate.model_copy(update=overrides)})
    return train, resume_id


def _gate(
    rt: Runtime, train: TrainSettings, outcome: TrainOutcome, champion: str | None, *, progress: bool
) -> GateOutcome:
    return gate_candidate(
        rt.db,
        rt.artifacts,
        rt.settings.model,
        train,
        candidate=outcome.version,
        champion=champion,
        run_id=outcome.run_id,
        trained_snapshot=outcome.snapshot,
        train_examples=outcome.train_examples,
        progress=progress,
        dimensions=rt.settings.taxonomy.dimensions,
    )


def _result(outcome: TrainOutcome, gate: GateOutcome, train: TrainSettings) -> dict[str, Any]:
    """The job's JSON, not yet promoted."""
    return {
        "run_id": outcome.run_id,
        "version": outcome.version,
        "snapshot": outcome.snapshot,
        "metrics": outcome.metrics,
        # ``passed``/``val_macro_f1``/``min_macro_f1`` keep the shape callers of the skeleton's gate read.
        "gate": {
            "passed": gate.decision.blessed,
            "val_macro_f1": outcome.metrics.get("val_macro_f1"),
            "min_macro_f1": train.gate.min_macro_f1,
            **gate.summary(),
        },
        "promoted": False,
    }


def _promote_blessed(
    rt: Runtime, outcome: TrainOutcome, gate: GateOutcome, champion: str | None
) -> dict[str, Any]:
    """Promote a blessed candidate unless it already is the champion or the champion moved during
    the run (it was judged against the wrong model); the keys to add to the result."""
    if outcome.version == champion:
        return {"promotion": f"{outcome.version} is already the champion"}
    with rt.db.session() as session:
        now = versions.recorded_alias(session)
    if now != champion:
        return {
            "promotion": f"not promoted: the champion moved from {champion} to {now} during the run; "
            "train again to judge against the new champion"
        }
    headline = gate.reports["candidate"]
    reason = (
        f"gate decision {gate.decision_id} (run {outcome.run_id}): blessed against "
        f"{champion or 'no champion'} on {gate.eval_set['rows']} held-out rows, "
        f"macro_f1={headline['macro_f1']:.3f} accuracy={headline['accuracy']:.3f}"
    )
    versions.promote(rt.db, rt.registry, outcome.version, actor="trainer", reason=reason)
    return {"promoted": True}
