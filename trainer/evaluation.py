"""Evaluation of an intent model against gold ``(query, label)`` rows: one JSON-able report.

The report answers the questions the promotion gate and a human reviewer ask of a model:

- **accuracy** and **macro-F1** (every intent counts the same, so a model cannot hide a neglected
  small category behind a big one), and **per-class** precision / recall / F1 / support;
- **expected calibration error** (ECE, 15 equal-width bins over the top label's probability): the
  serving API returns these probabilities, and callers threshold on them, so a model that is right
  but over-confident is a worse model;
- **slices by query frequency** — ``head``, ``torso``, ``tail`` — because an average over queries is
  dominated by the long tail while an average over traffic is dominated by the head; a refresh must
  not trade one for the other (the gate checks every slice). Rows whose query was never searched
  form a fourth slice, ``unseen``, reported but not gated: a gold set written from a catalog rather
  than from the logs can be mostly such queries, and folding them into the tail would both hide
  how the model does on real traffic and make the tail say nothing about the tail.

Slice definition (:func:`frequency_slices`): take the number of searches of every normalised query
(in the store, or a given count map). The **head** is every query searched at least ``head_min``
times, where ``head_min`` is the count threshold whose queries together make the share of all
searches closest to ``head_share`` (default 50%): the most searched queries covering about half of
the traffic. The **torso** is the queries below the head searched at least ``torso_min`` times, the
threshold (below ``head_min``) whose queries, head included, cover closest to
``head_share + torso_share`` (default 80%) of the searches: about the next 30%. Everything else is
**tail** (:meth:`FrequencySlices.slice_of` counts a never-searched query there, which is what
training's replay wants; :func:`evaluate` reports those rows as ``unseen``). Thresholds are counts,
not ranks, so equally frequent queries always share a slice. On small samples, where most queries
were searched once or twice, the shares can only be approximate, and the thresholds are chosen so
that each slice keeps some queries (the least searched count is always tail, the next one at most
torso); the thresholds and the traffic each slice's rows carry are in the report.

**Slices by kind of query** — ``unseen_phrasing`` (words no training query used for that intent),
``typo`` (misspelt), ``question`` (a question or a long natural-language query), plus any other
kind the caller names — are reported beside the frequency slices when the caller knows each
query's kinds (the simulator does; a gold file may say). They overlap the frequency slices and
each other (a misspelt question is in both), so they are never summed; they are where a lexical
model and a pretrained encoder differ most, which is what the fused model is judged on.

Every number is computed by :mod:`trainer.metrics`, the one definition training's validation, the
gate, ``eval`` and the baselines share: macro-F1 averages over the labels present in the gold rows
(of the set or of the slice), so two models scored on the same rows are averaged over the same
classes whatever they predict (see that module for why).
"""

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trainer.metrics import accuracy, expected_calibration_error, macro_f1, per_class

SLICES = ("head", "torso", "tail")  # what the gate checks
UNSEEN = "unseen"  # rows whose query was never searched: reported, never gated
REPORTED_SLICES = (*SLICES, UNSEEN)
KIND_SLICES = ("unseen_phrasing", "typo", "question")  # always reported when kinds are given


class Predictor(Protocol):
    """Anything that scores queries: a served adapter (``LoadedModel``) or a baseline."""

    @property
    def labels(self) -> list[str]: ...

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class FrequencySlices:
    """Count thresholds of the head and torso slices (see the module docstring)."""

    head_min: int
    torso_min: int
    total_searches: int
    head_share: float
    torso_share: float

    def slice_of(self, count: int) -> str:
        if self.total_searches <= 0 or count <= 0:
            return "tail"
        if count >= self.head_min:
            return "head"
        if count >= self.torso_min:
            return "torso"
        return "tail"

    def describe(self) -> dict[str, Any]:
        return {
            "head_min_searches": self.head_min,
            "torso_min_searches": self.torso_min,
            "total_searches": self.total_searches,
            "head_share": self.head_share,
            "torso_share": self.torso_share,
        }


