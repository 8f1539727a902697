"""Jobs that span layers (train then promote) and so belong to the composition root."""

from typing import Any

from intentloop.runtime import Runtime
from store import versions
from trainer.gate import gate_candidate
from trainer.pipeline import run_training


def train_and_maybe_promote(
    rt: Runtime,
    *,
    promote: bool = False,
    min_macro_f1: float | None = None,
    full_ft: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a candidate, put it through the gate (``trainer/gate.py``), promote it only if blessed.

    The champion it is compared with is read from the Postgres audit trail (the truth Redis is
    seeded from) before training, and read again before promoting: if someone moved the champion
    meanwhile, the candidate was judged against the wrong model and is not promoted. A rejected
    candidate keeps its artifact, version row and recorded decision. ``min_macro_f1`` and
    ``full_ft`` override ``INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1`` / ``__FULL_FT`` for this run.
    """
    train = rt.settings.train
    overrides = {k: v for k, v in (("min_macro_f1", min_macro_f1), ("full_ft", full_ft)) if v is not None}
    if overrides:
        train = train.model_copy(update={"gate": train.gate.model_copy(update=overrides)})
    with rt.db.session() as session:
        champion = versions.recorded_alias(session)
    outcome = run_training(rt.db, rt.artifacts, rt.settings.model, train, progress=progress)
    gate = gate_candidate(
        rt.db,
        rt.artifacts,
        rt.settings.model,
        train,
        candidate=outcome.version,
        champion=champion,
        run_id=outcome.run_id,
        trained_snapshot=outcome.snapshot,
        progress=progress,
    )
    blessed = gate.decision.blessed
    result: dict[str, Any] = {
        "run_id": outcome.run_id,
        "version": outcome.version,
        "snapshot": outcome.snapshot,
        "metrics": outcome.metrics,
        # ``passed``/``val_macro_f1``/``min_macro_f1`` keep the shape callers of the skeleton's gate read.
        "gate": {
            "passed": blessed,
            "val_macro_f1": outcome.metrics.get("val_macro_f1"),
            "min_macro_f1": train.gate.min_macro_f1,
            **gate.summary(),
        },
        "promoted": False,
    }
    if not promote or not blessed:
        return result
    if outcome.version == champion:
        result["promotion"] = f"{outcome.version} is already the champion"
        return result
    with rt.db.session() as session:
        now = versions.recorded_alias(session)
    if now != champion:
        result["promotion"] = (
            f"not promoted: the champion moved from {champion} to {now} during the run; "
            "train again to judge against the new champion"
        )
        return result
    headline = gate.reports["candidate"]
    reason = (
        f"gate decision {gate.decision_id} (run {outcome.run_id}): blessed against "
        f"{champion or 'no champion'} on {gate.eval_set['rows']} held-out rows, "
        f"macro_f1={headline['macro_f1']:.3f} accuracy={headline['accuracy']:.3f}"
    )
    versions.promote(rt.db, rt.registry, outcome.version, actor="trainer", reason=reason)
    result["promoted"] = True
    return result
