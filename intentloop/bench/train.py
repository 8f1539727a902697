"""`intentloop bench train`: LoRA vs full fine-tuning vs TF-IDF on a fixed simulated snapshot.

The snapshot is ``--queries`` labelled searches from the traffic simulator (``streams.simulator``,
deterministic for ``--seed``): each search's normalised text with the intent its shopper meant
(the category path at the configured taxonomy depth). Searches, not distinct texts: the simulator's
vocabulary has about 17,000 distinct queries, so 50,000 labelled queries are a query log, in which
popular queries recur as often as they are searched and ambiguous ones carry their real label mix.

Held out **by query**: every search of a normalised text whose hash falls in the test bucket
(``trainer.split.is_validation`` at ``--test-fraction``) is test, so no test text is ever trained on.
The test set is those distinct texts, each with its majority true intent, sliced head/torso/tail by
how often the snapshot searched it (``trainer.evaluation``).

Every model trains on the same training rows for the same ``--epochs`` (one by default) with no
validation-based selection: LoRA with the configured encoder (all-MiniLM-L6-v2 unless
``INTENTLOOP_MODEL__BASE_DIR``) and ``INTENTLOOP_TRAIN__*`` hyper-parameters, full fine-tuning of the
same encoder at ``INTENTLOOP_TRAIN__GATE__FULL_FT_LEARNING_RATE``, and the TF-IDF + logistic regression
baseline. Full fine-tuning is on by default because its numbers belong in the result line; it is
the slowest phase (``--no-full-ft`` skips it and reports nulls). Needs no servers.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from intentloop.settings import Settings
from store.settings import TaxonomySettings
from store.taxonomy import label_for_category, normalise_query
from streams.simulator import SimConfig, simulate
from trainer.dataset import Example
from trainer.split import is_validation

Echo = Callable[[str], None]


@dataclass(frozen=True)
class TrainBenchOptions:
    queries: int = 50_000
    seed: int = 17
    full_ft: bool = True
    epochs: int = 1
    test_fraction: float = 0.2
    progress: bool = True
    traffic: str = "long_tail"  # or "shop": the simulator's profile
    labels: str = "weak"  # "weak": labeled by the labeling functions; "truth": the shoppers' intents


@dataclass(frozen=True)
class Snapshot:
    """The benchmark's fixed data: training rows, held-out (query, label) rows and traffic counts."""

    train: list[Example]
    test: list[tuple[str, str]]
    counts: dict[str, int]
    labels: list[str]
    searches: int


def build_snapshot(queries: int, seed: int, test_fraction: float, taxonomy: TaxonomySettings) -> Snapshot:
    """``queries`` simulated searches labelled with their shoppers' true intents, split by query."""
    sim = simulate(SimConfig(seed=seed, n_searches=queries))
    rows: list[tuple[str, str]] = []
    for q in sim.queries:
        label = label_for_category(sim.intents[q.query_id], taxonomy)
        if label is not None:
            rows.append((normalise_query(q.query), label))
    counts = dict(Counter(text for text, _ in rows))
    train = [Example(text, label) for text, label in rows if not is_validation(text, test_fraction)]
    test = []
    for text in sorted(counts):
        if is_validation(text, test_fraction):
            label = label_for_category(sim.truth[text], taxonomy)
            if label is not None:
                test.append((text, label))
    labels = sorted({label for _, label in rows})
    return Snapshot(train, test, counts, labels, len(rows))


def _headline(prefix: str, report: dict[str, Any]) -> dict[str, Any]:
    out = {
        f"{prefix}_macro_f1": report["macro_f1"],
        f"{prefix}_accuracy": report["accuracy"],
        f"{prefix}_ece": report["ece"],
    }
    for name in ("head", "torso", "tail"):
        out[f"{prefix}_{name}_macro_f1"] = report["slices"][name].get("macro_f1")
    return out


