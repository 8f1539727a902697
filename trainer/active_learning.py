"""Which queries a person should label next: active-learning scores, diversity and a random draw.

Gold labels from people are expensive, so the few a review budget buys go where they change the
model most. A candidate query (``store.review.Candidate``: one weak-label row nobody reviewed) is
worth reviewing when

- the champion is unsure (a small margin between its two top labels, or a high entropy),
- the clicks and the model disagree (Jensen-Shannon divergence of the weak distribution and the
  model's),
- it is searched often yet the labeler abstained on it (no gold, no weak label: the model is on its
  own there), or
- its label is one drift just surfaced (new or moving labels: the reference is stale there),

and each of these is weighed by ``log1p(searches)``: the head is preferred without swamping the tail.
Near-duplicates (``spread``) would spend the budget on one question several times, so only the best
of a cluster of near-identical encodings is kept. ``random_pick`` is the unbiased comparison (and
the unbiased slice of every active batch: actively chosen gold is hard gold).

Pure numpy, no I/O: the CLI (``intentloop.review.select``) and ``bench review`` share it.
"""

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from store.review import Candidate

_EPS = 1e-12
_HASH_DIMS = 1024  # buckets of the character n-gram vectors used when there is no champion


@dataclass(frozen=True)
class Weights:
    """How much each signal adds to a candidate's score (before the traffic factor)."""

    uncertainty: float = 1.0
    disagreement: float = 1.0
    abstained: float = 0.5
    drift: float = 0.5


@dataclass(frozen=True)
class Scored:
    """One candidate's score: ``index`` into the candidate list, the parts and why in words."""

    index: int
    score: float
    components: dict[str, float]
    why: list[str]


def margin_uncertainty(p: np.ndarray) -> float:
    """``1 - (p1 - p2)``: 1 when the two top labels tie, 0 when the model is certain."""
    if p.size < 2:
        return 0.0
    top = np.sort(p)[::-1]
    return float(np.clip(1.0 - (top[0] - top[1]), 0.0, 1.0))


def entropy_uncertainty(p: np.ndarray) -> float:
    """Entropy over its maximum ``log K``: 1 for the uniform distribution, 0 for a certain one."""
    if p.size < 2:
        return 0.0
    q = np.clip(p, 0.0, None)
    q = q / max(float(q.sum()), _EPS)
    h = -float(np.sum(q[q > 0] * np.log(q[q > 0])))
    return float(np.clip(h / math.log(p.size), 0.0, 1.0))


