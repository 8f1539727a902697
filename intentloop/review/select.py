"""``intentloop review select``: fill the review queue with the queries whose human label is worth most.

Pool: the weak-label rows of a dimension nobody reviewed, gave gold or queued (``store.review``),
most searched first, at most ``review.pool_max``. The market's champion is loaded as an inference
worker loads it (``intentloop.explanations.load_target``) and scores the whole pool; drift alerts of
the last ``review.drift_lookback_days`` name the labels that just moved. ``trainer.active_learning``
scores every candidate, the top ``4 x budget`` are embedded with the champion's encoder so that
near-duplicates are spread out, and ``review.random_share`` of the batch is drawn at random (an
unbiased slice; strategy ``random`` is all of it). ``review.overlap`` of the items ask for two
reviewers, for the agreement figures.

Each queued item freezes what the reviewer will see: the model's top labels, the suggestion, the
weak distribution, what was clicked and bought, the explanation of the suggestion, and why it was
chosen, so the page needs no model and shows exactly what selection saw.
"""

import functools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from intentloop.runtime import Runtime
from store.drift import drift_reports
from store.review import Candidate, NewItem, enqueue, query_evidence, review_pool
from store.versions import CHAMPION, alias_name, recorded_alias
from trainer.active_learning import (
    Scored,
    Weights,
    char_ngram_vectors,
    random_pick,
    score,
    spread,
)

if TYPE_CHECKING:
    from intentloop.explanations import Loaded

log = logging.getLogger(__name__)

STRATEGIES = ("active", "random")
_CHUNK = 256  # texts per forward pass when scoring the pool
_TOP_MOVES = 5  # largest label moves of a drift alert that count as drifted labels
_EMBED_FACTOR = 4  # candidates embedded per budget slot, for spreading near-duplicates
_TOP_PROBS = 5  # model labels stored with an item


@dataclass(frozen=True)
class SelectionResult:
    """What one selection queued (``batch`` None: nothing was)."""

    batch: int | None
    strategy: str
    dimension: str
    version: str | None
    pool: int
    items: list[NewItem] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The CLI's final JSON line."""
        n = len(self.items)
        by_strategy = {s: sum(i.strategy == s for i in self.items) for s in STRATEGIES}
        abstained = sum(bool(i.weak and i.weak.get("abstained")) for i in self.items)
        return {
            "selected": n,
            "batch": self.batch,
            "strategy": self.strategy,
            "dimension": self.dimension,
            "version": self.version,
            "pool": self.pool,
            "by_strategy": by_strategy,
            "mean_searches": round(sum(i.searches for i in self.items) / n, 3) if n else 0.0,
            "abstained_share": round(abstained / n, 4) if n else 0.0,
            "double_reviewed": sum(i.wanted > 1 for i in self.items),
        }


@dataclass
class _Model:
    """The champion as selection uses it: probabilities, encodings and explanations."""

    loaded: "Loaded"
    labels: list[str]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        target = self.loaded.target
        rows = []
        for i in range(0, len(texts), _CHUNK):
            scores = target.base.score(target.adapter, list(texts[i : i + _CHUNK]))
            probs = scores.probs if target.dimension == "category" else scores.heads[target.dimension]
            rows.append(np.asarray(probs, dtype=np.float64))
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        target = self.loaded.target
        return target.base.embed(target.adapter, list(texts), batch_size=_CHUNK)


