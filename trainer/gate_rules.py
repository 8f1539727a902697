"""The promotion gate: bless a candidate adapter only if it beats what the run could have shipped
without it, knows what gold says, and is no worse than the champion.

A candidate is **blessed** when, on the same held-out rows scored in the same run:

1. it beats the baselines the run trains on the same training rows — the TF-IDF + logistic
   regression model and the label prior (the label mix: what learning nothing from the text
   scores) — by ``baseline_margin`` on every gated metric. This is relative, so it holds on noisy
   weak labels and on hundreds of labels alike, where an absolute floor would judge label noise;
2. when at least ``min_gold_for_floors`` held-out rows carry gold labels, it clears the absolute
   floors (``min_macro_f1``, ``min_accuracy``) **on those gold rows**: absolute numbers mean
   something only against human labels;
3. for every metric in ``metrics`` (macro-F1 and accuracy by default), overall and on every
   frequency slice (head, torso, tail) with at least ``min_slice_examples`` rows, it is at most
   ``tolerance`` below the champion — an average gain must not hide a loss on the head (most of the
   traffic) or the tail (most of the queries);
4. the champion could be evaluated at all: a champion that cannot be loaded on this base (the
   encoder changed) is a decision for a human (``intentloop registry promote``), not a free pass;
5. every **other label dimension** (the intent type) the candidate has a head for beats that
   dimension's label prior and does not regress against the champion's head of the dimension, on
   that dimension's held-out rows (rules 1 and 3 again; :mod:`trainer.gate_dimensions`); a
   candidate without a head its champion serves fails;
6. a **fused** candidate is at most ``fusion.member_margin`` macro-F1 below its best member,
   overall and on every slice of its report (frequency and kind slices) with at least
   ``fusion.min_slice_rows`` rows: fusion exists to combine what each member gets right, so a
   fused model that loses a slice to one of its own members has not earned its place there.

Pure: no I/O, no models. :mod:`trainer.gate` scores the models and records the verdict; this module
only decides, from the reports, and says why (every check, passed or not, with its numbers).
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from trainer.evaluation import SLICES, metric
from trainer.settings import FusionSettings, GateSettings

_EPS = 1e-9  # float noise allowance when a candidate ties the champion exactly


@dataclass(frozen=True)
class Check:
    """One gate condition and how the candidate fared on it."""

    kind: str  # "baseline" | "floor" | "no_regression" | "champion_unavailable" | "member" | "dimension"
    metric: str
    slice: str  # "overall" or a slice name
    value: float
    threshold: float
    passed: bool
    reference: float | None = None  # the champion's (no_regression) or best member's (member) value
    skipped: bool = False  # reported, not gated (slice too small)
    detail: str = ""

    def describe(self) -> str:
        if self.kind in ("champion_unavailable", "dimension"):
            return self.detail
        if self.skipped:
            if self.kind == "floor":
                return self.detail
            return f"{self.slice} {self.metric} not gated: {self.detail}"
        if self.kind == "floor":
            op = ">=" if self.passed else "<"
            return f"{self.slice} {self.metric} {self.value:.4f} {op} floor {self.threshold:.4f}"
        assert self.reference is not None
        if self.kind == "member":
            return _describe_member(self)
        if self.kind == "baseline":
            margin = self.threshold - self.reference
            if self.passed and self.value >= self.reference:
                return f"{self.metric} {self.value:.4f} beats {self.detail} {self.reference:.4f}"
            if self.passed:
                return (
                    f"{self.metric} {self.value:.4f} trails {self.detail} {self.reference:.4f} "
                    f"within the margin ({margin:+.4f})"
                )
            return (
                f"{self.metric} {self.value:.4f} does not beat the {self.detail} baseline "
                f"{self.reference:.4f} on the same rows (margin {margin:+.4f})"
            )
        drop = self.reference - self.value
        if self.passed:
            return (
                f"{self.slice} {self.metric} {self.value:.4f} vs champion {self.reference:.4f}: no regression"
            )
        return (
            f"{self.slice} {self.metric} regressed: {self.value:.4f} vs champion {self.reference:.4f} "
            f"(drop {drop:.4f} > tolerance {self.reference - self.threshold:.4f})"
        )


@dataclass(frozen=True)
class GateDecision:
    """Blessed or not, why (human-readable), and every check behind it."""

    blessed: bool
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "blessed": self.blessed,
            "reasons": list(self.reasons),
            "checks": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}
                for c in self.checks
            ],
        }


def decide(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings,
    *,
    champion_version: str | None = None,
    champion_error: str | None = None,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    gold: Mapping[str, Any] | None = None,
    members: Mapping[str, Mapping[str, Any]] | None = None,
    fusion: FusionSettings | None = None,
    dimensions: Mapping[str, "DimensionReports"] | None = None,
) -> GateDecision:
    """The verdict on ``candidate`` given the baselines', the champion's and its own gold-only
    reports on the same rows (pure).

    ``baselines``: name -> report (``tfidf``, ``label_prior``). ``gold``: the candidate's report
    on the held-out gold rows only (floors apply to it when it has enough rows). ``champion`` None
    with no ``champion_error``: there is no champion, no-regression checks do not apply.
    ``members``: a fused candidate's members, name -> report on the same rows as ``candidate``
    (None or empty for a plain candidate: no member checks); ``fusion`` gives the member rule's
    margin and slice size (defaults when None).
    Rejected: ``reasons`` lists every failed check. Blessed: every check that passed.
    """
    checks = [*_baseline_checks(candidate, baselines or {}, settings), *_floor_checks(gold, settings)]
    if champion_error is not None:
        detail = (
            f"champion {champion_version} could not be evaluated ({champion_error}): the no-regression "
            "check cannot run; review and promote by hand (`intentloop registry promote`)"
        )
        checks.append(Check("champion_unavailable", "-", "overall", math.nan, math.nan, False, detail=detail))
    elif champion is not None:
        checks.extend(_regression_checks(candidate, champion, settings))
    for name, reports in sorted((dimensions or {}).items()):
        checks.extend(dimension_checks(name, reports, settings))
    if members:
        checks.extend(member_checks(candidate, members, fusion or FusionSettings()))
    failed = [c for c in checks if not c.passed]
    if failed:
        return GateDecision(False, [c.describe() for c in failed], checks)
    reasons = [c.describe() for c in checks]
    if champion is None:
        reasons.append("no champion yet: no regression to check")
    return GateDecision(True, reasons, checks)


@dataclass(frozen=True)
class DimensionReports:
    """One extra dimension's reports on its held-out rows: the candidate's head (``None``: it has
    none), its label prior, the champion's head (``None``: no champion, or it has none) and
    whether the champion serves the dimension at all."""

    candidate: Mapping[str, Any] | None
    prior: Mapping[str, Any]
    champion: Mapping[str, Any] | None
    champion_has_head: bool = False


def dimension_checks(dimension: str, reports: DimensionReports, settings: GateSettings) -> list[Check]:
    """Rules 1 and 3 on one extra dimension's head (rule 5); every check names the dimension."""
    if reports.candidate is None:
        passed = not reports.champion_has_head
        detail = f"{dimension}: the candidate has no head (too few labels to train one)" + (
            "; the champion serves it, so promoting would take it away" if not passed else ""
        )
        return [Check("dimension", "-", dimension, math.nan, math.nan, passed, skipped=passed, detail=detail)]
    checks = [
        replace(c, slice=f"{dimension}/{c.slice}", detail=f"{dimension} {c.detail}")
        for c in _baseline_checks(reports.candidate, {"label_prior": reports.prior}, settings)
    ]
    if reports.champion is not None:
        checks.extend(
            replace(c, slice=f"{dimension}/{c.slice}")
            for c in _regression_checks(reports.candidate, reports.champion, settings)
        )
    return checks


