"""Jobs that span layers (train then promote) and so belong to the composition root."""

from typing import Any

from intentloop.runtime import Runtime
from store import versions
from trainer.pipeline import run_training


def train_and_maybe_promote(
    rt: Runtime, *, promote: bool = False, min_macro_f1: float = 0.5, progress: bool = True
) -> dict[str, Any]:
    """Train a candidate; promote it only if it clears the validation macro-F1 floor.

    The full gate (baselines, slices, no regression against the champion) is issue #4; this floor
    is the skeleton's guard against shipping a model that learned nothing.
    """
    outcome = run_training(rt.db, rt.artifacts, rt.settings.model, rt.settings.train, progress=progress)
    f1 = float(outcome.metrics.get("val_macro_f1", 0.0))
    passed = f1 >= min_macro_f1
    result: dict[str, Any] = {
        "run_id": outcome.run_id,
        "version": outcome.version,
        "snapshot": outcome.snapshot,
        "metrics": outcome.metrics,
        "gate": {"min_macro_f1": min_macro_f1, "val_macro_f1": f1, "passed": passed},
        "promoted": False,
    }
    if promote and passed:
        reason = f"train run {outcome.run_id}: val_macro_f1={f1:.3f} >= {min_macro_f1}"
        versions.promote(rt.db, rt.registry, outcome.version, actor="trainer", reason=reason)
        result["promoted"] = True
    return result
