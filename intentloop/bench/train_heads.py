"""`intentloop bench train --dimensions`: one adapter with a head per label dimension against one
single-head adapter per dimension, on the same weak-labelled rows of the realistic simulator.

The traffic is the realistic shop with intent types (buyers, browsers, askers, help-seekers:
``streams.simulator.purposes``), plus, with ``--help-csv``, real customer-service requests replayed
as searches that open help pages (``streams.simulator.help_replay``). The loop's own aggregation
labels every query in both dimensions (``streams.labels_job.label_records`` and
``label_type_records``): its coverage and accuracy against the simulator's truth are the weak-label
figures. Split by query hash (``--test-fraction``): training rows are the weak labels of the
training bucket; test rows are the true labels of the test bucket (category: the shoppers' majority
intent; intent type: their majority type; every held-out replayed request: help).

Three models train on those rows with the product's recipe (``INTENTLOOP_TRAIN__*``, at least
``MIN_STEPS`` steps): the multi-head model (category rows + intent-type rows, one adapter), the
category alone and the intent type alone. Reported per dimension: macro-F1 and accuracy overall and
per slice (frequency and the simulator's query kinds), the multi-head model's difference to the
single-head one, training time of each, serving cost (queries/s of one multi-head pass against the
category's single-head pass and against both single-head models, same batches, same process), and
the help recall on the held-out real requests.
"""

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentloop.bench.train_common import Echo, load_trainer
from intentloop.settings import Settings
from store.dimensions import HELP, INTENT_TYPES
from store.taxonomy import normalise_query
from streams.simulator import SimConfig, simulate
from streams.simulator.help_replay import read_requests, replay_requests
from streams.simulator.labels import catalog_kinds, catalog_labels, intent_type_truth, truth_labels
from streams.weak.records import records_from_events
from streams.weak.settings import LabelSettings
from trainer.dataset import Example, HeadRows
from trainer.split import is_validation


@dataclass(frozen=True)
class HeadsBenchOptions:
    queries: int = 20_000
    seed: int = 17
    epochs: int = 6  # the CLI passes INTENTLOOP_TRAIN__EPOCHS (the product's recipe)
    test_fraction: float = 0.2
    help_csv: Path | None = None
    progress: bool = True
    serve_batches: int = 30  # timed batches of 32 queries per serving measurement


@dataclass(frozen=True)
class _Data:
    cat_train: list[Example]
    type_train: list[Example]
    cat_test: list[tuple[str, str]]
    type_test: list[tuple[str, str]]
    replay_test: list[str]  # held-out real requests (truth: help)
    counts: dict[str, int]
    kinds: dict[str, frozenset[str]]
    weak: dict[str, Any]
    categories: list[str]
    types: list[str]
    searches: int


def run_heads_bench(settings: Settings, opts: HeadsBenchOptions, *, echo: Echo) -> dict[str, Any]:
    """Build the rows, train the three models, score and time them; the summary (a JSON line)."""
    load_trainer()
    from trainer.classifier import resolve_base_dir
    from trainer.evaluation import frequency_slices

    started = time.monotonic()
    base_dir = resolve_base_dir(settings.model.base_dir)
    echo(f"[1/5] simulating {opts.queries} searches with intent types (seed {opts.seed}), labelling them ...")
    data = _data(settings, opts, echo)
    bounds = frequency_slices(data.counts, settings.train.gate.head_share, settings.train.gate.torso_share)
    recipe = settings.train.model_copy(update={"epochs": opts.epochs})
    fit_args = (base_dir, recipe, settings.model.max_length, opts.progress)
    heads = [HeadRows("intent_type", data.types, data.type_train, [])]
    echo(f"[2/5] multi-head: {len(data.cat_train)} category + {len(data.type_train)} intent-type rows ...")
    multi = _fit(data.cat_train, data.categories, *fit_args, heads=heads)
    echo("[3/5] category alone ...")
    cat_only = _fit(data.cat_train, data.categories, *fit_args)
    echo("[4/5] intent type alone ...")
    type_only = _fit(data.type_train, data.types, *fit_args)
    echo("[5/5] scoring and timing ...")
    scores = _scores(data, bounds, multi, cat_only, type_only)
    serving = _serving_cost(data, multi, cat_only, type_only, opts.serve_batches)
    return {
        "queries": data.searches,
        "seed": opts.seed,
        "epochs": opts.epochs,
        "epochs_run": {
            "multi_head": multi.metrics["epochs_run"],
            "category_only": cat_only.metrics["epochs_run"],
            "intent_type_only": type_only.metrics["epochs_run"],
        },
        "encoder": "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(base_dir),
        "weak_labels": data.weak,
        **scores,
        "train_wall_s": {
            "multi_head": multi.metrics["wall_s"],
            "category_only": cat_only.metrics["wall_s"],
            "intent_type_only": type_only.metrics["wall_s"],
            "single_heads_total": round(cat_only.metrics["wall_s"] + type_only.metrics["wall_s"], 1),
        },
        "serving": serving,
        "slice_definition": bounds.describe(),
        "total_wall_s": round(time.monotonic() - started, 1),
    }


