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
from typing import Any

from intentloop.bench.train import Echo, TrainBenchOptions, _headline, _nulls
from intentloop.settings import Settings
from store.labels import LabelledQuery
from streams.labels_job import label_records
from streams.simulator import SimConfig, simulate
from streams.simulator.labels import catalog_labels, truth_labels
from streams.weak.aggregate import LabelDistribution
from streams.weak.analysis import evidence_buckets
from streams.weak.records import records_from_simulation
from streams.weak.settings import LabelSettings
from trainer.dataset import Example
from trainer.settings import TrainSettings
from trainer.snapshot import to_example
from trainer.split import is_validation

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


def run_weak_train_bench(settings: Settings, opts: TrainBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Simulate, label twice, train and score; returns the summary (printed as JSON)."""
    from trainer.baselines import from_fit, train_full_finetune, train_tfidf
    from trainer.evaluation import evaluate, frequency_slices, paired_comparison, predict
    from trainer.finetune import fit
    from trainer.inputs import resolve_input_format
    from trainer.model import resolve_base_dir

    started = time.monotonic()
    base_dir = resolve_base_dir(settings.model.base_dir)
    input_format = resolve_input_format(settings.model, base_dir)
    max_length = settings.model.max_length
    train = settings.train.model_copy(update={"epochs": opts.epochs})
    tax = settings.taxonomy

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

    echo("[2/5] weak labels: today's thresholded vote and the configured policy ...")
    today_settings = settings.labels.model_copy(update=TODAY_LABELS)
    labelled: dict[str, dict[str, LabelDistribution]] = {}
    label_reports: dict[str, Any] = {}
    for name, label_settings in (("today", today_settings), ("configured", settings.labels)):
        dists, report = label_records(records, catalog, {}, LabelSettings.model_validate(label_settings))
        labelled[name] = dists
        label_reports[name] = {
            "policy": report["policy"],
            "labelled": report["labelled"],
            "coverage": report["coverage"],
            "evidence_coverage": report["evidence_coverage"],
            "buckets": evidence_buckets(dists, truth),
        }
        echo(f"      {name}: {report['labelled']} of {report['queries']} queries labelled")

    other = "soft" if train.targets == "hard" else "hard"  # the target mode not configured, for the choice
    alt = f"lora_{other}"
    variants = {
        "lora": (labelled["configured"], train),
        "lora_today": (labelled["today"], train.model_copy(update=TODAY_TRAIN)),
        alt: (labelled["configured"], train.model_copy(update={"targets": other})),
    }
    reports: dict[str, dict[str, Any]] = {}
    preds: dict[str, list[str]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    rows_of: dict[str, list[Example]] = {}
    queries = [q for q, _ in test]
    for i, (name, (dists, variant)) in enumerate(variants.items(), start=1):
        rows = [e for e in _rows(dists, variant, opts.test_fraction) if e.label in labels]
        rows_of[name] = rows
        echo(f"[3/5] ({i}/{len(variants)}) {name}: LoRA on {len(rows)} rows, {opts.epochs} epoch(s) ...")
        result = fit(
            rows, [], labels, base_dir, variant, max_length, progress=opts.progress, input_format=input_format
        )
        model = from_fit(result, labels, max_length)
        reports[name] = evaluate(model.predictor, test, counts, bounds)
        preds[name], _ = predict(model.predictor, queries)
        metrics[name] = model.metrics
        echo(
            f"      macro-F1 {reports[name]['macro_f1']:.4f}, "
            f"tail {reports[name]['slices']['tail'].get('macro_f1')}"
        )
        del model, result

    echo("[4/5] TF-IDF + logistic regression on the configured labels ...")
    tfidf = train_tfidf(rows_of["lora"], labels, seed=train.seed)
    reports["tfidf"] = evaluate(tfidf, test, counts, bounds)
    preds["tfidf"], _ = predict(tfidf, queries)

    full_report: dict[str, Any] | None = None
    full_metrics: dict[str, Any] = {}
    if opts.full_ft:
        echo(f"[5/5] full fine-tuning on the configured labels, {opts.epochs} epoch(s) ...")
        full = train_full_finetune(
            rows_of["lora"],
            [],
            labels,
            base_dir,
            train,
            max_length,
            progress=opts.progress,
            input_format=input_format,
        )
        full_report, full_metrics = evaluate(full.predictor, test, counts, bounds), full.metrics
    else:
        echo("[5/5] full fine-tuning skipped (--no-full-ft)")

    truth_of = [label for _, label in test]
    tail = [i for i, q in enumerate(queries) if bounds.slice_of(counts.get(q, 0)) == "tail"]

    def paired(a: str, b: str) -> dict[str, Any]:
        out = {}
        for part, idx in (("all", list(range(len(test)))), ("tail", tail)):
            r = paired_comparison(
                [truth_of[i] for i in idx], [preds[a][i] for i in idx], [preds[b][i] for i in idx]
            )
            out[part] = {
                "n": r["n"],
                f"{a}_errors": r["a_errors"],
                f"{b}_errors": r["b_errors"],
                "mcnemar_p": r["p_value"],
            }
        return out

    lora = metrics["lora"]
    return {
        "traffic": opts.traffic,
        "labels_from": "weak",
        "searches": len(records),
        "distinct_queries": len(counts),
        "searched_once_share": round(sum(1 for n in counts.values() if n == 1) / max(len(counts), 1), 4),
        "train_rows": {name: len(rows) for name, rows in rows_of.items()},
        "test_queries": len(test),
        "labels": len(labels),
        "seed": opts.seed,
        "epochs": opts.epochs,
        "encoder": "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(base_dir),
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
        **{k: v for name in variants for k, v in _headline(name, reports[name]).items()},
        **_headline("tfidf", reports["tfidf"]),
        "full_ft_wall_s": full_metrics.get("wall_s"),
        **(_headline("full_ft", full_report) if full_report is not None else _nulls("full_ft")),
        "lora_vs_lora_today": paired("lora", "lora_today"),
        f"lora_vs_{alt}": paired("lora", alt),
        "lora_vs_tfidf": paired("lora", "tfidf"),
        "test_slices": {name: reports["lora"]["slices"][name]["n"] for name in ("head", "torso", "tail")},
        "slice_definition": bounds.describe(),
        "total_wall_s": round(time.monotonic() - started, 1),
    }
