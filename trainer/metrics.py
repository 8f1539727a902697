"""Classification metrics over label strings. Pure numpy: no sklearn, no torch."""

from collections.abc import Sequence

import numpy as np


def _arrays(y_true: Sequence[str], y_pred: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(list(y_true), dtype=object)
    p = np.asarray(list(y_pred), dtype=object)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items but y_pred has {p.size}")
    return t, p


def _labels(t: np.ndarray, p: np.ndarray, labels: Sequence[str] | None) -> list[str]:
    """The given labels, else (like sklearn) every label seen in the truth or the predictions."""
    return list(labels) if labels is not None else sorted(set(t.tolist()) | set(p.tolist()))


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Fraction of exact matches; 0.0 for empty input."""
    t, p = _arrays(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def per_class(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """``{label: {"precision", "recall", "f1", "support"}}``; a 0/0 ratio counts as 0."""
    t, p = _arrays(y_true, y_pred)
    out: dict[str, dict[str, float]] = {}
    for label in _labels(t, p, labels):
        tp = int(np.sum((t == label) & (p == label)))
        n_pred = int(np.sum(p == label))
        n_true = int(np.sum(t == label))
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": float(n_true)}
    return out


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Unweighted mean of the per-class F1 scores; 0.0 for empty input."""
    scores = per_class(y_true, y_pred, labels)
    return float(np.mean([s["f1"] for s in scores.values()])) if scores else 0.0
