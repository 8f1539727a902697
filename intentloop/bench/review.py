"""`intentloop bench review`: does choosing what people review pay, against choosing at random?

Per seed, on the long-tail simulator (as ``bench train`` simulates it, :mod:`intentloop.bench.train_weak`):
the searches before the snapshot (``cut``) are weak-labelled by the real aggregation
(``streams.labels_job.label_records``); the **pool** is every distinct query searched before the
cut outside the test bucket, abstained ones (no evidence, contradictory clicks ...) included, as
``store.review.Candidate`` rows, what ``review_pool`` reads from ``label_distributions``. The
model **M0** is the learner trained on the weak rows alone (budget 0, shared by both strategies);
its probabilities on the pool feed the product's own selection (``trainer.active_learning.score``
then ``spread`` with the configured ``INTENTLOOP_REVIEW__*`` weights, no drift labels: the
simulator has no drift report) and, for comparison, ``random_pick`` with the seed. Each strategy
ranks once, for the largest budget; smaller budgets are its prefixes (a reviewer works down the
queue).

The **simulated reviewer** answers with the shoppers' majority intent of the query's searches
before the cut, wrong with probability ``reviewer_error`` (to another label). The coin and the
wrong label are drawn from a generator seeded by ``(seed, query)``: a query reviewed under both
strategies gets the same answer, so the strategies differ only in what they choose.

Training rows for a budget are the weak rows with every reviewed query's answer overriding its
weak label (weight ``review.gold_weight``, ``gold``), plus a row for each reviewed query the
labeler abstained on: what ``trainer.snapshot`` makes of review gold. Each budget retrains from
scratch and is scored on the held-out queries (``trainer.evaluation.evaluate``: macro-F1 overall
and on the tail slice). The target: at 200 reviews the active strategy's tail gain over M0 is
positive and at least twice random's (or any gain, when random's is not positive), gains
averaged over the seeds.

Learners: ``tfidf`` (default) is the gate's own baseline (``trainer.baselines.train_tfidf``),
seconds per fit; ``lora`` is the product's trainer (``trainer.finetune.fit``) with few epochs and a
lower ``min_steps``, ~1.5 min per fit on two CPU cores, ``1 + 2 x (budgets - 1)`` fits a seed.
Near-duplicates are spread with TF-IDF character n-gram vectors (L2-normalised) for both.
"""

import hashlib
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

import numpy as np

from intentloop.bench.train_common import Echo, TrainBenchOptions, load_trainer
from intentloop.bench.train_weak import Traffic, majorities, simulate_traffic, weak_rows
from intentloop.settings import Settings
from store.review import Candidate
from streams.labels_job import label_records
from streams.weak.policies import LabelDistribution
from streams.weak.settings import LabelSettings
from trainer.dataset import Example
from trainer.settings import TrainSettings

if TYPE_CHECKING:
    from trainer.active_learning import Scored
    from trainer.evaluation import Predictor

STRATEGIES = ("active", "random")
TARGET_BUDGET = 200  # the target: the tail gain at 200 reviews
LORA_MIN_STEPS = 150  # --learner lora: enough steps to learn, few enough for nine fits a seed
SPREAD_POOL = 4  # times the largest budget: the top-scored candidates embedded for the diversity pass
VECTOR_FEATURES = 4096  # character n-grams kept for those vectors (dense, float32)


@dataclass(frozen=True)
class ReviewBenchOptions:
    queries: int = 20_000
    seeds: tuple[int, ...] = (17, 18, 19)
    budgets: tuple[int, ...] = (0, 50, 100, 200, 400)
    reviewer_error: float = 0.05
    learner: str = "tfidf"  # or "lora"
    epochs: int = 2  # lora only
    test_fraction: float = 0.2
    cut: float = 0.8
    progress: bool = True


@dataclass(frozen=True)
class _Pool:
    """One seed's reviewable queries, in one order: candidates, truth and the reviewer's answers."""

    candidates: list[Candidate]
    answers: list[str]  # the simulated reviewer's label per candidate
    truth: list[str]  # the majority intent per candidate (what a perfect reviewer would say)

    @property
    def queries(self) -> list[str]:
        return [c.query for c in self.candidates]


