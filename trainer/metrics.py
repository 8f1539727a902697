"""Classification metrics over label strings: the one definition of every number the project reports.

Training's validation (``val_macro_f1``, which ``registry list`` and the demo show), the promotion
gate, ``intentloop eval`` and the baselines all score through these functions, so a number called
``macro_f1`` means the same thing wherever it is printed or stored. They wrap scikit-learn's metrics
rather than re-deriving them.

**Macro-F1 averages over the labels present in the truth of the rows scored** (``labels=`` the
sorted distinct true labels, a 0/0 precision or recall counting as 0). Why this averaging:

- two models scored on the same rows are averaged over the same classes whatever they predict, so
  their numbers compare (the gate compares a candidate with its champion and baselines this way);
  averaging over the labels of the truth and the predictions would let a model's own mistakes
  change the denominator;
- a label the rows never use says nothing about those rows: predicting it still costs the recall
  of the true class, but it is not averaged in as a class scoring 0;
- it is what the gate has always computed, so gate verdicts are unchanged. Training's
  ``val_macro_f1`` averaged over truth and predictions before: it differed from the gate's number
  exactly when the model predicted a label absent from the validation rows; now, on the same rows,
  the two are one number.

Per-class scores (:func:`per_class`) list every label seen in the truth or the predictions: a
label predicted but never true is worth showing (its precision is 0), only not worth averaging.
"""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

ECE_BINS = 15


def _checked(y_true: Sequence[str], y_pred: Sequence[str]) -> tuple[list[str], list[str]]:
    t, p = list(y_true), list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} items but y_pred has {len(p)}")
    return t, p


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Fraction of exact matches; 0.0 for empty input."""
    t, p = _checked(y_true, y_pred)
    return float(accuracy_score(t, p)) if t else 0.0


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Unweighted mean of the per-class F1 over the labels present in ``y_true`` (see the module
    docstring for why); 0.0 for empty input."""
    t, p = _checked(y_true, y_pred)
    if not t:
        return 0.0
    return float(f1_score(t, p, labels=sorted(set(t)), average="macro", zero_division=0))


def per_class(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """``{label: {"precision", "recall", "f1", "support"}}`` for ``labels`` (default: every label in
    the truth or the predictions, sorted); a 0/0 ratio counts as 0, ``support`` is a row count."""
    t, p = _checked(y_true, y_pred)
    classes = list(labels) if labels is not None else sorted(set(t) | set(p))
    if not classes:
        return {}
    precision, recall, f1, support = precision_recall_fscore_support(t, p, labels=classes, zero_division=0)
    return {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(classes)
    }


def expected_calibration_error(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """ECE: sum over equal-width confidence bins of (bin share) x |accuracy - mean confidence|.

    Bin ``i`` holds confidences in ``(i/n, (i+1)/n]`` (a confidence of exactly 0 joins the first).
    0.0 for empty input. Hand-written: scikit-learn has calibration curves but no ECE.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.shape != hit.shape:
        raise ValueError(f"{conf.size} confidences but {hit.size} correctness flags")
    if conf.size == 0:
        return 0.0
    if np.any((conf < 0) | (conf > 1)):
        raise ValueError("confidences must lie in [0, 1]")
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(hit[in_bin].mean() - conf[in_bin].mean())
    return float(ece)
