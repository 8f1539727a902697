"""`intentloop bench text`: the training recipe's defaults on real labelled text a user brings as a CSV.

The simulator's shoppers are ours; a recipe default (epochs, typo augmentation, LoRA against TF-IDF)
that only wins on them proves little. This runner takes any CSV with a text and a label column
(first: Bitext's customer-support utterances) and trains every model on the same rows:

- **held out by text**: a row is test when its normalised text hashes into the test bucket
  (``trainer.split.is_validation`` at ``--test-fraction``), so no test text is ever trained on;
- **few-shot**: from the rest, at most ``--train-per-label`` rows per label (shuffled per label with
  ``random.Random(seed)``): the long-tail regime, where a pretrained encoder must earn its keep;
- **slices** (``--slice tags=Z:typo``: rows whose ``tags`` contain ``Z``) are never trained on, only
  scored: typo'd or colloquial utterances are seen first at test time, as a new phrasing would be.

Models: TF-IDF + logistic regression (``tfidf``), LoRA on the configured encoder and
``INTENTLOOP_TRAIN__*`` recipe (``lora``), and the same without misspelt training copies
(``lora_no_aug``, unless ``augment_typos`` is already 0). Each is scored (macro-F1, accuracy)
overall, per slice and on the rows no slice matched (``clean``); McNemar's exact test compares
LoRA with TF-IDF and with ``lora_no_aug`` on each of those parts. Needs no servers.
"""

import csv
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentloop.bench.train_common import Echo, load_trainer
from intentloop.settings import Settings
from store.exceptions import IntentloopError
from store.taxonomy import normalise_query
from trainer.dataset import Example
from trainer.settings import TrainSettings
from trainer.split import is_validation

RESERVED_PARTS = ("all", "clean")  # score parts every run reports; a slice may not take these names


class TextCsvError(IntentloopError):
    """The CSV cannot be benchmarked as asked (a column missing, too few labels); the message says why."""


@dataclass(frozen=True)
class Slice:
    """Rows whose ``column`` contains ``value`` (a substring: one letter of Bitext's ``tags``)."""

    name: str
    column: str
    value: str


def parse_slice(spec: str) -> Slice:
    """``COLUMN=VALUE:NAME`` (``tags=Z:typo``) as a :class:`Slice`."""
    column, eq, rest = spec.partition("=")
    value, colon, name = rest.rpartition(":")
    if not (eq and colon and column and value and name):
        raise TextCsvError(f"{spec!r}: expected COLUMN=VALUE:NAME, e.g. tags=Z:typo")
    if name in RESERVED_PARTS:
        raise TextCsvError(f"{spec!r}: the slice name {name!r} is reserved ({', '.join(RESERVED_PARTS)})")
    return Slice(name, column, value)


@dataclass(frozen=True)
class TextRow:
    """One labelled utterance, normalised, with the names of the slices that matched it."""

    text: str
    label: str
    slices: frozenset[str] = frozenset()


def read_rows(path: Path, text_column: str, label_column: str, slices: tuple[Slice, ...]) -> list[TextRow]:
    """The CSV's rows with a non-empty normalised text and label (others are dropped), in file order."""
    if len({s.name for s in slices}) != len(slices):
        raise TextCsvError("two --slice options share a name")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        wanted = dict.fromkeys((text_column, label_column, *(s.column for s in slices)))
        missing = [c for c in wanted if c not in header]
        if missing:
            raise TextCsvError(
                f"{path} has no column {', '.join(missing)} (its columns: {', '.join(header)})"
            )
        rows = []
        for record in reader:
            text = normalise_query(record.get(text_column) or "")
            label = (record.get(label_column) or "").strip()
            if text and label:
                matched = frozenset(s.name for s in slices if s.value in (record.get(s.column) or ""))
                rows.append(TextRow(text, label, matched))
    if len({r.label for r in rows}) < 2:
        raise TextCsvError(f"{path}: column {label_column} needs at least 2 distinct labels")
    return rows


@dataclass(frozen=True)
class TextSplit:
    """Training rows, test rows and the label set every model predicts over."""

    train: list[Example]
    test: list[TextRow]
    labels: list[str]
    pool: int  # rows outside the test bucket that no slice matched: the few-shot sample's source
    excluded: int  # rows outside the test bucket left out of training because a slice matched them


def split_rows(rows: list[TextRow], test_fraction: float, per_label: int, seed: int) -> TextSplit:
    """Test rows by text hash; at most ``per_label`` training rows per label from the rest, sliced
    rows excluded (see the module docstring). Same rows and seed, same split."""
    test: list[TextRow] = []
    rest: list[TextRow] = []
    for r in rows:
        (test if is_validation(r.text, test_fraction) else rest).append(r)
    by_label: dict[str, list[TextRow]] = defaultdict(list)
    for r in rest:
        if not r.slices:
            by_label[r.label].append(r)
    rng = random.Random(seed)
    train: list[Example] = []
    for label in sorted(by_label):  # one generator, labels in a fixed order: the draw is reproducible
        candidates = list(by_label[label])
        rng.shuffle(candidates)
        train.extend(Example(r.text, r.label) for r in candidates[:per_label])
    pool = sum(len(v) for v in by_label.values())
    return TextSplit(train, test, sorted({r.label for r in rows}), pool, len(rest) - pool)


def parts_of(test: list[TextRow], slices: tuple[Slice, ...]) -> dict[str, list[int]]:
    """Indices of the test rows each score covers: all, each slice, and the rows no slice matched."""
    parts = {"all": list(range(len(test)))}
    for s in slices:
        parts[s.name] = [i for i, r in enumerate(test) if s.name in r.slices]
    parts["clean"] = [i for i, r in enumerate(test) if not r.slices]
    return parts


