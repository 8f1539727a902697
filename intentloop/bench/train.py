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

Every model trains on the same training rows for the same ``--epochs`` (the configured
``INTENTLOOP_TRAIN__EPOCHS`` by default, raised to reach ``INTENTLOOP_TRAIN__MIN_STEPS`` optimizer
steps: ``epochs_run``) with no validation-based selection: LoRA with the configured encoder
(all-MiniLM-L6-v2 unless ``INTENTLOOP_MODEL__BASE_DIR``) and ``INTENTLOOP_TRAIN__*``
hyper-parameters, full fine-tuning of the same encoder at
``INTENTLOOP_TRAIN__GATE__FULL_FT_LEARNING_RATE``, and the TF-IDF + logistic regression baseline.
Full fine-tuning is the slowest phase (about 17 minutes at six epochs here): ``--full-ft`` adds it,
otherwise its figures are nulls. Needs no servers.
"""

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intentloop.bench.train_common import Echo, Scored, TrainBenchOptions, headline, load_trainer, nulls
from intentloop.settings import Settings
from store.settings import TaxonomySettings
from store.taxonomy import label_for_category, normalise_query
from streams.simulator import SimConfig, simulate
from trainer.dataset import Example
from trainer.settings import TrainSettings
from trainer.split import is_validation

if TYPE_CHECKING:
    from trainer.evaluation import FrequencySlices


@dataclass(frozen=True)
class Snapshot:
    """The benchmark's fixed data: training rows, held-out (query, label) rows and traffic counts."""

    train: list[Example]
    test: list[tuple[str, str]]
    counts: dict[str, int]
    labels: list[str]
    searches: int
    kinds: dict[str, frozenset[str]]  # normalised query -> the simulator's kinds of it


def build_snapshot(
    queries: int, seed: int, test_fraction: float, taxonomy: TaxonomySettings, *, shoppers: str = "realistic"
) -> Snapshot:
    """``queries`` simulated searches labelled with their shoppers' true intents, split by query
    (texts with a phrasing held out of the simulator's vocabulary are always test)."""
    config = SimConfig(seed=seed, n_searches=queries)
    sim = simulate(config if shoppers == "realistic" else config.model_copy(update={"realism": None}))
    unseen = sim.tagged("unseen_phrasing")
    rows: list[tuple[str, str]] = []
    for q in sim.queries:
        label = label_for_category(sim.intents[q.query_id], taxonomy)
        if label is not None:
            rows.append((normalise_query(q.query), label))
    counts = dict(Counter(text for text, _ in rows))

    def held_out(text: str) -> bool:
        return is_validation(text, test_fraction) or text in unseen

    train = [Example(text, label) for text, label in rows if not held_out(text)]
    test = []
    for text in sorted(counts):
        if held_out(text):
            label = label_for_category(sim.truth[text], taxonomy)
            if label is not None:
                test.append((text, label))
    labels = sorted({label for _, label in rows})
    return Snapshot(train, test, counts, labels, len(rows), sim.kinds)


