"""What the two training benchmarks share: their options, how a model's scores are kept and reported.

``intentloop.bench.train`` (shoppers' true intents) and ``intentloop.bench.train_weak`` (weak labels
from the long-tail simulator) both import from here, so neither imports the other's internals.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

Echo = Callable[[str], None]


@dataclass(frozen=True)
class TrainBenchOptions:
    queries: int = 50_000
    seed: int = 17
    full_ft: bool = False
    epochs: int = 6  # the CLI passes INTENTLOOP_TRAIN__EPOCHS (the product's recipe; 6 by default)
    test_fraction: float = 0.2
    progress: bool = True
    traffic: str = "long_tail"  # or "shop": the simulator's profile
    labels: str = "weak"  # "weak": labeled by the labeling functions; "truth": the shoppers' intents
    shoppers: str = "realistic"  # or "easy": queries that only recombine the catalogue's words
    review: int = 1000  # weak labels: distinct queries a (simulated) reviewer labels for the fusion
    cut: float = 0.8  # weak labels: share of the searches (in time) before the training snapshot
    policy_variants: bool = False  # weak labels: also issue 11's label-policy and target variants


KIND_HEADLINE = ("unseen_phrasing", "typo", "question")  # reported when the run knows query kinds


def headline(prefix: str, report: dict[str, Any]) -> dict[str, Any]:
    """A model's overall scores and macro-F1 per frequency slice (and per kind, when known)."""
    out = {
        f"{prefix}_macro_f1": report["macro_f1"],
        f"{prefix}_accuracy": report["accuracy"],
        f"{prefix}_ece": report["ece"],
    }
    slices = report["slices"]
    for name in ("head", "torso", "tail", *(k for k in KIND_HEADLINE if k in slices)):
        out[f"{prefix}_{name}_macro_f1"] = slices[name].get("macro_f1")
    return out


@dataclass(frozen=True)
class Scored:
    """One model's held-out report, its training metrics and, where a comparison needs them, its
    predictions in held-out order."""

    report: dict[str, Any]
    metrics: dict[str, Any]
    predictions: list[str] = field(default_factory=list)
    # class probabilities by row set ("test", "review"), in that set's order, for the fusion
    proba: dict[str, "np.ndarray"] = field(default_factory=dict)


def load_trainer() -> None:
    """Import torch, scikit-learn and the trainer before a runner starts its clock: the summary's
    ``total_wall_s`` has never counted the imports."""
    importlib.import_module("trainer.baselines")  # with trainer.finetune and trainer.classifier
    importlib.import_module("trainer.evaluation")


def nulls(prefix: str) -> dict[str, None]:
    keys = ("macro_f1", "accuracy", "ece", "head_macro_f1", "torso_macro_f1", "tail_macro_f1")
    return {f"{prefix}_{k}": None for k in keys}