def _baseline_checks(
    candidate: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], settings: GateSettings
) -> list[Check]:
    checks = []
    for name, report in sorted(baselines.items()):
        for metric_name in settings.metrics:
            value, ref = metric(candidate, metric_name), metric(report, metric_name)
            bar = ref + settings.baseline_margin
            passed = not math.isnan(value) and (math.isnan(ref) or value >= bar - _EPS)
            checks.append(Check("baseline", metric_name, "overall", value, bar, passed, ref, detail=name))
    return checks


def _floor_checks(gold: Mapping[str, Any] | None, settings: GateSettings) -> list[Check]:
    n = int(gold.get("n", 0)) if gold else 0
    floors = (("macro_f1", settings.min_macro_f1), ("accuracy", settings.min_accuracy))
    if gold is None or n < settings.min_gold_for_floors:
        detail = (
            f"{n} held-out gold rows < min_gold_for_floors {settings.min_gold_for_floors}: absolute floors "
            "not applied (they only mean something on human labels)"
        )
        return [Check("floor", "-", "gold", math.nan, math.nan, True, skipped=True, detail=detail)]
    return [
        Check("floor", name, "gold", (v := metric(gold, name)), floor, passed=v >= floor - _EPS)
        for name, floor in floors
    ]


def _regression_checks(
    candidate: Mapping[str, Any], champion: Mapping[str, Any], settings: GateSettings
) -> list[Check]:
    checks = []
    for slice_name in (None, *SLICES):
        where = slice_name or "overall"
        n = int(candidate.get("n", 0)) if slice_name is None else _slice_n(candidate, slice_name)
        for name in settings.metrics:
            value, ref = metric(candidate, name, slice_name), metric(champion, name, slice_name)
            floor = ref - settings.tolerance
            if slice_name is not None and n < settings.min_slice_examples:
                detail = f"{n} held-out rows < min_slice_examples {settings.min_slice_examples}"
                checks.append(
                    Check("no_regression", name, where, value, floor, True, ref, skipped=True, detail=detail)
                )
                continue
            checks.append(Check("no_regression", name, where, value, floor, value >= floor - _EPS, ref))
    return checks