def reviewer_answer(seed: int, query: str, truth: str, labels: list[str], error: float) -> str:
    """The simulated reviewer's label for ``query``: ``truth``, or with probability ``error`` another
    label. Drawn from a generator seeded by ``(seed, query)`` alone, so every strategy that asks
    about the same query in the same run gets the same answer."""
    digest = hashlib.blake2b(f"{seed}:{query}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    wrong = [label for label in labels if label != truth]
    if rng.random() < error and wrong:
        return rng.choice(wrong)
    return truth


def run_review_bench(settings: Settings, opts: ReviewBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Every seed's learning curves for both strategies, their means and the target; the summary
    (budget 0, the weak labels alone, is always measured: gains are counted from it)."""
    _check(opts)
    opts = replace(opts, budgets=tuple(sorted(set(opts.budgets) | {0})))
    load_trainer()
    started = time.monotonic()
    train = _train_settings(settings, opts)
    per_seed = {}
    for i, seed in enumerate(opts.seeds, start=1):
        echo(f"[seed {seed}, {i}/{len(opts.seeds)}]")
        per_seed[seed] = _one_seed(settings, opts, train, seed, echo)
    return _summary(opts, per_seed, started)


def _check(opts: ReviewBenchOptions) -> None:
    if not opts.seeds:
        raise ValueError("need at least one seed")
    if not opts.budgets or min(opts.budgets) < 0:
        raise ValueError("need budgets >= 0")
    if not 0 <= opts.reviewer_error < 1:
        raise ValueError("need 0 <= reviewer error < 1")
    if opts.learner not in ("tfidf", "lora"):
        raise ValueError(f"unknown learner {opts.learner!r} (tfidf or lora)")


def _train_settings(settings: Settings, opts: ReviewBenchOptions) -> TrainSettings:
    if opts.learner == "lora":
        return settings.train.model_copy(update={"epochs": opts.epochs, "min_steps": LORA_MIN_STEPS})
    return settings.train


def _one_seed(
    settings: Settings, opts: ReviewBenchOptions, train: TrainSettings, seed: int, echo: Echo
) -> dict[str, Any]:
    """Simulate, label, train M0, rank the pool both ways and retrain per budget and strategy."""
    seed_started = time.monotonic()
    sim_opts = TrainBenchOptions(
        queries=opts.queries,
        seed=seed,
        review=0,
        test_fraction=opts.test_fraction,
        cut=opts.cut,
        progress=opts.progress,
    )
    traffic = simulate_traffic(sim_opts, settings.taxonomy, train, echo)
    dists, _ = label_records(
        traffic.before, traffic.catalog, {}, LabelSettings.model_validate(settings.labels)
    )
    weak = [e for e in weak_rows(dists, train, traffic.test_bucket) if e.label in traffic.labels]
    pool = _pool(traffic, dists, seed, opts.reviewer_error)
    echo(
        f"      {len(weak)} weak rows, pool of {len(pool.candidates)} queries "
        f"({sum(c.abstained for c in pool.candidates)} abstained), {len(traffic.test)} held out"
    )
    fits: list[float] = []
    m0 = _fit(weak, traffic, train, opts, settings, fits)
    base = _scores(m0, traffic)
    echo(f"      M0: macro-F1 {base['macro_f1']}, tail {base['tail_macro_f1']}")
    orders = _orders(settings, pool, m0.predict_proba(pool.queries), traffic.labels, max(opts.budgets), seed)
    curves: dict[str, list[dict[str, Any]]] = {}
    for strategy in STRATEGIES:
        curves[strategy] = []
        for budget in opts.budgets:
            chosen = orders[strategy][:budget]
            if budget == 0:
                point = dict(base)
            else:
                rows = _with_reviews(weak, pool, chosen, settings)
                point = _scores(_fit(rows, traffic, train, opts, settings, fits), traffic)
            point = {"budget": budget, **point, **_selected(pool, chosen)}
            curves[strategy].append(point)
            echo(
                f"      {strategy:6s} {budget:4d} reviews: macro-F1 {point['macro_f1']}, "
                f"tail {point['tail_macro_f1']}"
            )
    return {
        "pool": len(pool.candidates),
        "pool_abstained": sum(c.abstained for c in pool.candidates),
        "weak_rows": len(weak),
        "test_queries": len(traffic.test),
        "tail_test_queries": base["tail_n"],
        "curves": curves,
        "fit_s_mean": round(fmean(fits), 2),
        "wall_s": round(time.monotonic() - seed_started, 1),
    }


def _pool(traffic: Traffic, dists: dict[str, LabelDistribution], seed: int, error: float) -> _Pool:
    """The distinct queries searched before the cut outside the test bucket that have a weak-label
    row and a true intent, busiest first (``review_pool``'s order), with the reviewer's answers."""
    searched = {r.norm_text for r in traffic.before} - traffic.test_bucket
    truth = {q: label for q, label in majorities(traffic.before, traffic.intent, searched)}
    queries = [q for q in searched if q in dists and truth.get(q) in traffic.labels]
    queries.sort(key=lambda q: (-dists[q].searches, q))
    candidates = [_candidate(dists[q]) for q in queries]
    answers = [reviewer_answer(seed, q, truth[q], traffic.labels, error) for q in queries]
    return _Pool(candidates, answers, [truth[q] for q in queries])


def _candidate(d: LabelDistribution) -> Candidate:
    """A weak-label row as selection reads it (the same fields ``store.review.review_pool`` fills)."""
    return Candidate(
        query=d.norm_text,
        searches=d.searches,
        weak_label=d.label,
        distribution=dict(d.distribution),
        confidence=d.confidence,
        abstained=d.abstained,
        reason=d.reason or None,
        evidence=d.evidence,
    )


def _orders(
    settings: Settings, pool: _Pool, probs: np.ndarray, labels: list[str], budget: int, seed: int
) -> dict[str, list[int]]:
    """Both strategies' choices of ``budget`` candidates (indices), best first."""
    from trainer.active_learning import Weights, random_pick, score

    review = settings.review
    weights = Weights(**{k: float(getattr(review.weights, k)) for k in Weights.__dataclass_fields__})
    scored = score(
        pool.candidates,
        probs,
        labels,
        drift_labels=set(),
        weights=weights,
        busy_min_searches=review.busy_min_searches,
        uncertainty=review.uncertainty,
    )
    active = _spread(scored, pool.queries, budget, review.max_similarity)
    return {"active": active, "random": random_pick(len(pool.candidates), budget, seed)}


def _spread(scored: list["Scored"], queries: list[str], budget: int, max_similarity: float) -> list[int]:
    """``spread`` over the top-scored candidates with their character n-gram vectors (only those are
    embedded, as selection embeds only the head of its ranking); widened while near-duplicates
    leave it short of ``budget``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from trainer.active_learning import spread

    size = min(len(scored), SPREAD_POOL * max(budget, 1))
    while True:
        head = [replace(s, index=j) for j, s in enumerate(scored[:size])]
        texts = [queries[s.index] for s in scored[:size]]
        vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), max_features=VECTOR_FEATURES, dtype=np.float32
        )
        vectors = vectorizer.fit_transform(texts).toarray() if texts else np.zeros((0, 1), np.float32)
        chosen = spread(head, vectors, budget, max_similarity)
        if len(chosen) >= budget or size >= len(scored):
            return [scored[s.index].index for s in chosen]
        size = min(len(scored), size * 2)


def _with_reviews(weak: list[Example], pool: _Pool, chosen: list[int], settings: Settings) -> list[Example]:
    """The weak rows with each reviewed query's answer in place of its weak label (and a row for
    each reviewed query the labeler abstained on), as training makes review gold into rows."""
    weight = float(settings.review.gold_weight)
    reviewed = {pool.candidates[i].query: pool.answers[i] for i in chosen}
    rows = [e for e in weak if e.text not in reviewed]
    rows += [Example(text=q, label=label, weight=weight, gold=True) for q, label in reviewed.items()]
    return sorted(rows, key=lambda e: e.text)


def _fit(
    rows: list[Example],
    traffic: Traffic,
    train: TrainSettings,
    opts: ReviewBenchOptions,
    settings: Settings,
    fits: list[float],
) -> "Predictor":
    """The learner trained on ``rows`` (its wall time appended to ``fits``)."""
    t0 = time.monotonic()
    if opts.learner == "tfidf":
        from trainer.baselines import train_tfidf

        model: Predictor = train_tfidf(rows, traffic.labels, seed=train.seed)
    else:
        model = _lora(rows, traffic.labels, train, settings, opts.progress)
    fits.append(time.monotonic() - t0)
    return model


def _lora(
    rows: list[Example], labels: list[str], train: TrainSettings, settings: Settings, progress: bool
) -> "Predictor":
    """The product's fine-tuning of the configured encoder, as ``bench train`` runs it."""
    from trainer.baselines import from_fit
    from trainer.classifier import resolve_base_dir
    from trainer.finetune import fit
    from trainer.inputs import resolve_input_format

    base_dir: Path = resolve_base_dir(settings.model.base_dir)
    max_length = settings.model.max_length
    fmt = resolve_input_format(settings.model, base_dir)
    result = fit(rows, [], labels, base_dir, train, max_length, progress=progress, input_format=fmt)
    return from_fit(result, labels, max_length).predictor


def _scores(model: "Predictor", traffic: Traffic) -> dict[str, Any]:
    from trainer.evaluation import evaluate

    report = evaluate(model, traffic.test, traffic.counts, traffic.bounds, kinds=traffic.kinds)
    tail = report["slices"]["tail"]
    return {
        "macro_f1": report["macro_f1"],
        "tail_macro_f1": tail.get("macro_f1"),
        "accuracy": report["accuracy"],
        "tail_n": tail.get("n", 0),
    }


def _selected(pool: _Pool, chosen: list[int]) -> dict[str, Any]:
    """What a strategy's first ``len(chosen)`` picks were: abstained share, traffic, how many
    changed a weak label and how many answers were the reviewer's mistakes."""
    if not chosen:
        return {"abstained_share": None, "mean_searches": None, "corrected": 0, "reviewer_wrong": 0}
    cands = [pool.candidates[i] for i in chosen]
    corrected = sum(
        1 for i, c in zip(chosen, cands, strict=True) if not c.abstained and c.weak_label != pool.answers[i]
    )
    return {
        "abstained_share": round(sum(c.abstained for c in cands) / len(cands), 4),
        "mean_searches": round(fmean(c.searches for c in cands), 2),
        "corrected": corrected,
        "reviewer_wrong": sum(1 for i in chosen if pool.answers[i] != pool.truth[i]),
    }


def _gain(curve: list[dict[str, Any]], key: str, budget: int) -> float | None:
    """The curve's ``key`` at ``budget`` less at budget 0 (``None`` when either is missing)."""
    by_budget = {p["budget"]: p[key] for p in curve}
    at, zero = by_budget.get(budget), by_budget.get(0)
    return None if at is None or zero is None else float(at) - float(zero)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(fmean(present), 4) if present and len(present) == len(values) else None


def _summary(opts: ReviewBenchOptions, per_seed: dict[int, dict[str, Any]], started: float) -> dict[str, Any]:
    """Mean curves over the seeds, the gains at the target budget (mean and per seed) and whether
    the target is met; ``total_wall_s`` is read last."""
    target = TARGET_BUDGET if TARGET_BUDGET in opts.budgets else max(opts.budgets)
    curves = {
        s: [
            {
                "budget": b,
                "macro_f1": _mean([r["curves"][s][k]["macro_f1"] for r in per_seed.values()]),
                "tail_macro_f1": _mean([r["curves"][s][k]["tail_macro_f1"] for r in per_seed.values()]),
            }
            for k, b in enumerate(opts.budgets)
        ]
        for s in STRATEGIES
    }
    seed_gains = {
        seed: {
            s: {
                "all": _round(_gain(r["curves"][s], "macro_f1", target)),
                "tail": _round(_gain(r["curves"][s], "tail_macro_f1", target)),
            }
            for s in STRATEGIES
        }
        for seed, r in per_seed.items()
    }
    gains = {
        s: {part: _mean([g[s][part] for g in seed_gains.values()]) for part in ("all", "tail")}
        for s in STRATEGIES
    }
    active, rand = gains["active"]["tail"], gains["random"]["tail"]
    at_target = opts.budgets.index(target)
    selected = {
        s: {
            key: _mean([r["curves"][s][at_target][key] for r in per_seed.values()])
            for key in ("abstained_share", "mean_searches", "corrected", "reviewer_wrong")
        }
        for s in STRATEGIES
    }
    return {
        "bench": "review",
        "learner": opts.learner,
        "epochs": opts.epochs if opts.learner == "lora" else None,
        "queries": opts.queries,
        "seeds": list(opts.seeds),
        "budgets": list(opts.budgets),
        "reviewer_error": opts.reviewer_error,
        "fits_per_seed": 1 + 2 * sum(1 for b in opts.budgets if b > 0),
        "curves": curves,
        "target_budget": target,
        "gain_at_target": gains,
        "tail_gain_ratio": round(active / rand, 3) if active is not None and rand and rand > 0 else None,
        "target_met": _met(gains),
        "per_seed": {
            str(seed): {
                "gains": seed_gains[seed],
                "target_met": _met(seed_gains[seed]),
                **{k: v for k, v in r.items() if k != "curves"},
                "curves": r["curves"],
            }
            for seed, r in per_seed.items()
        },
        "selected_at_target": selected,
        "total_wall_s": round(time.monotonic() - started, 1),
    }


def _met(gains: dict[str, dict[str, float | None]]) -> bool | None:
    """The target: a positive active tail gain at least twice random's (any, if random's is not positive)."""
    active, rand = gains["active"]["tail"], gains["random"]["tail"]
    return None if active is None or rand is None else bool(active > 0 and active >= 2 * max(rand, 0.0))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
