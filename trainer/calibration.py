"""Temperature scaling: one number that makes a model's confidences mean what they say.

Serving returns probabilities and callers threshold on them, so an over-confident model is a
worse model (the gate reports ECE). Temperature scaling divides the logits by ``T > 0`` before
the softmax, with ``T`` fitted to minimise the negative log-likelihood on held-out rows (Guo et
al. 2017, "On Calibration of Modern Neural Networks"). Dividing every logit by the same positive
number never changes which label is on top: accuracy and macro-F1 are untouched, only the
confidences move. ECE is :func:`trainer.metrics.expected_calibration_error`, the number the gate
and ``eval`` print.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from trainer.metrics import expected_calibration_error

PROB_FLOOR = 1e-6  # probabilities are clipped here before a log: one zero must not cost infinity
# T outside these bounds means the logits carry no usable scale (all ties, or a degenerate fit).
T_BOUNDS = (0.05, 20.0)


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """``log(clip(probs, PROB_FLOOR, 1))``, in float64: the logits of a model that only gives
    probabilities (a softmax of them is the row-renormalised clipped distribution)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), PROB_FLOOR, 1.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1))


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the label indices ``y`` under ``softmax(logits / T)``."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def ece(probs: np.ndarray, y: np.ndarray) -> float:
    """Expected calibration error of the top label's probability (the project's one definition)."""
    p = np.asarray(probs, dtype=np.float64)
    top = p.argmax(axis=1)
    return expected_calibration_error(np.clip(p.max(axis=1), 0.0, 1.0), top == np.asarray(y))


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and what it did on the rows it was fitted on."""

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    rows: int

    def report(self) -> dict[str, float | int]:
        return {
            "temperature": self.temperature,
            "nll_before": round(self.nll_before, 6),
            "nll_after": round(self.nll_after, 6),
            "ece_before": round(self.ece_before, 6),
            "ece_after": round(self.ece_after, 6),
            "rows": self.rows,
        }


def fit_temperature(logits: np.ndarray, y: Sequence[int] | np.ndarray) -> TemperatureFit:
    """The ``T`` in :data:`T_BOUNDS` minimising the NLL of ``y`` (label indices) under
    ``softmax(logits / T)`` (bounded Brent search: NLL is smooth and unimodal in ``T`` in practice).

    Fit it on rows the model did not train on: on its own training rows a model looks better
    calibrated than it is. Pass :func:`log_probabilities` of a model that gives only probabilities.
    """
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(y, dtype=np.intp)
    if z.ndim != 2 or z.shape[0] != labels.shape[0] or z.shape[0] == 0:
        raise ValueError(f"need logits of shape (n, labels) with n = {labels.shape[0]} > 0, got {z.shape}")
    result = minimize_scalar(lambda t: nll(z, labels, t), bounds=T_BOUNDS, method="bounded")
    t = float(result.x)
    return TemperatureFit(
        temperature=t,
        nll_before=nll(z, labels),
        nll_after=nll(z, labels, t),
        ece_before=ece(softmax(z), labels),
        ece_after=ece(softmax(z, t), labels),
        rows=int(labels.shape[0]),
    )
