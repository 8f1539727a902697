"""How likely a shopper was to look at each rank, estimated from the click log itself.

Raw click counts mix two things: whether a product is what the shopper wanted, and whether the
shopper ever looked at its rank. The position-based model (PBM) separates them,

    P(click | query q, product d at rank r) = theta_r * gamma_qd

(``theta_r``: examination propensity of rank r; ``gamma_qd``: attractiveness). Weighting a click by
``1 / theta_r`` (inverse propensity scoring, IPS) then counts it as if every rank had been examined
like the top one. Two estimators of ``theta`` from the log alone:

- :func:`fit_pbm`: EM over impressions (Chuklin et al., *Click Models for Web Search*, ch. 4).
- :func:`fit_harvest`: intervention harvesting (Agarwal et al., WSDM 2019): a pair shown at ranks
  k and k' by a noisy ranker is a free randomised experiment; its click-rate ratio is theta_k'/theta_k.

Both learn only from pairs seen at two or more ranks: a pair seen at one rank says nothing about
theta (its own gamma explains any click rate) and, under EM, a clicked singleton even drags theta
towards 1 (gamma <= 1 forces theta up). With products as the attractiveness key, pairs are sparse
and EM's maximum likelihood is biased upwards at the top ranks; harvesting is not. ``group`` pools
the products of a group (e.g. a leaf category) into one attractiveness, which makes EM accurate too
(the numbers are in the simulation test).

Which impressions: by default every shown position (``"shown"``), so ``theta`` is the chance that a
rank was looked at, scrolling included. ``"viewed"`` keeps only the positions the log says were
viewed (impression events, or the fold down to the deepest click). That is the obvious choice but it
conditions on the outcome: a rank below the fold enters only when it or something below it was
clicked, so deep ranks look more examined than they are.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streams.weak.records import SearchRecord

ImpressionPolicy = Literal["shown", "viewed"]
Method = Literal["harvest", "pbm"]
_EPS = 1e-9  # keeps ratios and logs finite


@dataclass(frozen=True, slots=True)
class Propensity:
    """Examination propensity per rank, ``theta[0] == 1``; ranks past the end share the last value."""

    theta: tuple[float, ...]
    max_weight: float = 10.0  # IPS weights are clipped: a click at an almost-never-seen rank is noisy

    def examination(self, rank: int) -> float:
        """P(rank examined) relative to the top rank."""
        if not self.theta:
            return 1.0
        return self.theta[min(max(rank, 0), len(self.theta) - 1)]

    def weight(self, rank: int) -> float:
        """The inverse-propensity weight of a click at ``rank``, clipped to ``[1/max_weight, max_weight]``."""
        return float(np.clip(1.0 / max(self.examination(rank), _EPS), 1.0 / self.max_weight, self.max_weight))


@dataclass(frozen=True, slots=True)
class Impressions:
    """Impressions as parallel arrays: pair id (query text, product or group), 0-based rank, clicked."""

    pair: np.ndarray
    rank: np.ndarray
    clicked: np.ndarray

    def __len__(self) -> int:
        return len(self.rank)

    def informative(self) -> "Impressions":
        """Only the pairs seen at two or more distinct ranks, pair ids renumbered from 0."""
        if len(self) == 0:
            return self
        n_ranks, n_pairs = int(self.rank.max()) + 1, int(self.pair.max()) + 1
        cells = np.bincount(self.pair * n_ranks + self.rank, minlength=n_pairs * n_ranks)
        distinct = np.count_nonzero(cells.reshape(n_pairs, n_ranks), axis=1)
        renumber = np.cumsum(distinct >= 2) - 1  # old pair id -> new one (valid where kept)
        keep = distinct[self.pair] >= 2
        pair = renumber[self.pair[keep]]
        return Impressions(pair.astype(np.int64), self.rank[keep], self.clicked[keep])


def impressions_from_records(
    records: Sequence[SearchRecord],
    policy: ImpressionPolicy = "shown",
    fold: int = 4,
    max_rank: int = 20,
    group: Mapping[str, str] | None = None,
) -> Impressions:
    """Every impression of ``records`` (see the module docstring for ``policy`` and ``group``).

    Ranks at or beyond ``max_rank`` are left out: they are rarely clicked and would only add noise.
    """
    pair_ids: dict[tuple[str, str], int] = {}
    pairs: list[int] = []
    ranks: list[int] = []
    clicked: list[bool] = []
    for rec in records:
        clicks = rec.clicked_positions()
        depth = len(rec.shown) if policy == "shown" else rec.viewed_depth(fold)
        for r in range(min(depth, max_rank)):
            item = rec.shown[r] if group is None else group.get(rec.shown[r], rec.shown[r])
            pairs.append(pair_ids.setdefault((rec.norm_text, item), len(pair_ids)))
            ranks.append(r)
            clicked.append(r in clicks)
    return Impressions(
        np.asarray(pairs, dtype=np.int64), np.asarray(ranks, dtype=np.int64), np.asarray(clicked, dtype=bool)
    )


def fit_pbm(
    impressions: Impressions, n_iter: int = 200, tol: float = 1e-4, max_weight: float = 10.0
) -> Propensity:
    """Fit the PBM by EM on the informative impressions; stop after ``n_iter`` rounds or once no
    normalised theta moves more than ``tol``.

    Vectorised: a round is a few ``bincount`` passes (a million impressions: ~50 ms a round).
    """
    imp = impressions.informative()
    if len(imp) == 0:
        return Propensity((), max_weight)
    pair, rank, c = imp.pair, imp.rank, imp.clicked.astype(np.float64)
    per_rank = np.bincount(rank).astype(np.float64)
    per_pair = np.bincount(pair).astype(np.float64)
    theta, gamma = np.full(len(per_rank), 0.5), np.full(len(per_pair), 0.5)
    for _ in range(n_iter):
        new_theta, gamma = _em_round(theta, gamma, pair, rank, c, per_rank, per_pair)
        moved = float(np.max(np.abs(new_theta / new_theta[0] - theta / theta[0])))
        theta = new_theta
        if moved < tol:
            break
    return _propensity(theta / theta[0], per_rank > 0, max_weight)


def _em_round(
    theta: np.ndarray,
    gamma: np.ndarray,
    pair: np.ndarray,
    rank: np.ndarray,
    c: np.ndarray,
    per_rank: np.ndarray,
    per_pair: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One EM round: posteriors of "examined" and "attractive" per impression, then their means.

    A click means examined and attractive. No click: P(examined) = t(1-g)/(1-tg) and
    P(attractive) = (1-t)g/(1-tg).
    """
    t, g = theta[rank], gamma[pair]
    denom = np.maximum(1.0 - t * g, _EPS)
    examined = c + (1.0 - c) * t * (1.0 - g) / denom
    attractive = c + (1.0 - c) * (1.0 - t) * g / denom
    new_theta = np.bincount(rank, weights=examined, minlength=len(theta)) / np.maximum(per_rank, 1.0)
    new_gamma = np.bincount(pair, weights=attractive, minlength=len(gamma)) / np.maximum(per_pair, 1.0)
    return np.clip(new_theta, _EPS, 1.0), np.clip(new_gamma, _EPS, 1.0 - _EPS)


