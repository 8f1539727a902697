"""`intentloop bench train` on weak labels: the loop's own labeling, then training, on realistic traffic.

The default simulated traffic is the long-tail profile (``SimConfig.long_tail``: most distinct
queries searched once, one click and no purchase the common case, ten weeks of clicks). Its
searches go through the real label aggregation (``streams.labels_job.label_records``: labeling
functions, propensity, the label policy) twice:

- **today's** policy before issue #11: thresholded majority vote (``policy=threshold``,
  ``min_evidence`` 2, ``min_confidence`` 0.6, IPS clipped at 10), trained on hard labels weighted by
  confidence;
- **the configured** policy (``INTENTLOOP_LABELS__*``, by default the Dirichlet posterior), trained
  as ``INTENTLOOP_TRAIN__TARGETS`` / ``__EXAMPLE_WEIGHT`` say (hard targets weighted by evidence by
  default), and, for the choice of that default, with the other target mode (soft by default).

Each labelling is scored against the shoppers' true intents per evidence bucket (1 search, 2-3, 4+).
Every model is scored on the same held-out queries — every distinct text in the test bucket
(``trainer.split.is_validation``), clicked or not, with its true intent — sliced head/torso/tail
by how often it was searched, and compared pairwise by McNemar's exact test.
"""

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intentloop.bench.train_common import Echo, Scored, TrainBenchOptions, headline, load_trainer, nulls
from intentloop.settings import Settings
from store.labels import LabelledQuery
from store.settings import TaxonomySettings
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
    from trainer.evaluation import FrequencySlices
    from trainer.inputs import InputFormat

TODAY_LABELS = {"policy": "threshold", "min_evidence": 2.0, "min_confidence": 0.6, "max_ips_weight": 10.0}
TODAY_TRAIN = {"targets": "hard", "example_weight": "confidence"}


def _rows(dists: dict[str, LabelDistribution], train: TrainSettings, test_fraction: float) -> list[Example]:
    """The training bucket's labelled queries as training examples, made the way training makes them."""
    rows = [
        LabelledQuery(
            d.norm_text, d.label, d.confidence, d.evidence, 0, dict(d.distribution), d.weight, d.searches
        )
        for d in sorted(dists.values(), key=lambda d: d.norm_text)
        if not d.abstained and d.label is not None and not is_validation(d.norm_text, test_fraction)
    ]
    return [to_example(r, train) for r in rows]


@dataclass(frozen=True)
class _Traffic:
    """The simulated searches and what every phase reads of them."""

    records: list[SearchRecord]
    catalog: dict[str, str]  # product id -> label
    truth: dict[str, str]  # normalised query -> the shoppers' majority intent label
    counts: dict[str, int]  # normalised query -> searches
    test: list[tuple[str, str]]  # held-out (query, true label), sorted
    labels: list[str]
    bounds: "FrequencySlices"

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
    """Simulate, label twice, train and score; returns the summary (printed as JSON)."""
    load_trainer()
    from trainer.classifier import resolve_base_dir
    from trainer.inputs import resolve_input_format

    started = time.monotonic()
    base_dir = resolve_base_dir(settings.model.base_dir)
    enc = _Encoder(
        base_dir, settings.model.max_length, resolve_input_format(settings.model, base_dir), opts.progress
    )
    train = settings.train.model_copy(update={"epochs": opts.epochs})
    traffic = _simulate(opts, settings.taxonomy, train, echo)

    echo("[2/5] weak labels: today's thresholded vote and the configured policy ...")
    labelled, label_reports = _label_twice(settings, traffic, echo)
    other = _other_targets(train)
    alt = f"lora_{other}"
    variants = {
        "lora": (labelled["configured"], train),
        "lora_today": (labelled["today"], train.model_copy(update=TODAY_TRAIN)),
        alt: (labelled["configured"], train.model_copy(update={"targets": other})),
    }
    scored, rows_of = _train_variants(variants, traffic, enc, opts, echo)

    echo("[4/5] TF-IDF + logistic regression on the configured labels ...")
    scored["tfidf"] = _tfidf(rows_of["lora"], traffic, train.seed)
    full: Scored | None = None
    if opts.full_ft:
        echo(f"[5/5] full fine-tuning on the configured labels, {opts.epochs} epoch(s) ...")
        full = _full_ft(rows_of["lora"], traffic, train, enc)
    else:
        echo("[5/5] full fine-tuning skipped (--no-full-ft)")
    encoder = "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(base_dir)
    return _summary(opts, encoder, traffic, train, label_reports, rows_of, scored, full, started)


