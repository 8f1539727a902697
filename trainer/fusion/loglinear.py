"""Weighted log-linear pooling: ``p(label) ∝ Π_i p_i(label) ** w_i`` with ``w_i >= 0``.

One weight per member, fitted by minimising the negative log-likelihood on held-out rows
(L-BFGS-B with the bound ``w >= 0`` and the analytic gradient). Few parameters, so it cannot
overfit a few thousand rows, and it treats every label alike: a label the fusion rows never
showed is still predicted when the members say so. A member whose log-probabilities only add
noise gets weight 0; the weights' sum also sets the sharpness (temperature scaling follows anyway).
"""

from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax


class LogLinearPool:
    """Fitted pooling weights, one per member in the fusion's member order."""

    method = "loglinear"

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)

    def logits(self, log_probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``Σ_i w_i log p_i`` for ``log_probs`` of shape ``(members, n, labels)`` (features unused:
        an absent member already contributes 0)."""
        return np.tensordot(self.weights, log_probs, axes=1)

    @classmethod
    def fit(
        cls, log_probs: np.ndarray, features: np.ndarray, y: np.ndarray, *, seed: int = 0
    ) -> "LogLinearPool":
        """Weights minimising the NLL of label indices ``y`` (``seed`` unused: the fit is deterministic)."""
        members, n, _ = log_probs.shape
        rows = np.arange(n)
        at_truth = log_probs[:, rows, y]  # (members, n)

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            logp = log_softmax(np.tensordot(w, log_probs, axes=1), axis=1)
            expected = np.einsum("nk,mnk->mn", np.exp(logp), log_probs)
            return float(-logp[rows, y].mean()), -(at_truth - expected).mean(axis=1)

        start = np.full(members, 1.0 / members)
        result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * members)
        # A member absent on every row has no gradient and would keep its starting weight.
        silent = ~np.any(log_probs != 0.0, axis=(1, 2))
        return cls(np.where(silent, 0.0, np.maximum(result.x, 0.0)))

    def member_influence(self) -> np.ndarray:
        """The weights themselves (not normalised: their sum is the pool's sharpness)."""
        return self.weights.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"weights": [float(w) for w in self.weights]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LogLinearPool":
        return cls(np.asarray(data["weights"], dtype=np.float64))