def fit_harvest(impressions: Impressions, max_weight: float = 10.0) -> Propensity:
    """Intervention harvesting: log theta from every rank pair's click-rate ratio, by weighted least
    squares with theta_0 = 1.

    For ranks k < k' and the pairs shown at both, with ``w = n_k n_k' / (n_k + n_k')`` per pair, the
    ratio ``sum w ctr_k' / sum w ctr_k`` estimates theta_k' / theta_k. Each equation is weighted by
    the clicks behind it, so sparse deep rank pairs count little.
    """
    imp = impressions.informative()
    if len(imp) == 0:
        return Propensity((), max_weight)
    n_ranks, n_pairs = int(imp.rank.max()) + 1, int(imp.pair.max()) + 1
    cell = imp.pair * n_ranks + imp.rank
    shown = np.bincount(cell, minlength=n_pairs * n_ranks).astype(np.float64).reshape(n_pairs, n_ranks)
    clicks = np.bincount(cell, weights=imp.clicked, minlength=n_pairs * n_ranks).reshape(n_pairs, n_ranks)
    return _harvest_matrices(shown, clicks, max_weight)


def _harvest_matrices(shown: np.ndarray, clicks: np.ndarray, max_weight: float) -> Propensity:
    """Harvesting on (pair x rank) impression and click counts of the informative pairs."""
    n_ranks = shown.shape[1]
    rows, targets, weights = _ratio_equations(shown, clicks)
    log_theta = np.zeros(n_ranks)
    if rows:
        design = np.asarray(rows)[:, 1:]  # theta_0 is fixed at 1: its column drops out
        sw = np.sqrt(np.asarray(weights))
        solution, *_ = np.linalg.lstsq(design * sw[:, None], np.asarray(targets) * sw, rcond=None)
        log_theta[1:] = solution
    seen = shown.sum(axis=0) > 0
    return _propensity(np.exp(log_theta), seen, max_weight)


def _ratio_equations(
    shown: np.ndarray, clicks: np.ndarray
) -> tuple[list[np.ndarray], list[float], list[float]]:
    """One equation ``log theta_k' - log theta_k = log ratio`` per rank pair with clicks on both sides."""
    n_ranks = shown.shape[1]
    ctr = np.divide(clicks, shown, out=np.zeros_like(clicks), where=shown > 0)
    rows, targets, weights = [], [], []
    for k in range(n_ranks):
        for k2 in range(k + 1, n_ranks):
            both = (shown[:, k] > 0) & (shown[:, k2] > 0)
            nk, nk2 = shown[both, k], shown[both, k2]
            w = nk * nk2 / (nk + nk2)
            a, b = float(w @ ctr[both, k]), float(w @ ctr[both, k2])
            ck, ck2 = float(clicks[both, k].sum()), float(clicks[both, k2].sum())
            if a <= 0 or b <= 0:
                continue
            row = np.zeros(n_ranks)
            row[k], row[k2] = -1.0, 1.0
            rows.append(row)
            targets.append(float(np.log(b / a)))
            weights.append(ck * ck2 / (ck + ck2))  # ~ inverse variance of a log ratio of click counts
    return rows, targets, weights


