"""Distances between two categorical label distributions, and when a difference is an alert.

Pure functions over ``{label: count}`` maps (no I/O), so every number here is unit-tested by hand.
Label sets are open and long-tailed, so:

- the Jensen-Shannon distance (``scipy.spatial.distance.jensenshannon``, base 2: 0 = identical,
  1 = disjoint) is bounded and defined when one side has labels the other lacks;
- PSI (population stability index, ``sum((a - e) * ln(a / e))``) is the number risk and ops teams
  already read with its bands (< 0.1 stable, < 0.25 moderate, above: major), but is infinite on an
  empty bin, so both sides get ``smoothing`` pseudo-counts per label first;
- Hellinger (bounded, gentler on rare labels than PSI) and L-infinity (the biggest single share
  move, the easiest to explain) are reported beside them;
- a label that is new (absent from the reference, or there only at noise level: stray clicks give
  every category a few votes) or vanished (expected but unseen) is flagged by name, because a
  distance averaged over many labels can hide the one that matters;
- a statistic alerts only with enough samples on both sides *and* a chi-square test of
  homogeneity below ``max_p_value``: a small window differs from any reference by chance alone.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Status = Literal["insufficient", "ok", "warn", "alert"]
STATISTICS = ("js", "psi", "hellinger", "linf")


@dataclass(frozen=True)
class Thresholds:
    """When a comparison warns or alerts (see ``DriftSettings`` for each field's meaning)."""

    min_samples: int = 200
    min_reference: int = 200
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    js_alert: float | None = 0.2
    hellinger_alert: float | None = None
    linf_alert: float | None = None
    max_p_value: float = 0.001
    new_label_min_count: int = 10
    new_label_min_share: float = 0.02
    new_label_max_reference_share: float = 0.005
    vanished_min_expected: float = 10.0
    smoothing: float = 0.5


def _aligned(current: Mapping[str, float], reference: Mapping[str, float]) -> tuple[list[str], Any, Any]:
    labels = sorted(set(current) | set(reference))
    cur = np.array([float(current.get(k, 0.0)) for k in labels])
    ref = np.array([float(reference.get(k, 0.0)) for k in labels])
    return labels, cur, ref


def _shares(counts: Any) -> Any:
    total = counts.sum()
    return counts / total if total > 0 else counts


def js_distance(current: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """Jensen-Shannon distance, base 2 (the square root of the divergence), in [0, 1]."""
    _, cur, ref = _aligned(current, reference)
    if cur.sum() <= 0 or ref.sum() <= 0:
        return math.nan
    from scipy.spatial.distance import jensenshannon  # here: scipy costs every CLI command ~1 s to import

    return float(jensenshannon(cur, ref, base=2))  # scipy normalises counts itself


def psi(current: Mapping[str, float], reference: Mapping[str, float], *, smoothing: float = 0.5) -> float:
    """Population stability index with ``smoothing`` pseudo-counts per label on both sides.

    The reference is the "expected" distribution, the current window the "actual" one; the sum
    is symmetric in the two apart from the smoothing, which shrinks shares of tiny samples most.
    """
    _, cur, ref = _aligned(current, reference)
    if cur.sum() <= 0 or ref.sum() <= 0:
        return math.nan
    a = _shares(cur + smoothing)
    e = _shares(ref + smoothing)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_band(value: float, thresholds: Thresholds = Thresholds()) -> str:
    """The conventional reading of a PSI value: stable, moderate or major shift."""
    if math.isnan(value):
        return "n/a"
    if value < thresholds.psi_warn:
        return "stable"
    return "moderate" if value < thresholds.psi_alert else "major"


def hellinger(current: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """Hellinger distance ``sqrt(1 - sum(sqrt(p * q)))`` of the share vectors, in [0, 1]."""
    _, cur, ref = _aligned(current, reference)
    if cur.sum() <= 0 or ref.sum() <= 0:
        return math.nan
    bc = float(np.sum(np.sqrt(_shares(cur) * _shares(ref))))
    return math.sqrt(max(0.0, 1.0 - bc))


def linf(current: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """The largest absolute change of one label's share, in [0, 1]."""
    _, cur, ref = _aligned(current, reference)
    if cur.sum() <= 0 or ref.sum() <= 0:
        return math.nan
    return float(np.max(np.abs(_shares(cur) - _shares(ref))))


def homogeneity_p_value(current: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """p-value of a chi-square test that both samples come from one distribution (1.0 if untestable)."""
    _, cur, ref = _aligned(current, reference)
    keep = (cur + ref) > 0
    if keep.sum() < 2 or cur.sum() <= 0 or ref.sum() <= 0:
        return 1.0
    from scipy.stats import chi2_contingency  # here, like jensenshannon: import cost

    _, p, _, _ = chi2_contingency(np.vstack([cur[keep], ref[keep]]), correction=False)
    return float(p)


@dataclass(frozen=True)
class Move:
    """One label's share in the window and in the reference."""

    label: str
    share: float
    reference_share: float

    @property
    def delta(self) -> float:
        return self.share - self.reference_share


@dataclass(frozen=True)
class Comparison:
    """A window against a reference: every statistic, flagged labels, the verdict and why."""

    n: int
    n_reference: int
    js: float
    psi: float
    hellinger: float
    linf: float
    p_value: float
    psi_band: str
    new_labels: list[str]
    vanished_labels: list[str]
    moves: list[Move]
    status: Status
    reasons: list[str] = field(default_factory=list)

    @property
    def alert(self) -> bool:
        return self.status == "alert"

    def statistics(self) -> dict[str, float | None]:
        """The four statistics, NaN (no data on a side) as ``None`` so JSON and Postgres accept them."""
        return {k: (None if math.isnan(v) else round(v, 6)) for k, v in self._stats().items()}

    def _stats(self) -> dict[str, float]:
        return {"js": self.js, "psi": self.psi, "hellinger": self.hellinger, "linf": self.linf}


def compare(
    current: Mapping[str, float],
    reference: Mapping[str, float],
    thresholds: Thresholds = Thresholds(),
    *,
    top: int = 8,
) -> Comparison:
    """Compare a window's label counts with a reference's and decide: insufficient, ok, warn or alert."""
    t = thresholds
    n, n_ref = round(sum(current.values())), round(sum(reference.values()))
    labels, cur, ref = _aligned(current, reference)
    cur_sh, ref_sh = _shares(cur), _shares(ref)
    moves = sorted(
        (Move(k, float(c), float(r)) for k, c, r in zip(labels, cur_sh, ref_sh, strict=True)),
        key=lambda m: (-abs(m.delta), m.label),
    )[:top]
    js_v, psi_v = js_distance(current, reference), psi(current, reference, smoothing=t.smoothing)
    hel_v, linf_v = hellinger(current, reference), linf(current, reference)
    p = homogeneity_p_value(current, reference)
    new = [
        k
        for k, c, r, s in zip(labels, cur, ref_sh, cur_sh, strict=True)
        if r < t.new_label_max_reference_share and c >= t.new_label_min_count and s >= t.new_label_min_share
    ]
    vanished = [
        k for k, c, s in zip(labels, cur, ref_sh, strict=True) if c == 0 and s * n >= t.vanished_min_expected
    ]
    band = psi_band(psi_v, t)
    if n < t.min_samples or n_ref < t.min_reference:
        reason = f"too few samples to judge ({n} in the window, {n_ref} in the reference)"
        return Comparison(
            n, n_ref, js_v, psi_v, hel_v, linf_v, p, band, new, vanished, moves, "insufficient", [reason]
        )
    status, reasons = _verdict(
        {"psi": psi_v, "js": js_v, "hellinger": hel_v, "linf": linf_v}, p, new, vanished, t
    )
    return Comparison(n, n_ref, js_v, psi_v, hel_v, linf_v, p, band, new, vanished, moves, status, reasons)


def _verdict(
    stats: Mapping[str, float], p: float, new: list[str], vanished: list[str], t: Thresholds
) -> tuple[Status, list[str]]:
    """Alert (with every reason), warn (PSI in the moderate band) or ok, for a window large enough to judge.

    A statistic counts only when the chi-square test says the difference is not chance; new and
    vanished labels alert on their own.
    """
    reasons: list[str] = []
    significant = p <= t.max_p_value
    limits = {"psi": t.psi_alert, "js": t.js_alert, "hellinger": t.hellinger_alert, "linf": t.linf_alert}
    for name, limit in limits.items():
        value = stats[name]
        if limit is not None and value >= limit and significant:
            reasons.append(f"{name} {value:.3f} >= {limit:g} (p={p:.1e})")
    if new:
        reasons.append("new label(s): " + ", ".join(new))
    if vanished:
        reasons.append("vanished label(s): " + ", ".join(vanished))
    if reasons:
        return "alert", reasons
    if stats["psi"] >= t.psi_warn and significant:
        return "warn", [f"psi {stats['psi']:.3f} in the moderate band [{t.psi_warn:g}, {t.psi_alert:g})"]
    return "ok", reasons