def frequency_slices(
    counts: Mapping[str, int], head_share: float = 0.5, torso_share: float = 0.3
) -> FrequencySlices:
    """Head/torso count thresholds of a traffic distribution ``{normalised query: searches}``."""
    if head_share <= 0 or torso_share <= 0 or head_share + torso_share >= 1:
        raise ValueError("need 0 < head_share, 0 < torso_share and head_share + torso_share < 1")
    freqs = [c for c in counts.values() if c > 0]
    total = sum(freqs)
    if total == 0:
        return FrequencySlices(0, 0, 0, head_share, torso_share)
    # share[v]: fraction of all searches made by queries searched at least v times.
    searches_at = Counter(freqs)
    values = sorted(searches_at, reverse=True)
    share, cumulative = {}, 0
    for v in values:
        cumulative += v * searches_at[v]
        share[v] = cumulative / total
    # Keep every slice non-empty when the distinct counts allow it: the head threshold leaves at
    # least two smaller counts (torso, tail), the torso threshold at least one (tail).
    head_choices = values[:-2] or values[:1]
    head_min = min(head_choices, key=lambda v: (abs(share[v] - head_share), -v))
    torso_choices = [v for v in values[:-1] if v < head_min]
    torso_min = (
        min(torso_choices, key=lambda v: (abs(share[v] - head_share - torso_share), -v))
        if torso_choices
        else head_min
    )
    return FrequencySlices(head_min, torso_min, total, head_share, torso_share)


def _scores(y_true: list[str], y_pred: list[str], confidence: np.ndarray) -> dict[str, Any]:
    return {
        "n": len(y_true),
        "accuracy": round(accuracy(y_true, y_pred), 6),
        "macro_f1": round(macro_f1(y_true, y_pred), 6),
        "ece": round(expected_calibration_error(confidence, np.asarray(y_true) == np.asarray(y_pred)), 6),
    }