def _propensity(theta: np.ndarray, seen: np.ndarray, max_weight: float) -> Propensity:
    """Ranks never seen in the data inherit the rank above them (they cannot be estimated)."""
    out = theta.astype(np.float64).copy()
    for r in range(1, len(out)):
        if not seen[r] or not np.isfinite(out[r]) or out[r] <= 0:
            out[r] = out[r - 1]
    out[0] = 1.0
    return Propensity(tuple(float(t) for t in out), max_weight)


def estimate_propensity(
    records: Sequence[SearchRecord],
    method: Method = "harvest",
    policy: ImpressionPolicy = "shown",
    group: Mapping[str, str] | None = None,
    fold: int = 4,
    max_rank: int = 20,
    max_weight: float = 10.0,
) -> Propensity:
    """Examination propensities fitted on ``records``' own clicks.

    ``harvest`` is the default because it stays unbiased with product-level pairs; ``pbm`` is as good
    when ``group`` pools products (e.g. by category path).
    """
    impressions = impressions_from_records(records, policy, fold, max_rank, group)
    if method == "pbm":
        return fit_pbm(impressions, max_weight=max_weight)
    return fit_harvest(impressions, max_weight=max_weight)


@dataclass(frozen=True, slots=True)
class ImpressionCounts:
    """Impressions summed per cell: pair id, rank, times shown there, times clicked there.

    The estimators' sufficient statistics: both depend on the log only through these counts, so
    counts kept per (query, product, rank) and summed over any split of the searches give the
    propensity of all of them (what incremental and sharded aggregation rely on).
    """

    pair: np.ndarray
    rank: np.ndarray
    shown: np.ndarray
    clicks: np.ndarray


def fit_counts(counts: ImpressionCounts, method: Method = "harvest", max_weight: float = 10.0) -> Propensity:
    """:func:`estimate_propensity` from summed impression counts instead of records (same estimate,
    up to the order of floating-point sums)."""
    if len(counts.rank) == 0:
        return Propensity((), max_weight)
    n_ranks, n_pairs = int(counts.rank.max()) + 1, int(counts.pair.max()) + 1
    cell = counts.pair * n_ranks + counts.rank
    shown = np.bincount(cell, weights=counts.shown, minlength=n_pairs * n_ranks).reshape(n_pairs, n_ranks)
    clicks = np.bincount(cell, weights=counts.clicks, minlength=n_pairs * n_ranks).reshape(n_pairs, n_ranks)
    informative = np.count_nonzero(shown, axis=1) >= 2
    shown, clicks = shown[informative], clicks[informative]
    if shown.size == 0:
        return Propensity((), max_weight)
    # ranks beyond the deepest informative impression are not in the records' fit either
    deepest = int(np.flatnonzero(shown.sum(axis=0) > 0).max()) + 1
    shown, clicks = shown[:, :deepest], clicks[:, :deepest]
    if method == "pbm":
        return _pbm_matrices(shown, clicks, max_weight)
    return _harvest_matrices(shown, clicks, max_weight)


def _pbm_matrices(
    shown: np.ndarray, clicks: np.ndarray, max_weight: float, n_iter: int = 200, tol: float = 1e-4
) -> Propensity:
    """:func:`fit_pbm`'s EM with every impression of a (pair, rank) cell handled at once."""
    per_rank, per_pair = shown.sum(axis=0), shown.sum(axis=1)
    theta, gamma = np.full(shown.shape[1], 0.5), np.full(shown.shape[0], 0.5)
    for _ in range(n_iter):
        t, g = theta[None, :], gamma[:, None]
        denom = np.maximum(1.0 - t * g, _EPS)
        unclicked = shown - clicks
        examined = clicks + unclicked * t * (1.0 - g) / denom
        attractive = clicks + unclicked * (1.0 - t) * g / denom
        new_theta = np.clip(examined.sum(axis=0) / np.maximum(per_rank, 1.0), _EPS, 1.0)
        gamma = np.clip(attractive.sum(axis=1) / np.maximum(per_pair, 1.0), _EPS, 1.0 - _EPS)
        moved = float(np.max(np.abs(new_theta / new_theta[0] - theta / theta[0])))
        theta = new_theta
        if moved < tol:
            break
    return _propensity(theta / theta[0], per_rank > 0, max_weight)