def select(
    rt: Runtime, *, budget: int, strategy: str = "active", dimension: str | None = None, seed: int = 0
) -> SelectionResult:
    """Choose up to ``budget`` queries to review and queue them as one batch."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    cfg = rt.settings.review
    dimension = dimension or cfg.dimension
    db = rt.ready_db()
    with db.session() as session:
        pool = review_pool(session, dimension, cfg.pool_max)
        drifted = _drift_labels(session, cfg.drift_lookback_days)
    # the store orders by searches; ties by text here, so a seed always draws the same queries
    pool = sorted(pool, key=lambda c: (-c.searches, c.query))
    model = _load_champion(rt, dimension)
    version = model.loaded.version if model else None
    if not pool or budget <= 0:
        return SelectionResult(None, strategy, dimension, version, len(pool))
    chosen = _choose(pool, model, drifted, budget=budget, strategy=strategy, seed=seed, rt=rt)
    items = _items(rt, pool, chosen, model, seed=seed)
    with db.session() as session:
        batch = enqueue(session, dimension, items)
    return SelectionResult(batch, strategy, dimension, version, len(pool), items)


@dataclass(frozen=True)
class _Choice:
    scored: Scored
    strategy: str
    probs: np.ndarray | None


def _choose(
    pool: list[Candidate],
    model: _Model | None,
    drifted: set[str],
    *,
    budget: int,
    strategy: str,
    seed: int,
    rt: Runtime,
) -> list[_Choice]:
    """The batch in review order: active picks by score with the random ones spread among them."""
    cfg = rt.settings.review
    budget = min(budget, len(pool))
    n_random = budget if strategy == "random" else round(budget * cfg.random_share)
    rate: Callable[[list[Candidate], np.ndarray | None], list[Scored]] = functools.partial(
        score,
        labels=model.labels if model else [],
        drift_labels=drifted,
        weights=Weights(**cfg.weights.model_dump()),
        busy_min_searches=cfg.busy_min_searches,
        uncertainty=cfg.uncertainty,
    )
    active: list[_Choice] = []
    taken: set[int] = set()
    if n_random < budget:
        probs = model.probabilities([c.query for c in pool]) if model else None
        ranked = rate(pool, probs)
        top = ranked[: _EMBED_FACTOR * budget]
        vectors = _vectors(pool, [s.index for s in top], model)
        picked = spread(ranked, vectors, budget - n_random, cfg.max_similarity)
        picked += _fill(ranked, picked, vectors, budget - n_random - len(picked))
        active = [_Choice(s, "active", None if probs is None else probs[s.index]) for s in picked]
        taken = {s.index for s in picked}
    rest = [i for i in range(len(pool)) if i not in taken]
    drawn = [rest[k] for k in random_pick(len(rest), n_random, seed)]
    drawn_pool = [pool[i] for i in drawn]
    drawn_probs = model.probabilities([c.query for c in drawn_pool]) if model and drawn else None
    by_position = {s.index: s for s in rate(drawn_pool, drawn_probs)}
    randoms = [
        _Choice(
            Scored(i, by_position[k].score, by_position[k].components, by_position[k].why),
            "random",
            None if drawn_probs is None else drawn_probs[k],
        )
        for k, i in enumerate(drawn)
    ]
    return _interleave(active, randoms)


def _fill(
    ranked: list[Scored], picked: list[Scored], vectors: np.ndarray | None, missing: int
) -> list[Scored]:
    """The best near-duplicates left out, when too few different queries remain for the budget:
    the operator asked for that many reviews, and a near-duplicate is still an unreviewed query."""
    if missing <= 0:
        return []
    taken = {s.index for s in picked}
    rest = [s for s in ranked if s.index not in taken][:missing]
    out = []
    for s in rest:
        nearest = 0.0
        if vectors is not None and picked:
            nearest = float(np.max(vectors[[p.index for p in picked]] @ vectors[s.index]))
        why = [*s.why, f"near-duplicate of a chosen query (cosine {nearest:.2f}): the pool ran out of others"]
        out.append(replace(s, components={**s.components, "nearest_similarity": round(nearest, 6)}, why=why))
    return out


def _vectors(pool: list[Candidate], indexes: list[int], model: _Model | None) -> np.ndarray | None:
    """Unit encodings of the ``indexes`` candidates, zero rows elsewhere (never compared)."""
    if not indexes:
        return None
    texts = [pool[i].query for i in indexes]
    rows = model.embed(texts) if model else char_ngram_vectors(texts)
    out = np.zeros((len(pool), rows.shape[1]), dtype=np.float32)
    out[indexes] = rows
    return out


def _interleave(active: list[_Choice], randoms: list[_Choice]) -> list[_Choice]:
    """Random picks at even intervals among the active ones: a reviewer who stops halfway still
    labelled a share of the unbiased slice."""
    if not active or not randoms:
        return active + randoms
    total = len(active) + len(randoms)
    slots = {round((k + 1) * total / (len(randoms) + 1)) - 1 for k in range(len(randoms))}
    if len(slots) < len(randoms):  # rounding collided: fall back to the end
        return active + randoms
    out: list[_Choice] = []
    a, r = iter(active), iter(randoms)
    for position in range(total):
        out.append(next(r) if position in slots else next(a))
    return out


def _items(
    rt: Runtime, pool: list[Candidate], chosen: list[_Choice], model: _Model | None, *, seed: int
) -> list[NewItem]:
    cfg = rt.settings.review
    queries = [pool[c.scored.index].query for c in chosen]
    with rt.ready_db().session() as session:
        evidence = query_evidence(session, queries)
    n_double = round(len(chosen) * cfg.overlap)
    doubled = set(random.Random(seed + 1).sample(range(len(chosen)), n_double))
    items = []
    for rank, choice in enumerate(chosen):
        c = pool[choice.scored.index]
        top = _top_probabilities(model.labels, choice.probs) if model and choice.probs is not None else []
        suggestion = top[0][0] if top else c.weak_label
        items.append(
            NewItem(
                query=c.query,
                strategy=choice.strategy,
                rank=rank,
                score=round(choice.scored.score, 6),
                reasons=_reasons(choice, seed),
                version=model.loaded.version if model else None,
                suggestion=suggestion,
                probabilities=top,
                weak=_weak(c),
                evidence=evidence.get(c.query, []),
                explanation=_explanation(rt, model, c.query, suggestion) if top else None,
                searches=c.searches,
                wanted=2 if rank in doubled else 1,
            )
        )
    return items


def _reasons(choice: _Choice, seed: int) -> dict[str, Any]:
    s = choice.scored
    components = {k: v for k, v in s.components.items() if k != "nearest_similarity"}
    why = list(s.why)
    if choice.strategy == "random":
        why.insert(0, f"drawn at random (seed {seed}): the unbiased slice to compare against")
    return {
        "strategy": choice.strategy,
        "score": round(s.score, 6),
        "components": components,
        "why": why,
        "nearest_similarity": s.components.get("nearest_similarity"),
    }


def _top_probabilities(labels: list[str], probs: np.ndarray) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:_TOP_PROBS]
    return [(labels[int(k)], round(float(probs[k]), 6)) for k in order]


def _weak(c: Candidate) -> dict[str, Any] | None:
    if c.weak_label is None and not c.distribution and c.reason is None:
        return None
    return {
        "label": c.weak_label,
        "confidence": c.confidence,
        "distribution": dict(c.distribution),
        "abstained": c.abstained,
        "reason": c.reason,
        "evidence": c.evidence,
    }


def _explanation(rt: Runtime, model: _Model | None, query: str, label: str | None) -> dict[str, Any] | None:
    """The suggestion's occlusion explanation, or None (off, too long, or the explainer refused)."""
    from serving.exceptions import ExplainError
    from serving.explain.words import split_query

    cfg = rt.settings.serve.explain
    if model is None or label is None or not rt.settings.review.explain:
        return None
    if not 0 < len(split_query(query).words) <= cfg.max_words:
        return None
    from intentloop.explanations import explain_query

    try:
        e = explain_query(
            model.loaded, query, method="occlusion", label=label, budget=cfg.budget, max_words=cfg.max_words
        )
    except ExplainError as exc:
        log.info("no explanation for %r: %s", query, exc)
        return None
    return {
        "method": e.method,
        "label": e.label,
        "words": [[w.word, round(float(w.attribution), 6)] for w in e.words],
    }


