"""Fit, apply, save and load a fusion of members (see :mod:`trainer.fusion` for the recipe)."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from trainer.calibration import fit_temperature, log_probabilities, nll, softmax
from trainer.exceptions import ModelError, NotEnoughDataError
from trainer.fusion.inputs import FEATURE_NAMES, RowFeatures, member_log_probs
from trainer.fusion.loglinear import LogLinearPool
from trainer.fusion.stacking import Stacker

FILENAME = "fusion.json"
FORMAT = "intentloop.fusion/1"
METHODS = ("loglinear", "stacking")
CV_FOLDS = 5
MEMORY_MEMBER = "memory"  # the member whose absence on a row the features record

Combiner = LogLinearPool | Stacker
_COMBINERS: dict[str, type[LogLinearPool] | type[Stacker]] = {"loglinear": LogLinearPool, "stacking": Stacker}


class Fusion:
    """A fitted fusion: members' probabilities + row features -> one calibrated distribution."""

    def __init__(
        self,
        labels: Sequence[str],
        members: Sequence[str],
        combiner: Combiner,
        temperature: float,
        report: Mapping[str, Any],
        memory_member: str | None = MEMORY_MEMBER,
    ) -> None:
        self.labels = list(labels)
        self.members = list(members)  # the order of the combiner's parameters
        self.combiner = combiner
        self.temperature = float(temperature)
        self.report = dict(report)
        self.memory_member = memory_member

    @property
    def method(self) -> str:
        return self.combiner.method

    def logits(self, member_probs: Mapping[str, np.ndarray], features: RowFeatures) -> np.ndarray:
        """Uncalibrated fused logits, ``(n, labels)``."""
        log_probs = member_log_probs(
            member_probs, self.members, features, len(self.labels), self.memory_member
        )
        return self.combiner.logits(log_probs, features.matrix())

    def predict_proba(self, member_probs: Mapping[str, np.ndarray], features: RowFeatures) -> np.ndarray:
        """The calibrated fused distribution, ``(n, labels)`` float64, rows summing to 1.

        ``member_probs``: every member's ``predict_proba`` over :attr:`labels` (same row order as
        ``features``); a member absent for a row is said so by ``features`` (memory evidence 0)."""
        return softmax(self.logits(member_probs, features), self.temperature)

    def member_weights(self) -> dict[str, float]:
        """Log-linear: each member's pooling weight. Stacking: each member's share of the absolute
        standardised coefficients on its log-probability columns (sums to 1, features excluded)."""
        return {m: float(w) for m, w in zip(self.members, self.combiner.member_influence(), strict=True)}

    def to_json(self) -> str:
        """Every parameter as plain JSON numbers, sorted keys: the same fusion, the same text."""
        data = {
            "format": FORMAT,
            "labels": self.labels,
            "members": self.members,
            "memory_member": self.memory_member,
            "features": list(FEATURE_NAMES),
            "method": self.method,
            "params": self.combiner.to_dict(),
            "temperature": self.temperature,
            "report": self.report,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Fusion":
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("features") != list(FEATURE_NAMES):
                raise ModelError(f"not a fusion of this code's format and features: {data.get('format')!r}")
            combiner = _COMBINERS[data["method"]].from_dict(data["params"])
            return cls(
                data["labels"],
                data["members"],
                combiner,
                data["temperature"],
                data["report"],
                data["memory_member"],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"malformed fusion parameters: {exc}") from exc

    def save(self, directory: Path) -> Path:
        """Write ``fusion.json`` into ``directory``; returns its path."""
        path = Path(directory) / FILENAME
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> "Fusion":
        path = Path(directory) / FILENAME
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelError(f"cannot read the fusion parameters at {path}: {exc}") from exc
        return cls.from_json(text)


def fit_fusion(
    member_probs: Mapping[str, np.ndarray],
    features: RowFeatures,
    y: Sequence[str],
    labels: Sequence[str],
    method: str = "auto",
    *,
    seed: int = 13,
    memory_member: str | None = MEMORY_MEMBER,
) -> Fusion:
    """Fit a fusion on held-out rows the members did not train on, then its temperature.

    ``method``: ``"loglinear"``, ``"stacking"`` or ``"auto"`` (the lower 5-fold cross-validated
    NLL on these rows; a tie goes to log-linear, the one with fewer parameters). The chosen
    method's out-of-fold logits fit the temperature, so the calibration (and the ECE before and
    after it in ``report``) is measured on rows each fold's model did not see. The final combiner
    is then fitted on all rows. Deterministic for a ``seed``.
    """
    if method != "auto" and method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {METHODS}, not {method!r}")
    labels = list(labels)
    members = sorted(member_probs)
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({t for t in y if t not in index})
    if unknown:
        raise ValueError(f"fusion rows with labels outside the label list: {unknown[:5]}")
    target = np.asarray([index[t] for t in y], dtype=np.intp)
    if len(target) != len(features) or len(target) < 2 * CV_FOLDS or len(set(target.tolist())) < 2:
        raise NotEnoughDataError(
            f"fusion needs >= {2 * CV_FOLDS} held-out rows of >= 2 labels, one label per feature row "
            f"(got {len(target)} labels for {len(features)} rows)"
        )
    log_probs = member_log_probs(member_probs, members, features, len(labels), memory_member)
    x = features.matrix()
    candidates = list(METHODS) if method == "auto" else [method]
    # Stacking learns one coefficient per (label, member label, feature): with ~100 labels that is
    # ~30,000 for a few hundred reviewed rows, which overfits (CV NLL 2.66 vs log-linear's 1.21 on
    # 5,000 synthetic rows) and costs ~30 s of CPU to cross-validate. "auto" only tries it when the
    # rows outnumber its coefficients; an explicit method="stacking" still fits it.
    stacking_coefficients = len(labels) * (len(members) * len(labels) + x.shape[1] + 1)
    skipped = None
    if method == "auto" and stacking_coefficients > len(target):
        candidates.remove("stacking")
        skipped = f"{stacking_coefficients} coefficients for {len(target)} rows"
    oof = {name: _out_of_fold(name, log_probs, x, target, seed) for name in candidates}
    cv_nll = {name: round(nll(z, target), 6) for name, z in oof.items()}
    chosen = min(candidates, key=lambda name: (cv_nll[name], METHODS.index(name)))
    calibration = fit_temperature(oof[chosen], target)
    combiner = _COMBINERS[chosen].fit(log_probs, x, target, seed=seed)
    report = {
        "method": chosen,
        "method_requested": method,
        "stacking_skipped": skipped,
        "cv_folds": CV_FOLDS,
        "cv_nll": cv_nll,
        "cv_accuracy": {
            name: round(float((z.argmax(axis=1) == target).mean()), 6) for name, z in oof.items()
        },
        "member_nll": {m: round(nll(log_probabilities(member_probs[m]), target), 6) for m in members},
        "member_accuracy": {
            m: round(float((np.asarray(member_probs[m]).argmax(axis=1) == target).mean()), 6) for m in members
        },
        "memory_rows": int(features.memory_present.sum()) if memory_member in members else 0,
        "rows": len(target),
        "seed": seed,
        **calibration.report(),
    }
    if isinstance(combiner, Stacker):
        report["stacking_converged"] = combiner.converged
    return Fusion(labels, members, combiner, calibration.temperature, report, memory_member)


def _out_of_fold(name: str, log_probs: np.ndarray, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Every row's logits from the ``name`` combiner fitted on the other folds (K-fold, seeded)."""
    out = np.zeros((y.shape[0], log_probs.shape[2]))
    for fit_rows, held in KFold(CV_FOLDS, shuffle=True, random_state=seed).split(x):
        combiner = _COMBINERS[name].fit(log_probs[:, fit_rows], x[fit_rows], y[fit_rows], seed=seed)
        out[held] = combiner.logits(log_probs[:, held], x[held])
    return out
