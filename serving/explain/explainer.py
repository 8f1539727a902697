"""One explanation: which words of a query pushed a version toward a label, and by how much.

:func:`explain` is what ``POST /v1/explain``, ``intentloop explain`` and the benchmark all call, so
the three give the same answer for the same version. It picks the label (the top one unless asked),
runs the method (:mod:`serving.explain.methods`), and for a fused version measures how much each
member moved the decision: the fused probability of the label minus what the fusion gives when that
member is replaced by a uniform answer (the memory: when it abstains, as on a query it has no
evidence for).
"""

import time
from dataclasses import dataclass, field

import numpy as np

from serving.explain.methods import attribute, explains_members, prefetch
from serving.explain.target import Target
from serving.explain.words import Query
from store.dimensions import CATEGORY


@dataclass(frozen=True)
class WordAttribution:
    word: str  # as the shopper typed it
    start: int  # offsets in the raw query
    end: int
    attribution: float  # push toward the label (probability units; negative: away from it)


@dataclass(frozen=True)
class MemberEffect:
    """How much one member of a fused version moved the explained label's probability."""

    name: str
    kind: str
    weight: float
    probability: float  # the member's own probability of the label
    moved: float  # fused probability minus the fused probability without this member


@dataclass(frozen=True)
class Explanation:
    query: str
    version: str
    dimension: str
    label: str
    probability: float  # the label's probability for the whole query
    empty_probability: float  # ... for the empty query: what the words add up from
    method: str
    words: list[WordAttribution]
    members: list[MemberEffect] | None = None  # a fused version's category only
    model_calls: int = 0  # texts scored (integration steps for ig)
    elapsed_ms: float = 0.0
    top_labels: list[tuple[str, float]] = field(default_factory=list)


def explain(
    query: Query,
    target: Target,
    *,
    method: str,
    label: str | None = None,
    budget: int = 64,
    top_k: int = 3,
    seed: int = 0,
) -> Explanation:
    """Explain ``query`` for ``label`` (``None``: the version's top label) with ``method``;
    ``target`` names the version and dimension (its own label is ignored)."""
    started = time.perf_counter()
    probs = target.all_probabilities([query.text, "", *prefetch(method, query)])
    labels = target.labels
    order = np.argsort(-probs[0])
    chosen = target.for_label(label if label is not None else labels[int(order[0])])
    values = attribute(method, query, chosen, budget=budget, seed=seed)
    members = _member_effects(chosen, query.text) if explains_members(method) else None
    return Explanation(
        query=query.raw,
        version=chosen.adapter.version,
        dimension=chosen.dimension,
        label=str(chosen.label),
        probability=float(probs[0][chosen.index]),
        empty_probability=float(probs[1][chosen.index]),
        method=method,
        words=[
            WordAttribution(w.text, w.start, w.end, float(v))
            for w, v in zip(query.words, values, strict=True)
        ],
        members=members,
        model_calls=target.calls + chosen.calls,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        top_labels=[(labels[int(i)], float(probs[0][int(i)])) for i in order[:top_k]],
    )


def _member_effects(target: Target, text: str) -> list[MemberEffect] | None:
    """Each fused member's pull on the label (None for a plain version or another dimension)."""
    fused = target.adapter.fused
    if fused is None or target.dimension != CATEGORY:
        return None
    from trainer.fusion import RowFeatures

    scores = target.scores([text])
    features = RowFeatures.of_queries([text], fused.memory)
    silent = RowFeatures(features.searches, np.zeros_like(features.memory_evidence), features.query_words)
    full = float(scores.probs[0][target.index])
    out = []
    for name, probs in scores.members.items():
        members = dict(scores.members)
        members[name] = np.full_like(probs, 1.0 / probs.shape[1])
        feats = silent if name == fused.fusion.memory_member else features
        without = float(fused.fusion.predict_proba(members, feats)[0][target.index])
        own = float(probs[0][target.index])
        out.append(MemberEffect(name, fused.kinds[name], float(fused.weights[name]), own, full - without))
    return out