def run_train_bench(settings: Settings, opts: TrainBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Build the snapshot, train and score the three models; returns the summary (printed as JSON)."""
    if opts.labels == "weak":
        from intentloop.bench.train_weak import run_weak_train_bench

        return run_weak_train_bench(settings, opts, echo=echo)
    from trainer.baselines import from_fit, train_full_finetune, train_tfidf
    from trainer.evaluation import evaluate, frequency_slices, predict
    from trainer.finetune import fit
    from trainer.model import resolve_base_dir

    started = time.monotonic()
    base_dir = resolve_base_dir(settings.model.base_dir)
    max_length = settings.model.max_length
    train_settings = settings.train.model_copy(update={"epochs": opts.epochs})
    gate = train_settings.gate

    echo(f"[1/4] simulating {opts.queries} labelled searches (seed {opts.seed}) ...")
    snap = build_snapshot(opts.queries, opts.seed, opts.test_fraction, settings.taxonomy)
    bounds = frequency_slices(snap.counts, gate.head_share, gate.torso_share)
    echo(
        f"      {snap.searches} searches, {len(snap.counts)} distinct queries, {len(snap.labels)} labels; "
        f"train rows {len(snap.train)}, held-out queries {len(snap.test)}"
    )

    echo(f"[2/4] LoRA on {base_dir}, {opts.epochs} epoch(s) ...")
    lora_fit = fit(snap.train, [], snap.labels, base_dir, train_settings, max_length, progress=opts.progress)
    lora = from_fit(lora_fit, snap.labels, max_length)
    lora_report = evaluate(lora.predictor, snap.test, snap.counts, bounds)
    lora_metrics = lora.metrics
    test_queries = [q for q, _ in snap.test]
    lora_pred, _ = predict(lora.predictor, test_queries)
    echo(f"      macro-F1 {lora_report['macro_f1']:.4f} in {lora.metrics['wall_s']:.0f}s")
    del lora, lora_fit  # free the LoRA model before full fine-tuning builds another encoder

    echo("[3/4] TF-IDF + logistic regression ...")
    tfidf = train_tfidf(snap.train, snap.labels, seed=train_settings.seed)
    tfidf_report = evaluate(tfidf, snap.test, snap.counts, bounds)
    echo(f"      macro-F1 {tfidf_report['macro_f1']:.4f} in {tfidf.metrics['wall_s']:.0f}s")
    tfidf_pred, _ = predict(tfidf, test_queries)
    tail = [i for i, q in enumerate(test_queries) if bounds.slice_of(snap.counts.get(q, 0)) == "tail"]
    truth = [label for _, label in snap.test]
    paired = {
        name: _lora_vs_tfidf([truth[i] for i in rows], lora_pred, tfidf_pred, rows)
        for name, rows in (("all", list(range(len(truth)))), ("tail", tail))
    }

    full_report: dict[str, Any] | None = None
    full_metrics: dict[str, Any] = {}
    if opts.full_ft:
        echo(f"[4/4] full fine-tuning, {opts.epochs} epoch(s) at lr {gate.full_ft_learning_rate} ...")
        full = train_full_finetune(
            snap.train, [], snap.labels, base_dir, train_settings, max_length, progress=opts.progress
        )
        full_report = evaluate(full.predictor, snap.test, snap.counts, bounds)
        full_metrics = full.metrics
        echo(f"      macro-F1 {full_report['macro_f1']:.4f} in {full_metrics['wall_s']:.0f}s")
    else:
        echo("[4/4] full fine-tuning skipped (--no-full-ft)")

    summary: dict[str, Any] = {
        "queries": snap.searches,
        "distinct_queries": len(snap.counts),
        "train_rows": len(snap.train),
        "test_queries": len(snap.test),
        "labels": len(snap.labels),
        "seed": opts.seed,
        "epochs": opts.epochs,
        "encoder": "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(base_dir),
        "device": lora_metrics["device"],
        "samples_per_s": lora_metrics["samples_per_s"],
        "wall_s": lora_metrics["wall_s"],
        "trainable_params_pct": lora_metrics["trainable_params_pct"],
        **_headline("lora", lora_report),
        "full_ft_wall_s": full_metrics.get("wall_s"),
        "full_ft_samples_per_s": full_metrics.get("samples_per_s"),
        **(_headline("full_ft", full_report) if full_report is not None else _nulls("full_ft")),
        "tfidf_wall_s": tfidf.metrics["wall_s"],
        **_headline("tfidf", tfidf_report),
        "lora_vs_tfidf": paired,
        "test_slices": {name: lora_report["slices"][name]["n"] for name in ("head", "torso", "tail")},
        "slice_definition": bounds.describe(),
        "total_wall_s": round(time.monotonic() - started, 1),
    }
    return summary


def _lora_vs_tfidf(truth: list[str], lora: list[str], tfidf: list[str], rows: list[int]) -> dict[str, Any]:
    """McNemar on the same held-out queries (``rows``), renamed for the result line."""
    from trainer.evaluation import paired_comparison

    out = paired_comparison(truth, [lora[i] for i in rows], [tfidf[i] for i in rows])
    return {
        "n": out["n"],
        "lora_errors": out["a_errors"],
        "tfidf_errors": out["b_errors"],
        "only_lora_right": out["a_only_right"],
        "only_tfidf_right": out["b_only_right"],
        "mcnemar_p": out["p_value"],
    }


def _nulls(prefix: str) -> dict[str, None]:
    keys = ("macro_f1", "accuracy", "ece", "head_macro_f1", "torso_macro_f1", "tail_macro_f1")
    return {f"{prefix}_{k}": None for k in keys}