def _simulate(opts: TrainBenchOptions, tax: TaxonomySettings, train: TrainSettings, echo: Echo) -> _Traffic:
    """The configured profile's searches as labeling reads them, with the held-out queries' truth."""
    from trainer.evaluation import frequency_slices

    config = (
        SimConfig.long_tail(seed=opts.seed, n_searches=opts.queries)
        if opts.traffic == "long_tail"
        else SimConfig(seed=opts.seed, n_searches=opts.queries)
    )
    echo(f"[1/5] simulating {opts.queries} searches ({opts.traffic} traffic, seed {opts.seed}) ...")
    sim = simulate(config)
    records = records_from_simulation(sim)
    catalog, truth = catalog_labels(sim, tax), truth_labels(sim, tax)
    counts = dict(Counter(r.norm_text for r in records))
    test = sorted((q, truth[q]) for q in counts if q in truth and is_validation(q, opts.test_fraction))
    labels = sorted(set(truth.values()))
    bounds = frequency_slices(counts, train.gate.head_share, train.gate.torso_share)
    return _Traffic(records, catalog, truth, counts, test, labels, bounds)


def _label_twice(
    settings: Settings, traffic: _Traffic, echo: Echo
) -> tuple[dict[str, dict[str, LabelDistribution]], dict[str, Any]]:
    """Today's thresholded vote and the configured policy over the same searches, each with its
    scores against the truth per evidence bucket."""
    today_settings = settings.labels.model_copy(update=TODAY_LABELS)
    labelled: dict[str, dict[str, LabelDistribution]] = {}
    label_reports: dict[str, Any] = {}
    for name, label_settings in (("today", today_settings), ("configured", settings.labels)):
        dists, report = label_records(
            traffic.records, traffic.catalog, {}, LabelSettings.model_validate(label_settings)
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
    traffic: _Traffic,
    enc: _Encoder,
    opts: TrainBenchOptions,
    echo: Echo,
) -> tuple[dict[str, Scored], dict[str, list[Example]]]:
    """LoRA on each variant's labels, in order; the scores and the rows each trained on."""
    scored: dict[str, Scored] = {}
    rows_of: dict[str, list[Example]] = {}
    for i, (name, (dists, variant)) in enumerate(variants.items(), start=1):
        rows = [e for e in _rows(dists, variant, opts.test_fraction) if e.label in traffic.labels]
        rows_of[name] = rows
        echo(f"[3/5] ({i}/{len(variants)}) {name}: LoRA on {len(rows)} rows, {opts.epochs} epoch(s) ...")
        scored[name] = _lora(rows, traffic, variant, enc)
        report = scored[name].report
        echo(f"      macro-F1 {report['macro_f1']:.4f}, tail {report['slices']['tail'].get('macro_f1')}")
    return scored, rows_of


def _lora(rows: list[Example], traffic: _Traffic, train: TrainSettings, enc: _Encoder) -> Scored:
    """One LoRA model on ``rows``, scored and predicting the held-out queries (then freed)."""
    from trainer.baselines import from_fit
    from trainer.evaluation import evaluate, predict
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
    report = evaluate(model.predictor, traffic.test, traffic.counts, traffic.bounds)
    predictions, _ = predict(model.predictor, traffic.queries)
    return Scored(report, model.metrics, predictions)


