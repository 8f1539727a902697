"""`intentloop bench train` on weak labels: the loop's own labeling, then training, on realistic traffic.

The default simulated traffic is the long-tail profile (``SimConfig.long_tail``: most distinct
queries searched once, one click and no purchase the common case, ten weeks of clicks) with shoppers
who type like people (``SimConfig.realism``: paraphrases, typos, questions, other languages;
``--shoppers easy`` is the old shop whose queries only recombine the catalogue's words).

**What is held out, and when.** The training snapshot is taken at ``--cut`` (80%) of the searches in
time, as the nightly refresh would: weak labels, the behaviour memory and every model see only the
searches before it. The test queries are the distinct texts in the test bucket
(``trainer.split.is_validation``) plus every text with a phrasing held out of the simulator's
vocabulary (``unseen_phrasing``), never trained on, each scored against the majority true intent of
its searches *after* the cut: a head query's earlier clicks may tell the memory what it means, a
query first typed after the cut is new to every member. ``--review`` distinct queries from before
the cut (outside the test bucket) are labelled by a simulated reviewer with their true intent, as
``labels gold load --purpose train`` would bring them: no member trains on them; the fusion learns
on them.

The searches before the cut go through the real label aggregation (``streams.labels_job``) with
the configured policy (``INTENTLOOP_LABELS__*``, by default the Dirichlet posterior), trained as
``INTENTLOOP_TRAIN__TARGETS`` / ``__EXAMPLE_WEIGHT`` say. ``--policy-variants`` adds issue 11's
comparisons: today's thresholded vote (``policy=threshold``, ``min_evidence`` 2, ``min_confidence``
0.6, IPS clipped at 10, hard labels weighted by confidence) and the other target mode.

Every model is scored on the same held-out queries, sliced head/torso/tail by how often the whole
log searched them and by kind (``unseen_phrasing``, ``typo``, ``question``, ...), and compared
pairwise by McNemar's exact test: LoRA against TF-IDF, the fused model against its best member.
"""

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from intentloop.bench.train_common import Echo, Scored, TrainBenchOptions, headline, load_trainer, nulls
from intentloop.settings import Settings
from store.labels import LabelledQuery
from store.settings import TaxonomySettings
from store.taxonomy import label_for_category
from streams.labels_job import label_records
from streams.simulator import SimConfig, simulate
from streams.simulator.labels import catalog_labels, truth_labels
from streams.weak.analysis import evidence_buckets
from streams.weak.policies import LabelDistribution
from streams.weak.records import SearchRecord, records_from_simulation
from streams.weak.settings import LabelSettings
from trainer.dataset import Example
from trainer.settings import TrainSettings
from trainer.snapshot import to_example
from trainer.split import is_validation

if TYPE_CHECKING:
    from trainer.evaluation import FrequencySlices, Predictor
    from trainer.inputs import InputFormat

TODAY_LABELS = {"policy": "threshold", "min_evidence": 2.0, "min_confidence": 0.6, "max_ips_weight": 10.0}
TODAY_TRAIN = {"targets": "hard", "example_weight": "confidence"}


def weak_rows(
    dists: dict[str, LabelDistribution], train: TrainSettings, held_out: frozenset[str]
) -> list[Example]:
    """The labelled queries outside ``held_out`` as training examples, made the way training makes them."""
    rows = [
        LabelledQuery(
            d.norm_text, d.label, d.confidence, d.evidence, 0, dict(d.distribution), d.weight, d.searches
        )
        for d in sorted(dists.values(), key=lambda d: d.norm_text)
        if not d.abstained and d.label is not None and d.norm_text not in held_out
    ]
    return [to_example(r, train) for r in rows]


