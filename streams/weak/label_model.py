"""A learned label model (Dawid & Skene, 1979) as the challenger to the weighted majority vote.

Majority vote trusts each labeling function by its hand-set weight. Dawid-Skene instead learns, by
EM and without gold labels, how each function's answer depends on the true label (a confusion
matrix per function), and combines answers by those learned reliabilities. It is only worth using
where that beats the majority vote on gold labels, so :func:`compare` measures both and says which
to use; the majority vote stays the default.

Each function's answer for a query (``aggregate.lf_outputs``) is one categorical observation out of
``2K``: "for label j" (index j) or "against label j" (index K + j); no answer is no observation.
"against" answers are thereby learned like any other (the model finds out that "against j" makes
j unlikely) rather than hand-interpreted.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.weak.policies import LabelDistribution, LabelPolicy, Threshold
from streams.weak.vote_table import LFOutputs, VoteTable

Posteriors = dict[str, dict[str, float]]  # query -> label -> P(label | answers)


@dataclass(frozen=True)
class DawidSkene:
    """A fitted model: class priors and per-function confusion matrices ``P(answer | true label)``."""

    labels: tuple[str, ...]
    lfs: tuple[str, ...]
    priors: np.ndarray  # (K,)
    confusion: np.ndarray  # (n_lfs, K, 2K)
    n_iter: int  # EM rounds run

    def predict(self, outputs: LFOutputs) -> Posteriors:
        """Posterior over labels for every query with at least one answer from a known function."""
        if not self.labels:
            return {}
        queries, obs = _observations(outputs, self.labels, self.lfs)
        post = _e_step(np.log(self.priors), np.log(self.confusion), obs)
        answered: np.ndarray = np.any(obs >= 0, axis=1)
        return {
            q: dict(zip(self.labels, map(float, post[i]), strict=True))
            for i, q in enumerate(queries)
            if answered[i]
        }


def _observations(
    outputs: LFOutputs, labels: Sequence[str], lfs: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Queries and an (n_queries, n_lfs) matrix of answer indices in ``[0, 2K)``, -1 for none."""
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    column = {lf: j for j, lf in enumerate(lfs)}
    queries = sorted(outputs)
    obs = np.full((len(queries), len(lfs)), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        for lf, (label, sign) in outputs[q].items():
            if lf in column and label in index:
                obs[i, column[lf]] = index[label] if sign > 0 else k + index[label]
    return queries, obs


def _e_step(log_priors: np.ndarray, log_confusion: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """P(true label | answers) per query, computed in log space."""
    logp = np.tile(log_priors, (obs.shape[0], 1))
    for j in range(obs.shape[1]):
        seen = obs[:, j] >= 0
        logp[seen] += log_confusion[j][:, obs[seen, j]].T
    logp -= logp.max(axis=1, keepdims=True)
    post = np.exp(logp)
    return post / post.sum(axis=1, keepdims=True)


def _m_step(post: np.ndarray, obs: np.ndarray, n_out: int, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Priors and confusion matrices from soft labels, with ``smoothing`` pseudo-counts per cell."""
    k = post.shape[1]
    priors = (post.sum(axis=0) + smoothing) / (post.shape[0] + k * smoothing)
    confusion = np.full((obs.shape[1], k, n_out), smoothing)
    for j in range(obs.shape[1]):
        seen = obs[:, j] >= 0
        counts = np.zeros((n_out, k))
        np.add.at(counts, obs[seen, j], post[seen])
        confusion[j] += counts.T
    return priors, confusion / confusion.sum(axis=2, keepdims=True)


def _initial_posteriors(obs: np.ndarray, k: int) -> np.ndarray:
    """Start from the unweighted vote of the "for" answers (uniform where there are none): EM then
    keeps each label's meaning instead of drifting to a permutation of it."""
    post = np.full((obs.shape[0], k), 1e-3)
    for j in range(obs.shape[1]):
        rows = np.flatnonzero((obs[:, j] >= 0) & (obs[:, j] < k))
        post[rows, obs[rows, j]] += 1.0
    return post / post.sum(axis=1, keepdims=True)


def fit(
    outputs: LFOutputs,
    labels: Sequence[str] | None = None,
    n_iter: int = 100,
    tol: float = 1e-5,
    smoothing: float = 0.1,
) -> DawidSkene:
    """Fit Dawid-Skene by EM on every query's answers; stop after ``n_iter`` rounds or when no
    posterior moves more than ``tol``."""
    label_set = (
        tuple(labels)
        if labels is not None
        else tuple(sorted({a[0] for x in outputs.values() for a in x.values()}))
    )
    lfs = tuple(sorted({lf for answers in outputs.values() for lf in answers}))
    _, obs = _observations(outputs, label_set, lfs)
    obs = obs[(obs >= 0).any(axis=1)]
    k = len(label_set)
    if k == 0 or len(obs) == 0:  # nothing to learn from: a model that predicts nothing
        return DawidSkene(label_set, lfs, np.full(k, 1.0 / max(k, 1)), np.ones((len(lfs), k, 2 * k)), 0)
    post = _initial_posteriors(obs, k)
    priors, confusion = _m_step(post, obs, 2 * k, smoothing)
    rounds = 0
    while rounds < n_iter:
        rounds += 1
        new_post = _e_step(np.log(priors), np.log(confusion), obs)
        priors, confusion = _m_step(new_post, obs, 2 * k, smoothing)
        moved = float(np.abs(new_post - post).max()) if len(post) else 0.0
        post = new_post
        if moved < tol:
            break
    return DawidSkene(label_set, lfs, priors, confusion, rounds)


def distributions(
    posteriors: Posteriors,
    table: VoteTable,
    min_evidence: float = 2.0,
    min_confidence: float = 0.6,
    min_share: float = 1e-3,
    policy: LabelPolicy | None = None,
) -> dict[str, LabelDistribution]:
    """The label model's posteriors as label distributions, decided by the same ``policy`` as the
    majority vote (default: the threshold policy with ``min_evidence`` / ``min_confidence``): the
    model's posterior takes the place of the vote shares, the evidence stays the policy's own, so
    the two are comparable and training reads either the same way.

    Labels with a posterior under ``min_share`` are left out: a model over K labels gives every
    label some mass, and a dashboard needs the ones that matter.
    """
    chosen: LabelPolicy = policy if policy is not None else Threshold(min_evidence, min_confidence)
    out = {}
    for q, post in posteriors.items():
        kept = {label: p for label, p in post.items() if p >= min_share}
        _, evidence = chosen.evidence(table, q)
        out[q] = chosen.decide(q, kept, evidence, table.searches.get(q, 0))
    return out


def _accuracy(predicted: Mapping[str, str], gold: Mapping[str, str], on: set[str]) -> float | None:
    return sum(predicted[q] == gold[q] for q in on) / len(on) if on else None


def compare(
    gold: Mapping[str, str],
    majority: Mapping[str, LabelDistribution],
    model_posteriors: Posteriors,
    margin: float = 0.01,
    min_confidence: float = 0.0,
) -> dict[str, Any]:
    """Majority vote vs the label model on gold-labelled queries, and which one to use.

    Each side is scored on the gold queries it labels (majority: not abstained; model: top posterior
    >= ``min_confidence``), and both on the gold queries both label, so that a model that labels
    more, or fewer, queries is not credited for a different mix. The model is used only when it is
    at least ``margin`` more accurate on the common queries and not less accurate on its own ones.
    """
    maj = {q: d.label for q, d in majority.items() if not d.abstained and d.label is not None}
    model = {
        q: max(p, key=lambda label: (p[label], label))
        for q, p in model_posteriors.items()
        if p and max(p.values()) >= min_confidence
    }
    gold_maj, gold_model = set(maj) & set(gold), set(model) & set(gold)
    common = gold_maj & gold_model
    side = {
        name: {"n": len(on), "coverage": len(on) / max(len(gold), 1), "accuracy": _accuracy(pred, gold, on)}
        for name, pred, on in (("majority", maj, gold_maj), ("dawid_skene", model, gold_model))
    }
    common_acc = {
        name: _accuracy(pred, gold, common) for name, pred in (("majority", maj), ("dawid_skene", model))
    }
    better = (
        common_acc["dawid_skene"] is not None
        and common_acc["majority"] is not None
        and common_acc["dawid_skene"] >= common_acc["majority"] + margin
        and (side["dawid_skene"]["accuracy"] or 0.0) >= (side["majority"]["accuracy"] or 0.0)
    )
    return {
        "n_gold": len(gold),
        **side,
        "common": {"n": len(common), **{f"{k}_accuracy": v for k, v in common_acc.items()}},
        "margin": margin,
        "use": "dawid_skene" if better else "majority",
    }