def classification_report(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    confidence: Sequence[float] | np.ndarray,
    slices: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Overall scores, per-class scores and (with ``slices``, one name per row) per-slice scores."""
    t, p = list(y_true), list(y_pred)
    conf = np.asarray(confidence, dtype=np.float64)
    if not (len(t) == len(p) == conf.size):
        raise ValueError(f"{len(t)} gold labels, {len(p)} predictions, {conf.size} confidences")
    if not t:
        raise ValueError("nothing to evaluate: no gold rows")
    report = _scores(t, p, conf)
    report["per_class"] = {
        label: {k: (int(v) if k == "support" else round(v, 6)) for k, v in scores.items()}
        for label, scores in per_class(t, p).items()
    }
    if slices is not None:
        names = list(slices)
        if len(names) != len(t):
            raise ValueError(f"{len(names)} slice names for {len(t)} rows")
        report["slices"] = {}
        for name in REPORTED_SLICES:
            idx = [i for i, s in enumerate(names) if s == name]
            report["slices"][name] = (
                _scores([t[i] for i in idx], [p[i] for i in idx], conf[idx]) if idx else {"n": 0}
            )
    return report


def predict(model: Predictor, queries: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Top label and its probability for each query."""
    proba = model.predict_proba(list(queries))
    labels = list(model.labels)
    if proba.shape != (len(queries), len(labels)):
        raise ValueError(f"model returned probabilities of shape {proba.shape} for {len(queries)} queries")
    top = proba.argmax(axis=1) if len(queries) else np.zeros(0, dtype=int)
    conf = proba.max(axis=1) if len(queries) else np.zeros(0)
    return [labels[i] for i in top], np.clip(conf.astype(np.float64), 0.0, 1.0)


def evaluate(
    model: Predictor,
    gold: Sequence[tuple[str, str]],
    counts: Mapping[str, int],
    slices: FrequencySlices | None = None,
    kinds: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Any]:
    """The full report of ``model`` on ``gold`` (normalised query, label) rows.

    ``counts`` gives each query's searches (queries missing from it count 0: the ``unseen``
    slice); ``slices`` defaults to the thresholds of ``counts`` itself, but pass the ones of the
    whole store's traffic when ``counts`` covers only part of it. ``kinds``: each query's kinds
    (``typo``, ``question``, ...; queries missing from it have none), reported as slices too.
    """
    if not gold:
        raise ValueError("nothing to evaluate: no gold rows")
    bounds = slices or frequency_slices(counts)
    queries = [q for q, _ in gold]
    y_true = [label for _, label in gold]
    y_pred, conf = predict(model, queries)
    names = [_slice_name(bounds, int(counts.get(q, 0))) for q in queries]
    report = classification_report(y_true, y_pred, conf, names)
    for name in REPORTED_SLICES:
        searches = sum(int(counts.get(q, 0)) for q, s in zip(queries, names, strict=True) if s == name)
        report["slices"][name]["searches"] = searches
    report["slice_definition"] = bounds.describe()
    if kinds is not None:
        report["slices"].update(kind_slices(y_true, y_pred, conf, [kinds.get(q, ()) for q in queries]))
    unknown = sorted(set(y_true) - set(model.labels))
    if unknown:
        report["labels_unknown_to_model"] = unknown
    return report


def kind_slices(
    y_true: Sequence[str], y_pred: Sequence[str], confidence: np.ndarray, kinds: Sequence[Collection[str]]
) -> dict[str, dict[str, Any]]:
    """Scores of the rows of each kind: :data:`KIND_SLICES` always (``{"n": 0}`` when none), and
    every other kind that some row has."""
    names = list(KIND_SLICES) + sorted({k for ks in kinds for k in ks} - set(KIND_SLICES))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        idx = [i for i, ks in enumerate(kinds) if name in ks]
        out[name] = (
            _scores([y_true[i] for i in idx], [y_pred[i] for i in idx], confidence[idx]) if idx else {"n": 0}
        )
    return out


def _slice_name(bounds: FrequencySlices, count: int) -> str:
    return UNSEEN if count <= 0 else bounds.slice_of(count)


def metric(report: Mapping[str, Any], name: str, slice_name: str | None = None) -> float:
    """One number of a report (``slice_name`` None: overall); NaN when the slice is empty."""
    part = report if slice_name is None else report.get("slices", {}).get(slice_name, {})
    value = part.get(name)
    return float(value) if value is not None else math.nan


def paired_comparison(y_true: Sequence[str], a: Sequence[str], b: Sequence[str]) -> dict[str, Any]:
    """Whether model ``a`` beats ``b`` on the same rows beyond chance: McNemar's exact test.

    Two F1 scores a few tenths of a point apart say nothing by themselves; on paired predictions
    only the rows where exactly one model is right carry information, and under "equally good"
    each of those is a coin flip. ``p_value`` is the two-sided binomial p of the split observed.
    """
    from scipy.stats import binomtest

    if not (len(y_true) == len(a) == len(b)):
        raise ValueError("paired comparison needs the same rows for both models")
    a_only = sum(1 for t, x, y in zip(y_true, a, b, strict=True) if x == t and y != t)
    b_only = sum(1 for t, x, y in zip(y_true, a, b, strict=True) if y == t and x != t)
    discordant = a_only + b_only
    p = binomtest(a_only, discordant, 0.5).pvalue if discordant else 1.0
    return {
        "n": len(y_true),
        "a_errors": sum(1 for t, x in zip(y_true, a, strict=True) if x != t),
        "b_errors": sum(1 for t, y in zip(y_true, b, strict=True) if y != t),
        "a_only_right": a_only,
        "b_only_right": b_only,
        "p_value": float(f"{p:.4g}"),  # 4 significant digits: small p values must survive
    }