def js_divergence(a: dict[str, float], b: dict[str, float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two label distributions over their union."""
    labels = sorted(set(a) | set(b))
    if not labels:
        return 0.0
    p = np.array([max(a.get(x, 0.0), 0.0) for x in labels], dtype=np.float64)
    q = np.array([max(b.get(x, 0.0), 0.0) for x in labels], dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(np.clip((kl(p) + kl(q)) / 2, 0.0, 1.0))


def score(
    candidates: "Sequence[Candidate]",
    probs: np.ndarray | None,
    labels: Sequence[str],
    *,
    drift_labels: set[str],
    weights: Weights = Weights(),
    busy_min_searches: int = 3,
    uncertainty: str = "margin",
) -> list[Scored]:
    """Every candidate scored, best first (ties by position, so the order is deterministic).

    ``probs`` rows are the champion's probabilities over ``labels`` for each candidate; ``None``
    (no champion yet) scores uncertainty as ``1 - weak confidence`` and disagreement as 0.
    """
    if uncertainty not in ("margin", "entropy"):
        raise ValueError(f"uncertainty must be 'margin' or 'entropy', not {uncertainty!r}")
    if probs is not None and probs.shape != (len(candidates), len(labels)):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(candidates)} x {len(labels)}")
    out = [
        _score_one(
            i,
            c,
            None if probs is None else probs[i],
            labels,
            drift_labels,
            weights,
            busy_min_searches,
            uncertainty,
        )
        for i, c in enumerate(candidates)
    ]
    return sorted(out, key=lambda s: (-s.score, s.index))


def _score_one(
    index: int,
    c: "Candidate",
    p: np.ndarray | None,
    labels: Sequence[str],
    drift_labels: set[str],
    w: Weights,
    busy_min: int,
    uncertainty: str,
) -> Scored:
    why: list[str] = []
    if p is None:
        u = 1.0 - (c.confidence if c.confidence is not None and not c.abstained else 0.0)
        d = 0.0
        top = None
        if u >= 0.5:
            why.append(f"no champion yet; weak label unsure: confidence {1 - u:.2f}")
    else:
        p = np.asarray(p, dtype=np.float64)
        u = margin_uncertainty(p) if uncertainty == "margin" else entropy_uncertainty(p)
        order = np.argsort(-p, kind="stable")
        top = labels[int(order[0])]
        if u >= 0.5:
            if uncertainty == "margin" and p.size >= 2:
                second = labels[int(order[1])]
                why.append(
                    f"champion unsure: {top} {p[order[0]]:.2f} vs {second} {p[order[1]]:.2f} "
                    f"(margin {1 - u:.2f})"
                )
            else:
                why.append(f"champion unsure: normalised entropy {u:.2f}")
        model = {labels[k]: float(p[k]) for k in range(len(labels))}
        d = js_divergence(c.distribution, model) if c.distribution else 0.0
        if d >= 0.3:
            why.append(f"clicks disagree with the model: weak {c.weak_label or 'none'} vs {top} (JS {d:.2f})")
    a = 1.0 if c.abstained and c.searches >= busy_min else 0.0
    if a:
        why.append(f"labeler abstained ({c.reason or 'no reason'}) on a query searched {c.searches} times")
    drifted = sorted({x for x in (top, c.weak_label) if x is not None and x in drift_labels})
    g = 1.0 if drifted else 0.0
    if drifted:
        why.append("drift just surfaced " + ", ".join(repr(x) for x in drifted))
    traffic = math.log1p(max(c.searches, 0))
    total = traffic * (w.uncertainty * u + w.disagreement * d + w.abstained * a + w.drift * g)
    why.append(f"searched {c.searches} times")
    components = {
        "uncertainty": round(u, 6),
        "disagreement": round(d, 6),
        "abstained": a,
        "drift": g,
        "searches": float(c.searches),
    }
    return Scored(index, float(total), components, why)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def spread(
    scored: Sequence[Scored], vectors: np.ndarray | None, budget: int, max_similarity: float = 0.9
) -> list[Scored]:
    """The best ``budget`` of ``scored`` (in its order) with near-duplicates left out.

    Greedy: an item whose cosine similarity to an already chosen one is ``>= max_similarity`` is
    skipped. ``vectors`` rows align with candidate indexes; a zero row is an item nobody embedded
    (accepted unchecked). Chosen items carry ``nearest_similarity`` (the highest similarity to an
    earlier choice) in their components. ``vectors`` ``None``: the first ``budget``, unchanged.
    """
    if budget <= 0:
        return []
    if vectors is None:
        return list(scored[:budget])
    unit = _normalised(vectors)
    chosen: list[Scored] = []
    kept: list[np.ndarray] = []
    for s in scored:
        v = unit[s.index]
        embedded = bool(np.any(v))
        nearest = max((float(v @ k) for k in kept), default=0.0) if embedded else None
        if nearest is not None and nearest >= max_similarity:
            continue
        components = dict(s.components)
        if nearest is not None:
            components["nearest_similarity"] = round(nearest, 6)
            kept.append(v)
        chosen.append(replace(s, components=components))
        if len(chosen) == budget:
            break
    return chosen


def random_pick(n_candidates: int, budget: int, seed: int) -> list[int]:
    """``budget`` distinct candidate indexes drawn at random: the same for the same seed and size."""
    return random.Random(seed).sample(range(n_candidates), min(max(budget, 0), n_candidates))


def char_ngram_vectors(texts: Sequence[str], n: int = 3, dims: int = _HASH_DIMS) -> np.ndarray:
    """Hashed character ``n``-gram counts, L2-normalised: near-duplicate detection without a model
    (no champion yet). Stable across processes (blake2b, not ``hash``)."""
    out = np.zeros((len(texts), dims), dtype=np.float32)
    for row, text in enumerate(texts):
        padded = f" {text.lower()} "
        for k in range(max(len(padded) - n + 1, 1)):
            gram = padded[k : k + n].encode("utf-8", "surrogatepass")
            bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "big") % dims
            out[row, bucket] += 1.0
    return _normalised(out).astype(np.float32)