@dataclass(frozen=True)
class Traffic:
    """The simulated searches and what every phase reads of them (see the module docstring)."""

    records: list[SearchRecord]  # every search, in time order
    before: list[SearchRecord]  # the searches before the snapshot
    catalog: dict[str, str]  # product id -> label
    truth: dict[str, str]  # normalised query -> the shoppers' majority intent label (whole log)
    counts: dict[str, int]  # normalised query -> searches (whole log)
    test: list[tuple[str, str]]  # held-out (query, majority true label after the cut), sorted
    review: list[tuple[str, str]]  # reviewed (query, majority true label before the cut), sorted
    held_out: frozenset[str]  # never a training row: test bucket, unseen phrasings, reviewed
    kinds: dict[str, frozenset[str]]  # normalised query -> the simulator's kinds of it
    labels: list[str]
    bounds: "FrequencySlices"
    # what a simulated reviewer of other queries needs (``bench review``): the test bucket alone
    # (``held_out`` less the reviewed queries) and each simulated query id's true intent label
    test_bucket: frozenset[str] = frozenset()
    intent: dict[str, str | None] = field(default_factory=dict)

    @property
    def queries(self) -> list[str]:
        return [q for q, _ in self.test]


@dataclass(frozen=True)
class _Encoder:
    """How every neural model of the run is built."""

    base_dir: Path
    max_length: int
    input_format: "InputFormat"
    progress: bool