def _load_champion(rt: Runtime, dimension: str) -> _Model | None:
    """The default market's champion loaded as a worker loads it; None if there is none yet or it
    does not answer ``dimension`` (selection then leans on the weak labels alone)."""
    from intentloop.explanations import load_target
    from serving.exceptions import ExplainError

    with rt.ready_db().session() as session:
        if recorded_alias(session, alias_name(CHAMPION, None)) is None:
            return None
    loaded = load_target(rt, None, None, dimension)
    try:
        labels = list(loaded.target.labels)
    except ExplainError as exc:
        log.warning("champion %s: %s; selecting on weak labels alone", loaded.version, exc)
        return None
    return _Model(loaded, labels)


def _drift_labels(session: Any, lookback_days: float) -> set[str]:
    """Labels of recent drift alerts: new ones and each alert's largest moves."""
    since = datetime.now(UTC) - timedelta(days=lookback_days)
    labels: set[str] = set()
    for report in drift_reports(session, since=since):
        if not report.alert:
            continue
        labels.update(report.new_labels or [])
        moves = sorted(
            (report.details or {}).get("moves", []), key=lambda m: -abs(float(m.get("delta", 0.0)))
        )
        labels.update(str(m["label"]) for m in moves[:_TOP_MOVES] if "label" in m)
    return labels