def scores(
    truth: list[str], predicted: list[str], parts: dict[str, list[int]]
) -> dict[str, dict[str, float]]:
    """Macro-F1 and accuracy of ``predicted`` on each part (``trainer.metrics``: one definition)."""
    from trainer.metrics import accuracy, macro_f1

    out = {}
    for name, idx in parts.items():
        t, p = [truth[i] for i in idx], [predicted[i] for i in idx]
        out[name] = {"macro_f1": round(macro_f1(t, p), 6), "accuracy": round(accuracy(t, p), 6)}
    return out


def paired(
    truth: list[str], predictions: dict[str, list[str]], a: str, b: str, parts: dict[str, list[int]]
) -> dict[str, Any]:
    """McNemar's exact test of model ``a`` against ``b`` on each part's rows."""
    from trainer.evaluation import paired_comparison

    out = {}
    for name, idx in parts.items():
        pa, pb = predictions[a], predictions[b]
        r = paired_comparison([truth[i] for i in idx], [pa[i] for i in idx], [pb[i] for i in idx])
        errors = {f"{a}_errors": r["a_errors"], f"{b}_errors": r["b_errors"]}
        out[name] = {"n": r["n"], **errors, "mcnemar_p": r["p_value"]}
    return out


@dataclass(frozen=True)
class TextBenchOptions:
    """What ``bench text`` varies besides the CSV (see the CLI's options)."""

    slices: tuple[Slice, ...] = ()
    train_per_label: int = 20
    test_fraction: float = 0.3
    seed: int = 17
    epochs: int | None = None  # None: the configured TrainSettings.epochs
    progress: bool = True


def run_text_bench(
    settings: Settings, rows: list[TextRow], opts: TextBenchOptions, *, echo: Echo
) -> dict[str, Any]:
    """Split ``rows``, train and score the models; returns the summary (printed as JSON)."""
    load_trainer()
    from trainer.baselines import train_tfidf
    from trainer.evaluation import predict

    started = time.monotonic()
    split = split_rows(rows, opts.test_fraction, opts.train_per_label, opts.seed)
    if len({e.label for e in split.train}) < 2:
        raise TextCsvError("fewer than 2 labels left to train on: lower --test-fraction or drop a --slice")
    train = settings.train.model_copy(update={"epochs": opts.epochs or settings.train.epochs})
    variants = {"lora": train}
    if train.augment_typos > 0:
        variants["lora_no_aug"] = train.model_copy(update={"augment_typos": 0.0})
    encoder = "all-MiniLM-L6-v2" if settings.model.base_dir is None else str(settings.model.base_dir)
    texts, truth, steps = [r.text for r in split.test], [r.label for r in split.test], 1 + len(variants)
    echo(
        f"[1/{steps}] {len(rows)} rows, {len(split.labels)} labels: {len(split.train)} train rows (of "
        f"{split.pool}; {split.excluded} sliced rows kept out), {len(texts)} test rows; TF-IDF ..."
    )
    tfidf = train_tfidf(split.train, split.labels, seed=opts.seed)
    predictions, metrics = {"tfidf": predict(tfidf, texts)[0]}, {"tfidf": tfidf.metrics}
    for i, (name, variant) in enumerate(variants.items(), start=2):
        echo(f"[{i}/{steps}] {name}: LoRA on {encoder}, {variant.epochs} epoch(s) ...")
        predictions[name], metrics[name] = _lora(settings, split, texts, variant, opts.progress)
    parts = parts_of(split.test, opts.slices)
    scored = {name: scores(truth, pred, parts) for name, pred in predictions.items()}
    echo("      macro-F1: " + ", ".join(f"{n} {s['all']['macro_f1']:.4f}" for n, s in scored.items()))
    return {
        "rows": len(rows),
        "labels": len(split.labels),
        "train_rows": len(split.train),
        "train_per_label": opts.train_per_label,
        "pool_rows": split.pool,
        "sliced_rows_kept_out": split.excluded,
        "test_rows": {name: len(idx) for name, idx in parts.items()},
        "slices": {s.name: f"{s.column} contains {s.value}" for s in opts.slices},
        "seed": opts.seed,
        "train_seed": train.seed,
        "epochs": train.epochs,
        "augment_typos": train.augment_typos,
        "encoder": encoder,
        "device": metrics["lora"].get("device"),
        "wall_s": {name: m.get("wall_s") for name, m in metrics.items()},
        "typo_copies": {name: metrics[name].get("typo_copies") for name in variants},
        "epochs_run": {name: metrics[name].get("epochs_run") for name in variants},  # min_steps
        "scores": scored,
        **{f"lora_vs_{b}": paired(truth, predictions, "lora", b, parts) for b in predictions if b != "lora"},
        "total_wall_s": round(time.monotonic() - started, 1),
    }


def _lora(
    settings: Settings, split: TextSplit, texts: list[str], train: TrainSettings, progress: bool
) -> tuple[list[str], dict[str, Any]]:
    """One LoRA model on the training rows, built as ``train_weak`` builds it: its predictions on
    ``texts`` and its training metrics (the model is freed on return: one encoder in memory at a time)."""
    from trainer.baselines import from_fit
    from trainer.classifier import resolve_base_dir
    from trainer.evaluation import predict
    from trainer.finetune import fit
    from trainer.inputs import resolve_input_format

    base_dir, max_length = resolve_base_dir(settings.model.base_dir), settings.model.max_length
    fmt = resolve_input_format(settings.model, base_dir)
    result = fit(
        split.train, [], split.labels, base_dir, train, max_length, progress=progress, input_format=fmt
    )
    model = from_fit(result, split.labels, max_length)
    return predict(model.predictor, texts)[0], model.metrics