def _data(settings: Settings, opts: HeadsBenchOptions, echo: Echo) -> _Data:
    from streams.labels_job import label_records, label_type_records
    from trainer.snapshot import to_example

    sim = simulate(SimConfig(seed=opts.seed, n_searches=opts.queries))
    tax = settings.taxonomy
    queries, feedback = list(sim.queries), list(sim.feedback)
    replay_test: list[str] = []
    replay_truth: dict[str, str] = {}
    if opts.help_csv is not None:
        requests = read_requests(opts.help_csv)
        held = [r for r in requests if is_validation(r.text, opts.test_fraction)]
        trained = [r for r in requests if not is_validation(r.text, opts.test_fraction)]
        help_ids = [p.product_id for p in sim.catalog if p.kind == "help"]
        span = (sim.queries[-1].timestamp - sim.queries[0].timestamp).total_seconds()
        rq, rf = replay_requests(
            trained, help_ids, start=sim.queries[0].timestamp, span_s=span, seed=opts.seed
        )
        queries, feedback = (
            sorted([*queries, *rq], key=lambda q: q.timestamp),
            sorted([*feedback, *rf], key=lambda f: f.timestamp),
        )
        replay_test = [r.text for r in held]
        replay_truth = {r.text: HELP for r in trained}
        echo(f"      {len(trained)} real requests replayed as help searches, {len(held)} held out")
    records = records_from_events(queries, feedback)
    labels = LabelSettings()
    cats, _ = label_records(records, catalog_labels(sim, tax), {}, labels)
    types, _ = label_type_records(records, catalog_kinds(sim), {}, labels)
    cat_truth = truth_labels(sim, tax)
    type_truth = intent_type_truth(sim) | replay_truth
    frac = opts.test_fraction
    train = settings.train

    def rows(dists: dict[str, Any]) -> list[Example]:
        return [
            to_example(_row(d), train)
            for q, d in sorted(dists.items())
            if not d.abstained and d.label is not None and not is_validation(q, frac)
        ]

    counts = dict(Counter(normalise_query(q.query) for q in queries))
    cat_train, type_train = rows(cats), rows(types)
    return _Data(
        cat_train=cat_train,
        type_train=type_train,
        cat_test=sorted((q, lab) for q, lab in cat_truth.items() if is_validation(q, frac)),
        type_test=sorted((q, lab) for q, lab in type_truth.items() if is_validation(q, frac)),
        replay_test=replay_test,
        counts=counts,
        kinds=dict(sim.kinds),
        weak={"category": _weak(cats, cat_truth), "intent_type": _weak(types, type_truth)},
        categories=sorted({e.label for e in cat_train}),
        types=[t for t in INTENT_TYPES if any(e.label == t for e in type_train)],
        searches=len(queries),
    )


def _row(d: Any) -> Any:
    from store.labels import LabelledQuery

    return LabelledQuery(
        d.norm_text, d.label, d.confidence, d.evidence, 0, d.distribution, d.weight, d.searches
    )


def _weak(dists: dict[str, Any], truth: dict[str, str]) -> dict[str, Any]:
    """Coverage (labelled / distinct queries) and accuracy against the truth, per true label too."""
    labelled = {q: d.label for q, d in dists.items() if not d.abstained and d.label is not None}
    scored = [q for q in labelled if q in truth]
    per_label = {}
    for label in sorted(set(truth.values())):
        mine = [q for q in scored if truth[q] == label]
        of_label = sum(1 for v in truth.values() if v == label)
        per_label[label] = {
            "coverage": round(len(mine) / max(1, of_label), 4),
            "accuracy": round(sum(labelled[q] == label for q in mine) / max(1, len(mine)), 4),
        }
    return {
        "queries": len(dists),
        "labelled": len(labelled),
        "coverage": round(len(labelled) / max(1, len(dists)), 4),
        "accuracy": round(sum(labelled[q] == truth[q] for q in scored) / max(1, len(scored)), 4),
        "per_label": per_label if len(per_label) <= 8 else None,
    }


