"""Stacking: a multinomial logistic regression over the members' log-probabilities and row features.

Every label gets its own coefficient on every member's log-probability of every label, plus on the
row features: it can learn that a member is trusted for some labels and not others, or that the
memory decides on head queries. The price is ``labels x (members x labels + features)``
parameters, so it needs more fusion rows than pooling does (``fit_fusion`` measures which wins).
Measured on synthetic members, 5,000 rows x 3 members: with 12 labels it comes close to pooling
(CV NLL 0.76 vs 0.71); with 100 labels (30,400 coefficients) it overfits (2.66 vs 1.21) and its
five CV fits dominate the fitting time.

Columns are standardised for the solver; the stored coefficients are converted back to raw units
(``logits = X @ coef.T + intercept``), so prediction is one matrix product, no scikit-learn object.
A label absent from the fusion rows gets, per member, the mean own-label coefficient (in raw
units: the weight on that member's log-probability of the label) of the labels that were present,
and their mean centred intercept: it follows its members instead of never being predicted.
"""

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from trainer.fusion.inputs import FEATURE_NAMES

# Inverse L2 strength on standardised columns: moderate, since coefficients outnumber rows.
DEFAULT_C = 1.0
_MAX_ITER = 300
_TOL = 1e-3  # on the NLL gradient: far below what the CV scores can tell apart


def design(log_probs: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``(n, members x labels + features)``: each member's log-probabilities, then the features."""
    members, n, labels = log_probs.shape
    return np.hstack([log_probs.transpose(1, 0, 2).reshape(n, members * labels), features])


class Stacker:
    """Fitted raw-unit coefficients of the multinomial model (labels in the fusion's order)."""

    method = "stacking"

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, scale: np.ndarray, converged: bool) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)  # fit-time column std: for member_influence
        self.converged = bool(converged)

    def logits(self, log_probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        return design(log_probs, features) @ self.coef.T + self.intercept

    @classmethod
    def fit(
        cls,
        log_probs: np.ndarray,
        features: np.ndarray,
        y: np.ndarray,
        *,
        seed: int = 0,
        c: float = DEFAULT_C,
    ) -> "Stacker":
        members, _, n_labels = log_probs.shape
        x = design(log_probs, features)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale < 1e-12] = 1.0  # a constant column (e.g. no memory row at all) stays 0
        model = LogisticRegression(C=c, tol=_TOL, max_iter=_MAX_ITER, random_state=seed)
        with warnings.catch_warnings():
            # Not converging within _MAX_ITER is recorded (``converged``) and the CV score judges
            # the result; a warning would only be noise in a training log.
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            model.fit(((x - mean) / scale).astype(np.float32), y)  # float32: half the solver's time
        converged = bool(np.max(model.n_iter_) < _MAX_ITER)
        coef_std, intercept_std = model.coef_, model.intercept_
        if coef_std.shape[0] == 1:  # two labels: scikit-learn keeps one row, class 1's logit against class 0
            coef_std = np.vstack([-coef_std / 2, coef_std / 2])
            intercept_std = np.concatenate([-intercept_std / 2, intercept_std / 2])
        seen = np.asarray(model.classes_, dtype=np.intp)
        coef = np.zeros((n_labels, x.shape[1]))
        coef[seen] = coef_std / scale
        centre = np.full(n_labels, float(intercept_std.mean()))
        centre[seen] = intercept_std
        missing = np.setdiff1d(np.arange(n_labels), seen)
        for m in range(members):
            coef[missing, m * n_labels + missing] = coef[seen, m * n_labels + seen].mean()
        # Raw-unit intercepts: the standardised model is centred on the fit rows' column means.
        intercept = centre - coef @ mean
        return cls(coef, intercept, scale, converged)

    def member_influence(self) -> np.ndarray:
        """Per member, its share of the absolute standardised coefficients on member columns
        (``|coef| x column std``, summed over labels and the member's columns; features excluded):
        how much of the model's movement comes from that member. Shares sum to 1."""
        n_labels = self.coef.shape[0]
        members = (self.coef.shape[1] - len(FEATURE_NAMES)) // n_labels
        mass = np.abs(self.coef * self.scale)[:, : members * n_labels].reshape(n_labels, members, n_labels)
        per_member = mass.sum(axis=(0, 2))
        total = per_member.sum()
        return per_member / total if total > 0 else np.full(members, 1.0 / members)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "column_scale": self.scale.tolist(),
            "converged": self.converged,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Stacker":
        return cls(
            np.asarray(data["coef"], dtype=np.float64),
            np.asarray(data["intercept"], dtype=np.float64),
            np.asarray(data["column_scale"], dtype=np.float64),
            bool(data["converged"]),
        )