def _slice_n(report: Mapping[str, Any], slice_name: str) -> int:
    return int(report.get("slices", {}).get(slice_name, {}).get("n", 0))


def member_checks(
    fused: Mapping[str, Any], members: Mapping[str, Mapping[str, Any]], settings: FusionSettings
) -> list[Check]:
    """The fused report against its best member's macro-F1, overall and per slice (rule 5).

    Slices: every slice of the fused report (head, torso, tail, unseen, and the kind slices when
    the rows' kinds were known): the comparison is on identical rows, so any slice with enough of
    them is a fair one. A slice below ``settings.min_slice_rows`` rows is reported, skipped.
    """
    checks = []
    for slice_name in (None, *sorted(fused.get("slices", {}))):
        where = slice_name or "overall"
        n = int(fused.get("n", 0)) if slice_name is None else _slice_n(fused, slice_name)
        scored = {m: metric(r, "macro_f1", slice_name) for m, r in members.items()}
        scored = {m: v for m, v in scored.items() if not math.isnan(v)}
        if not scored:
            continue
        best = max(sorted(scored), key=lambda m: scored[m])
        value, ref = metric(fused, "macro_f1", slice_name), scored[best]
        floor = ref - settings.member_margin
        if n < settings.min_slice_rows:
            detail = (
                f"fused vs best member {best}, {n} held-out rows < fusion.min_slice_rows "
                f"{settings.min_slice_rows}"
            )
            checks.append(
                Check("member", "macro_f1", where, value, floor, True, ref, skipped=True, detail=detail)
            )
            continue
        passed = not math.isnan(value) and value >= floor - _EPS
        checks.append(Check("member", "macro_f1", where, value, floor, passed, ref, detail=best))
    return checks


def _describe_member(check: Check) -> str:
    assert check.reference is not None
    margin = check.reference - check.threshold
    if check.passed:
        return (
            f"{check.slice} macro_f1 fused {check.value:.4f} vs best member {check.detail} "
            f"{check.reference:.4f}: within the member margin {margin:.4f}"
        )
    return (
        f"{check.slice} macro_f1 fused {check.value:.4f} is below member {check.detail} "
        f"{check.reference:.4f} by {check.reference - check.value:.4f} > member margin {margin:.4f}"
    )