def run_weak_train_bench(settings: Settings, opts: TrainBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Simulate, label, train the members, fuse them and score; returns the summary (printed as JSON)."""
    load_trainer()
    from intentloop.bench.train_fusion import fuse
    from trainer.classifier import resolve_base_dir
    from trainer.inputs import resolve_input_format

    started = time.monotonic()
    base_dir = resolve_base_dir(settings.model.base_dir)
    enc = _Encoder(
        base_dir, settings.model.max_length, resolve_input_format(settings.model, base_dir), opts.progress
    )
    train = settings.train.model_copy(update={"epochs": opts.epochs})
    traffic = simulate_traffic(opts, settings.taxonomy, train, echo)

    echo("[2/6] weak labels of the searches before the snapshot ...")
    labelled, label_reports = _label(settings, traffic, opts.policy_variants, echo)
    variants = {"lora": (labelled["configured"], train)}
    if opts.policy_variants:
        variants["lora_today"] = (labelled["today"], train.model_copy(update=TODAY_TRAIN))
        variants[f"lora_{_other_targets(train)}"] = (
            labelled["configured"],
            train.model_copy(update={"targets": _other_targets(train)}),
        )
    scored, rows_of = _train_variants(variants, traffic, enc, echo)

    echo("[4/6] TF-IDF word + character n-grams + logistic regression on the same rows ...")
    scored["tfidf"] = _tfidf(rows_of["lora"], traffic, train.seed)
    echo(f"[5/6] behaviour memory and fusion, learned on {len(traffic.review)} reviewed queries ...")
    fusion = fuse(traffic, scored, settings.labels, echo)
    for name, proba in fusion.proba.items():
        answers = dict(zip(traffic.queries, proba, strict=True))
        scored[name] = score(_Answered(traffic.labels, answers), traffic, {}, member=False)
    full: Scored | None = None
    if opts.full_ft:
        echo(f"[6/6] full fine-tuning on the configured labels, {opts.epochs} epoch(s) ...")
        full = _full_ft(rows_of["lora"], traffic, train, enc)
    else:
        echo("[6/6] full fine-tuning skipped (--no-full-ft)")
    encoder = "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(base_dir)
    details = fusion.details
    return _summary(opts, encoder, traffic, train, label_reports, rows_of, scored, details, full, started)


def simulate_traffic(
    opts: TrainBenchOptions, tax: TaxonomySettings, train: TrainSettings, echo: Echo
) -> Traffic:
    """The configured profile's searches as labeling reads them, split in time and by query."""
    from trainer.evaluation import frequency_slices

    config = (
        SimConfig.long_tail(seed=opts.seed, n_searches=opts.queries)
        if opts.traffic == "long_tail"
        else SimConfig(seed=opts.seed, n_searches=opts.queries)
    )
    if opts.shoppers == "easy":
        config = config.model_copy(update={"realism": None})
    echo(
        f"[1/6] simulating {opts.queries} searches ({opts.traffic} traffic, {opts.shoppers} shoppers, "
        f"seed {opts.seed}) ..."
    )
    sim = simulate(config)
    records = sorted(records_from_simulation(sim), key=lambda r: r.ts)
    cut = max(1, min(len(records) - 1, round(opts.cut * len(records))))
    before, after = records[:cut], records[cut:]
    catalog, truth = catalog_labels(sim, tax), truth_labels(sim, tax)
    intent = {qid: label_for_category(path, tax) for qid, path in sim.intents.items()}
    counts = dict(Counter(r.norm_text for r in records))
    unseen = sim.tagged("unseen_phrasing")
    test_bucket = {q for q in counts if is_validation(q, opts.test_fraction) or q in unseen}
    test = majorities(after, intent, test_bucket)
    candidates = {r.norm_text for r in before} - test_bucket
    chosen = set(sorted(candidates, key=_stable_order)[: max(0, opts.review)])
    review = majorities(before, intent, chosen)
    labels = sorted(set(truth.values()))
    bounds = frequency_slices(counts, train.gate.head_share, train.gate.torso_share)
    held_out = frozenset(test_bucket | chosen)
    return Traffic(
        records,
        before,
        catalog,
        truth,
        counts,
        test,
        review,
        held_out,
        sim.kinds,
        labels,
        bounds,
        test_bucket=frozenset(test_bucket),
        intent=intent,
    )


def majorities(
    records: list[SearchRecord], intent: dict[str, str | None], queries: set[str]
) -> list[tuple[str, str]]:
    """``(query, its searches' majority intent label)`` for ``queries`` searched in ``records``,
    sorted (ties: the alphabetically first label, so a seed always gives the same rows)."""
    votes: dict[str, Counter[str]] = {}
    for r in records:
        label = intent.get(r.query_id)
        if r.norm_text in queries and label is not None:
            votes.setdefault(r.norm_text, Counter())[label] += 1
    return sorted((q, min(c, key=lambda lab: (-c[lab], lab))) for q, c in votes.items())


# The names ``bench train``'s fusion and its tests import (one definition each).
_Traffic = Traffic
_simulate = simulate_traffic
_rows = weak_rows


def _stable_order(query: str) -> str:
    """A seed-free shuffle of the queries (the reviewed sample): their hash, not their spelling."""
    return hashlib.blake2b(query.encode(), digest_size=8).hexdigest()


def _label(
    settings: Settings, traffic: Traffic, variants: bool, echo: Echo
) -> tuple[dict[str, dict[str, LabelDistribution]], dict[str, Any]]:
    """The configured policy (and with ``variants`` today's thresholded vote) over the searches
    before the snapshot, each with its scores against the truth per evidence bucket."""
    policies = [("configured", settings.labels)]
    if variants:
        policies.insert(0, ("today", settings.labels.model_copy(update=TODAY_LABELS)))
    labelled: dict[str, dict[str, LabelDistribution]] = {}
    label_reports: dict[str, Any] = {}
    for name, label_settings in policies:
        dists, report = label_records(
            traffic.before, traffic.catalog, {}, LabelSettings.model_validate(label_settings)
        )
        labelled[name] = dists
        label_reports[name] = {
            "policy": report["policy"],
            "labelled": report["labelled"],
            "coverage": report["coverage"],
            "evidence_coverage": report["evidence_coverage"],
            "buckets": evidence_buckets(dists, traffic.truth),
        }
        echo(f"      {name}: {report['labelled']} of {report['queries']} queries labelled")
    return labelled, label_reports


def _train_variants(
    variants: dict[str, tuple[dict[str, LabelDistribution], TrainSettings]],
    traffic: Traffic,
    enc: _Encoder,
    echo: Echo,
) -> tuple[dict[str, Scored], dict[str, list[Example]]]:
    """LoRA on each variant's labels, in order; the scores and the rows each trained on."""
    scored: dict[str, Scored] = {}
    rows_of: dict[str, list[Example]] = {}
    for i, (name, (dists, variant)) in enumerate(variants.items(), start=1):
        rows = [e for e in weak_rows(dists, variant, traffic.held_out) if e.label in traffic.labels]
        rows_of[name] = rows
        echo(f"[3/6] ({i}/{len(variants)}) {name}: LoRA on {len(rows)} rows, {variant.epochs} epoch(s) ...")
        scored[name] = _lora(rows, traffic, variant, enc)
        report = scored[name].report
        echo(f"      macro-F1 {report['macro_f1']:.4f}, tail {report['slices']['tail'].get('macro_f1')}")
    return scored, rows_of


def score(model: "Predictor", traffic: Traffic, metrics: dict[str, Any], *, member: bool = True) -> Scored:
    """``model``'s report on the held-out queries, its predictions there and, for a ``member`` of
    the fusion, its probabilities on the held-out and the reviewed queries (what the fusion combines)."""
    from trainer.evaluation import evaluate, predict

    report = evaluate(model, traffic.test, traffic.counts, traffic.bounds, kinds=traffic.kinds)
    predictions, _ = predict(model, traffic.queries)
    if not member:
        return Scored(report, metrics, predictions)
    proba = {
        "test": model.predict_proba(traffic.queries),
        "review": model.predict_proba([q for q, _ in traffic.review]),
    }
    return Scored(report, metrics, predictions, proba)


@dataclass(frozen=True)
class _Answered:
    """A model already run: its probabilities per held-out query (the memory, the fused model)."""

    labels: list[str]
    answers: dict[str, np.ndarray]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray([self.answers[t] for t in texts]).reshape(len(texts), len(self.labels))


def _lora(rows: list[Example], traffic: Traffic, train: TrainSettings, enc: _Encoder) -> Scored:
    """One LoRA model on ``rows``, scored (then freed)."""
    from trainer.baselines import from_fit
    from trainer.finetune import fit

    labels = traffic.labels
    result = fit(
        rows,
        [],
        labels,
        enc.base_dir,
        train,
        enc.max_length,
        progress=enc.progress,
        input_format=enc.input_format,
    )
    model = from_fit(result, labels, enc.max_length)
    return score(model.predictor, traffic, model.metrics)


def _tfidf(rows: list[Example], traffic: Traffic, seed: int) -> Scored:
    from trainer.baselines import train_tfidf

    tfidf = train_tfidf(rows, traffic.labels, seed=seed)
    return score(tfidf, traffic, tfidf.metrics)


def _full_ft(rows: list[Example], traffic: Traffic, train: TrainSettings, enc: _Encoder) -> Scored:
    from trainer.baselines import train_full_finetune
    from trainer.evaluation import evaluate

    full = train_full_finetune(
        rows,
        [],
        traffic.labels,
        enc.base_dir,
        train,
        enc.max_length,
        progress=enc.progress,
        input_format=enc.input_format,
    )
    report = evaluate(full.predictor, traffic.test, traffic.counts, traffic.bounds, kinds=traffic.kinds)
    return Scored(report, full.metrics)


def _other_targets(train: TrainSettings) -> str:
    """The target mode not configured: the third variant trains with it, for the choice of default."""
    return "soft" if train.targets == "hard" else "hard"


def _summary(
    opts: TrainBenchOptions,
    encoder: str,
    traffic: Traffic,
    train: TrainSettings,
    label_reports: dict[str, Any],
    rows_of: dict[str, list[Example]],
    scored: dict[str, Scored],
    fusion: dict[str, Any],
    full: Scored | None,
    started: float,
) -> dict[str, Any]:
    """The result line (``rows_of`` in variant order); ``total_wall_s`` is read last, as the clock's stop."""
    counts, lora, every = traffic.counts, scored["lora"].metrics, scored
    variants = {name: headline(name, every[name].report) for name in rows_of}
    best = max(("lora", "tfidf", "memory"), key=lambda m: every[m].report["macro_f1"])
    comparisons = {
        "lora_vs_tfidf": _paired("lora", "tfidf", every, traffic),
        "fused_vs_best_member": {"member": best, **_paired("fused", best, every, traffic)},
    }
    for name in rows_of:
        if name != "lora":
            comparisons[f"lora_vs_{name}"] = _paired("lora", name, every, traffic)
    return {
        "traffic": opts.traffic,
        "shoppers": opts.shoppers,
        "labels_from": "weak",
        "searches": len(traffic.records),
        "searches_before_snapshot": len(traffic.before),
        "distinct_queries": len(counts),
        "searched_once_share": round(sum(1 for n in counts.values() if n == 1) / max(len(counts), 1), 4),
        "train_rows": {name: len(rows) for name, rows in rows_of.items()},
        "reviewed_queries": len(traffic.review),
        "test_queries": len(traffic.test),
        "labels": len(traffic.labels),
        "seed": opts.seed,
        "epochs": opts.epochs,
        "epochs_run": lora.get("epochs_run"),  # more than --epochs when min_steps asked for more
        "steps": lora.get("steps"),
        "augment_typos": train.augment_typos,
        "typo_copies": lora.get("typo_copies"),
        "encoder": encoder,
        "device": lora["device"],
        "samples_per_s": lora["samples_per_s"],
        "wall_s": lora["wall_s"],
        "trainable_params_pct": lora["trainable_params_pct"],
        "weak_labels": label_reports,
        "targets": {name: [v.targets, v.example_weight] for name, v in _targets(train, rows_of).items()},
        **{k: v for part in variants.values() for k, v in part.items()},
        **headline("tfidf", every["tfidf"].report),
        "tfidf_wall_s": every["tfidf"].metrics.get("wall_s"),
        **headline("memory", every["memory"].report),
        **headline("fused", every["fused"].report),
        "fusion": fusion,
        "full_ft_wall_s": full.metrics.get("wall_s") if full is not None else None,
        **(headline("full_ft", full.report) if full is not None else nulls("full_ft")),
        **comparisons,
        "test_slices": {
            name: part["n"] for name, part in every["lora"].report["slices"].items() if "n" in part
        },
        "slice_definition": traffic.bounds.describe(),
        "total_wall_s": round(time.monotonic() - started, 1),
    }


def _targets(train: TrainSettings, rows_of: dict[str, list[Example]]) -> dict[str, TrainSettings]:
    """How each LoRA variant of the run was trained (targets and example weights)."""
    out = {"lora": train}
    if "lora_today" in rows_of:
        out["lora_today"] = train.model_copy(update=TODAY_TRAIN)
    other = _other_targets(train)
    if f"lora_{other}" in rows_of:
        out[f"lora_{other}"] = train.model_copy(update={"targets": other})
    return out


def _paired(a: str, b: str, scored: dict[str, Scored], traffic: Traffic) -> dict[str, Any]:
    """McNemar of model ``a`` against ``b`` on every held-out query, on the tail ones and on the
    ones with a phrasing no training query used."""
    from trainer.evaluation import paired_comparison

    test, counts, bounds = traffic.test, traffic.counts, traffic.bounds
    truth_of = [label for _, label in test]
    tail = [i for i, q in enumerate(traffic.queries) if bounds.slice_of(counts.get(q, 0)) == "tail"]
    unseen = [i for i, q in enumerate(traffic.queries) if "unseen_phrasing" in traffic.kinds.get(q, ())]
    preds_a, preds_b = scored[a].predictions, scored[b].predictions
    out = {}
    for part, idx in (("all", list(range(len(test)))), ("tail", tail), ("unseen_phrasing", unseen)):
        r = paired_comparison(
            [truth_of[i] for i in idx], [preds_a[i] for i in idx], [preds_b[i] for i in idx]
        )
        out[part] = {
            "n": r["n"],
            f"{a}_errors": r["a_errors"],
            f"{b}_errors": r["b_errors"],
            "mcnemar_p": r["p_value"],
        }
    return out
