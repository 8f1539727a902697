"""Fusion of members (encoder + adapter, lexical, behaviour memory) into one calibrated distribution.

Recipe, on held-out rows none of the members trained on:

1. Each member's probabilities over the same label order, clipped at 1e-6 and logged; a member
   absent for a row (the memory, for a query it does not know) contributes 0 there, and the row
   features (:class:`RowFeatures`) say so.
2. Two combiners, both cross-validated (5 folds, seeded) on those rows by NLL: weighted
   log-linear pooling (:mod:`.loglinear`, one weight per member) and stacking (:mod:`.stacking`,
   a multinomial logistic regression over log-probabilities + features). ``method="auto"`` keeps
   the lower CV NLL and records both scores.
3. Temperature scaling (:mod:`trainer.calibration`) on the chosen combiner's out-of-fold logits;
   ECE before and after go into the report.

A fitted :class:`Fusion` is plain numbers (``fusion.json``): no pickle, the same fusion the same bytes.
"""

from trainer.fusion.inputs import FEATURE_NAMES, RowFeatures, aligned
from trainer.fusion.model import CV_FOLDS, FILENAME, MEMORY_MEMBER, METHODS, Fusion, fit_fusion

__all__ = [
    "CV_FOLDS",
    "FEATURE_NAMES",
    "FILENAME",
    "MEMORY_MEMBER",
    "METHODS",
    "Fusion",
    "RowFeatures",
    "aligned",
    "fit_fusion",
]