def run_train_bench(settings: Settings, opts: TrainBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Build the snapshot, train and score the three models; returns the summary (printed as JSON)."""
    if opts.labels == "weak":
        from intentloop.bench.train_weak import run_weak_train_bench

        return run_weak_train_bench(settings, opts, echo=echo)
    load_trainer()
    from trainer.classifier import resolve_base_dir
    from trainer.evaluation import frequency_slices

    started = time.monotonic()
    base_dir = resolve_base_dir(settings.model.base_dir)
    max_length = settings.model.max_length
    train_settings = settings.train.model_copy(update={"epochs": opts.epochs})
    gate = train_settings.gate

    echo(f"[1/4] simulating {opts.queries} labelled searches (seed {opts.seed}) ...")
    snap = build_snapshot(
        opts.queries, opts.seed, opts.test_fraction, settings.taxonomy, shoppers=opts.shoppers
    )
    bounds = frequency_slices(snap.counts, gate.head_share, gate.torso_share)
    echo(
        f"      {snap.searches} searches, {len(snap.counts)} distinct queries, {len(snap.labels)} labels; "
        f"train rows {len(snap.train)}, held-out queries {len(snap.test)}"
    )
    echo(f"[2/4] LoRA on {base_dir}, {opts.epochs} epoch(s) ...")
    lora = _lora(snap, bounds, base_dir, train_settings, max_length, opts.progress, echo)
    echo("[3/4] TF-IDF + logistic regression ...")
    tfidf = _tfidf(snap, bounds, train_settings.seed, echo)
    paired = _paired(snap, bounds, lora.predictions, tfidf.predictions)
    full: Scored | None = None
    if opts.full_ft:
        echo(f"[4/4] full fine-tuning, {opts.epochs} epoch(s) at lr {gate.full_ft_learning_rate} ...")
        full = _full_ft(snap, bounds, base_dir, train_settings, max_length, opts.progress, echo)
    else:
        echo("[4/4] full fine-tuning skipped (--no-full-ft)")
    encoder = "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(base_dir)
    return _summary(opts, snap, bounds, encoder, lora, tfidf, full, paired, started)


def _lora(
    snap: Snapshot,
    bounds: "FrequencySlices",
    base_dir: Path,
    train: TrainSettings,
    max_length: int,
    progress: bool,
    echo: Echo,
) -> Scored:
    """LoRA on the snapshot's training rows, scored and predicting the held-out queries."""
    from trainer.baselines import from_fit
    from trainer.evaluation import evaluate, predict
    from trainer.finetune import fit

    lora_fit = fit(snap.train, [], snap.labels, base_dir, train, max_length, progress=progress)
    lora = from_fit(lora_fit, snap.labels, max_length)
    report = evaluate(lora.predictor, snap.test, snap.counts, bounds, kinds=snap.kinds)
    predictions, _ = predict(lora.predictor, [q for q, _ in snap.test])
    echo(f"      macro-F1 {report['macro_f1']:.4f} in {lora.metrics['wall_s']:.0f}s")
    return Scored(report, lora.metrics, predictions)  # the model is freed before full fine-tuning


def _tfidf(snap: Snapshot, bounds: "FrequencySlices", seed: int, echo: Echo) -> Scored:
    """The TF-IDF + logistic regression baseline, scored and predicting the held-out queries."""
    from trainer.baselines import train_tfidf
    from trainer.evaluation import evaluate, predict

    tfidf = train_tfidf(snap.train, snap.labels, seed=seed)
    report = evaluate(tfidf, snap.test, snap.counts, bounds, kinds=snap.kinds)
    echo(f"      macro-F1 {report['macro_f1']:.4f} in {tfidf.metrics['wall_s']:.0f}s")
    predictions, _ = predict(tfidf, [q for q, _ in snap.test])
    return Scored(report, tfidf.metrics, predictions)


def _full_ft(
    snap: Snapshot,
    bounds: "FrequencySlices",
    base_dir: Path,
    train: TrainSettings,
    max_length: int,
    progress: bool,
    echo: Echo,
) -> Scored:
    """Full fine-tuning of the same encoder, scored (its predictions are not compared)."""
    from trainer.baselines import train_full_finetune
    from trainer.evaluation import evaluate

    full = train_full_finetune(snap.train, [], snap.labels, base_dir, train, max_length, progress=progress)
    report = evaluate(full.predictor, snap.test, snap.counts, bounds, kinds=snap.kinds)
    echo(f"      macro-F1 {report['macro_f1']:.4f} in {full.metrics['wall_s']:.0f}s")
    return Scored(report, full.metrics)


def _paired(
    snap: Snapshot, bounds: "FrequencySlices", lora: list[str], tfidf: list[str]
) -> dict[str, dict[str, Any]]:
    """LoRA against TF-IDF on every held-out query and on the tail ones."""
    test_queries = [q for q, _ in snap.test]
    tail = [i for i, q in enumerate(test_queries) if bounds.slice_of(snap.counts.get(q, 0)) == "tail"]
    truth = [label for _, label in snap.test]
    return {
        name: _lora_vs_tfidf([truth[i] for i in rows], lora, tfidf, rows)
        for name, rows in (("all", list(range(len(truth)))), ("tail", tail))
    }


def _summary(
    opts: TrainBenchOptions,
    snap: Snapshot,
    bounds: "FrequencySlices",
    encoder: str,
    lora: Scored,
    tfidf: Scored,
    full: Scored | None,
    paired: dict[str, dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    """The result line; ``total_wall_s`` is read last, as the clock's stop."""
    return {
        "queries": snap.searches,
        "distinct_queries": len(snap.counts),
        "train_rows": len(snap.train),
        "test_queries": len(snap.test),
        "labels": len(snap.labels),
        "seed": opts.seed,
        "epochs": opts.epochs,
        "epochs_run": lora.metrics.get("epochs_run"),  # more than --epochs when min_steps asked
        "encoder": encoder,
        "device": lora.metrics["device"],
        "samples_per_s": lora.metrics["samples_per_s"],
        "wall_s": lora.metrics["wall_s"],
        "trainable_params_pct": lora.metrics["trainable_params_pct"],
        **headline("lora", lora.report),
        "full_ft_wall_s": full.metrics.get("wall_s") if full is not None else None,
        "full_ft_samples_per_s": full.metrics.get("samples_per_s") if full is not None else None,
        **(headline("full_ft", full.report) if full is not None else nulls("full_ft")),
        "tfidf_wall_s": tfidf.metrics["wall_s"],
        **headline("tfidf", tfidf.report),
        "lora_vs_tfidf": paired,
        "test_slices": {name: lora.report["slices"][name]["n"] for name in ("head", "torso", "tail")},
        "slice_definition": bounds.describe(),
        "total_wall_s": round(time.monotonic() - started, 1),
    }


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