def _tfidf(rows: list[Example], traffic: _Traffic, seed: int) -> Scored:
    from trainer.baselines import train_tfidf
    from trainer.evaluation import evaluate, predict

    tfidf = train_tfidf(rows, traffic.labels, seed=seed)
    report = evaluate(tfidf, traffic.test, traffic.counts, traffic.bounds)
    predictions, _ = predict(tfidf, traffic.queries)
    return Scored(report, tfidf.metrics, predictions)


def _full_ft(rows: list[Example], traffic: _Traffic, train: TrainSettings, enc: _Encoder) -> Scored:
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
    return Scored(evaluate(full.predictor, traffic.test, traffic.counts, traffic.bounds), full.metrics)


def _other_targets(train: TrainSettings) -> str:
    """The target mode not configured: the third variant trains with it, for the choice of default."""
    return "soft" if train.targets == "hard" else "hard"


def _summary(
    opts: TrainBenchOptions,
    encoder: str,
    traffic: _Traffic,
    train: TrainSettings,
    label_reports: dict[str, Any],
    rows_of: dict[str, list[Example]],
    scored: dict[str, Scored],
    full: Scored | None,
    started: float,
) -> dict[str, Any]:
    """The result line (``rows_of`` in variant order); ``total_wall_s`` is read last, as the clock's stop."""
    counts, lora = traffic.counts, scored["lora"].metrics
    other = _other_targets(train)
    alt = f"lora_{other}"
    return {
        "traffic": opts.traffic,
        "labels_from": "weak",
        "searches": len(traffic.records),
        "distinct_queries": len(counts),
        "searched_once_share": round(sum(1 for n in counts.values() if n == 1) / max(len(counts), 1), 4),
        "train_rows": {name: len(rows) for name, rows in rows_of.items()},
        "test_queries": len(traffic.test),
        "labels": len(traffic.labels),
        "seed": opts.seed,
        "epochs": opts.epochs,
        "encoder": encoder,
        "device": lora["device"],
        "samples_per_s": lora["samples_per_s"],
        "wall_s": lora["wall_s"],
        "trainable_params_pct": lora["trainable_params_pct"],
        "weak_labels": label_reports,
        "targets": {
            "lora": [train.targets, train.example_weight],
            "lora_today": ["hard", "confidence"],
            alt: [other, train.example_weight],
        },
        **{k: v for name in rows_of for k, v in headline(name, scored[name].report).items()},
        **headline("tfidf", scored["tfidf"].report),
        "full_ft_wall_s": full.metrics.get("wall_s") if full is not None else None,
        **(headline("full_ft", full.report) if full is not None else nulls("full_ft")),
        "lora_vs_lora_today": _paired("lora", "lora_today", scored, traffic),
        f"lora_vs_{alt}": _paired("lora", alt, scored, traffic),
        "lora_vs_tfidf": _paired("lora", "tfidf", scored, traffic),
        "test_slices": {
            name: scored["lora"].report["slices"][name]["n"] for name in ("head", "torso", "tail")
        },
        "slice_definition": traffic.bounds.describe(),
        "total_wall_s": round(time.monotonic() - started, 1),
    }


def _paired(a: str, b: str, scored: dict[str, Scored], traffic: _Traffic) -> dict[str, Any]:
    """McNemar of model ``a`` against ``b`` on every held-out query and on the tail ones."""
    from trainer.evaluation import paired_comparison

    test, counts, bounds = traffic.test, traffic.counts, traffic.bounds
    truth_of = [label for _, label in test]
    tail = [i for i, q in enumerate(traffic.queries) if bounds.slice_of(counts.get(q, 0)) == "tail"]
    preds_a, preds_b = scored[a].predictions, scored[b].predictions
    out = {}
    for part, idx in (("all", list(range(len(test)))), ("tail", tail)):
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