def _fit(
    train: list[Example],
    labels: list[str],
    base_dir: Path,
    settings: Any,
    max_length: int,
    progress: bool,
    *,
    heads: list[HeadRows] | None = None,
) -> Any:
    from trainer.finetune import fit

    return fit(train, [], labels, base_dir, settings, max_length, progress, heads=heads)


def _loaded(result: Any) -> Any:
    from trainer.classifier import LoadedModel

    device = next(result.model.parameters()).device
    return LoadedModel(result.model, result.tokenizer, {"labels": list(result.model.labels)}, device)


def _scores(data: _Data, bounds: Any, multi: Any, cat_only: Any, type_only: Any) -> dict[str, Any]:
    from trainer.evaluation import evaluate
    from trainer.gate_dimensions import HeadPredictor

    m = _loaded(multi)
    reports = {
        "category": {
            "multi_head": evaluate(m, data.cat_test, data.counts, bounds, data.kinds),
            "single_head": evaluate(_loaded(cat_only), data.cat_test, data.counts, bounds, data.kinds),
        },
        "intent_type": {
            "multi_head": evaluate(
                HeadPredictor(m, "intent_type"), data.type_test, data.counts, bounds, data.kinds
            ),
            "single_head": evaluate(_loaded(type_only), data.type_test, data.counts, bounds, data.kinds),
        },
    }
    out: dict[str, Any] = {}
    for dim, pair in reports.items():
        out[dim] = {
            "test_queries": pair["multi_head"]["n"],
            **{f"{name}_{k}": r[k] for name, r in pair.items() for k in ("macro_f1", "accuracy")},
            "multi_minus_single_macro_f1": round(
                pair["multi_head"]["macro_f1"] - pair["single_head"]["macro_f1"], 4
            ),
            "slices": {
                s: {name: r["slices"][s].get("macro_f1") for name, r in pair.items()}
                | {"n": pair["multi_head"]["slices"][s]["n"]}
                for s in pair["multi_head"]["slices"]
            },
        }
        if dim == "intent_type":
            out[dim]["per_label_f1"] = {
                name: {lab: r["per_class"][lab]["f1"] for lab in r.get("per_class", {})}
                for name, r in pair.items()
            }
    if data.replay_test:
        predicted = {
            "multi_head": HeadPredictor(m, "intent_type"),
            "single_head": _loaded(type_only),
        }
        out["help_replay"] = {"held_out_requests": len(data.replay_test)}
        for name, model in predicted.items():
            probs = model.predict_proba(data.replay_test)
            labels = model.labels
            hits = sum(labels[int(row.argmax())] == HELP for row in probs)
            out["help_replay"][f"{name}_help_recall"] = round(hits / len(data.replay_test), 4)
    return out


def _serving_cost(data: _Data, multi: Any, cat_only: Any, type_only: Any, batches: int) -> dict[str, Any]:
    """Queries/s of one multi-head pass, of the category's single-head pass, and of both single-head
    models in turn (what serving the dimensions as separate adapters costs), interleaved rounds."""
    queries = [q for q, _ in data.cat_test][: 32 * batches] or ["warm up"]
    chunks = [queries[i : i + 32] for i in range(0, len(queries), 32)]
    m, c, t = _loaded(multi), _loaded(cat_only), _loaded(type_only)
    calls = {
        "multi_head": lambda b: m.predict_heads(b),
        "category_single_head": lambda b: c.predict_proba(b),
        "two_single_heads": lambda b: (c.predict_proba(b), t.predict_proba(b)),
    }
    for call in calls.values():  # warm-up
        call(chunks[0])
    spent = dict.fromkeys(calls, 0.0)
    for _ in range(3):
        for name, call in calls.items():
            t0 = time.perf_counter()
            for chunk in chunks:
                call(chunk)
            spent[name] += time.perf_counter() - t0
    n = 3 * len(queries)
    qps = {name: round(n / s, 1) for name, s in spent.items()}
    return {
        "qps": qps,
        "multi_vs_single_head": round(qps["multi_head"] / qps["category_single_head"], 3),
        "multi_vs_two_single_heads": round(qps["multi_head"] / qps["two_single_heads"], 3),
        "batch": 32,
        "queries": len(queries),
    }
