"""The dataset a refresh trains on: fresh labels + a replay of older ones + gold, split by query.

Why this shape:

- **Fresh window.** What changed since the champion was trained: queries whose label evidence is
  newer than the end of the champion's own window (``window.end`` of its run's snapshot). Without a
  recorded champion window (first run, or a champion trained elsewhere) every label is fresh.
- **Replay.** A refresh that saw only fresh labels would forget the rest (catastrophic forgetting,
  worst when warm-starting from the champion). So a sample of the older labels is replayed:
  ``max(replay_min, replay_ratio x fresh)`` of them (all of them when there are fewer). The sample
  favours **tail** queries (``replay_tail_boost`` times likelier: weighted sampling without
  replacement, seeded): the head is re-searched — hence fresh — every day anyway, while tail queries
  rarely come back and are the first to be forgotten.
- **Gold, by declared purpose.** ``eval`` gold (the default of ``labels gold load``) is never
  trained on: its queries are kept out of the training and the validation rows (epochs are not
  picked on them either); the gate scores them. ``train`` gold is a training row (hard label, of
  the weight stored with it: 1 for files, the reviewers' agreement share for reviewed labels)
  overriding the weak label of its query, held out like any query when it falls in the validation
  bucket.
- **Targets and weights** as ``train.targets`` / ``train.example_weight`` say (:func:`to_example`):
  by default the top label as a hard target, weighted by how far the query's own evidence rather
  than the prior decides it.
- **Labels too rare to learn** (fewer than ``min_examples_per_label`` training rows) are left out of
  the run with their rows, and say so; the run itself refuses too small a training set.
- **Deduplicated, split by query.** One row per normalised query; :mod:`trainer.split` hashes the
  query, so a validation query is never trained on, in this refresh or any other. The validation
  split is *every* labelled validation-bucket query (not a sample): it is what early stopping (gold
  rows first) and the gate score on.

- **Other label dimensions** (the intent type) train as extra heads on their own rows
  (:class:`~trainer.dataset.HeadRows`): every query the latest aggregation labelled in that
  dimension, split by the same query hash, its eval gold kept out and its train gold in. No fresh
  window or replay there: intent-type rows are few and change slowly, so all of them train.

Class imbalance is handled in the loss (``trainer.batches.sample_weights``: inverse square root of the
class frequency), not by resampling, so the recorded rows are exactly what was trained on.
The summary (window, counts by source, a content hash of the rows, the parameters that chose them)
is recorded with the run, and the rows themselves are written to the run directory so a run can be
resumed or reproduced on exactly the same data.
"""

import hashlib
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from store.db import Database
from store.dimensions import CATEGORY
from store.evaluations import query_frequencies
from store.labels import (
    GoldByPurpose,
    LabelledQuery,
    distribution_snapshot,
    gold_by_purpose,
    label_last_seen,
    labelled_distribution_count,
    weak_label_snapshot,
)
from trainer.dataset import Example, HeadRows
from trainer.evaluation import frequency_slices
from trainer.exceptions import NotEnoughDataError, TrainerError
from trainer.settings import TrainSettings
from trainer.split import is_validation

log = logging.getLogger(__name__)

# Where a snapshot's labels came from (recorded with the run and its adapter).
FROM_DISTRIBUTIONS = "label_distributions"
FROM_WEAK_LABELS = "weak_labels"
ROWS_FILE = "snapshot.jsonl"


def snapshot_examples(db: Database, train: TrainSettings) -> tuple[list[LabelledQuery], str]:
    """Every labelled query training may use (the pool the snapshot is drawn from), and its source.

    The aggregated labels (``intentloop labels aggregate``: a label distribution per query with the
    evidence behind it, abstentions left out) when an aggregation labelled any query; otherwise the
    raw running vote ingestion keeps (filtered by ``min_votes`` / ``min_confidence``), so that
    training works before the first aggregation too.
    """
    with db.session() as session:
        if labelled_distribution_count(session) > 0:
            source = FROM_DISTRIBUTIONS
            rows = distribution_snapshot(session)
        else:
            source = FROM_WEAK_LABELS
            rows = weak_label_snapshot(
                session, min_votes=train.min_votes, min_confidence=train.min_confidence
            )
    if train.max_examples is not None:
        rows = rows[: train.max_examples]
    return rows, source


def to_example(row: LabelledQuery, train: TrainSettings | None = None) -> Example:
    """A weak row as a training example: its loss weight and target as ``train`` asks.

    Weight: ``evidence`` is the label policy's own (how far the query's evidence rather than the
    prior decides its label; 1.0 for raw votes), ``confidence`` the top label's probability,
    ``uniform`` 1. Target: the label distribution under ``soft`` when the row has one.
    """
    how = train.example_weight if train is not None else "confidence"
    weight = {"evidence": row.weight, "confidence": row.confidence, "uniform": 1.0}[how]
    target = None
    if train is not None and train.targets == "soft" and row.distribution:
        target = tuple(sorted((k, round(float(v), 6)) for k, v in row.distribution.items()))
    return Example(text=row.norm_text, label=row.label, weight=weight, target=target)


def to_examples(rows: list[LabelledQuery], train: TrainSettings | None = None) -> list[Example]:
    """Rows as examples (see :func:`to_example`); without settings, confidence-weighted hard labels."""
    return [to_example(r, train) for r in rows]


@dataclass(frozen=True)
class Snapshot:
    """The rows of one training run and what is recorded about them."""

    train: list[Example]
    val: list[Example]
    labels: list[str]
    summary: dict[str, Any]
    heads: dict[str, HeadRows] = field(default_factory=dict)  # other dimensions' rows

    def write(self, path: Path) -> None:
        """One JSON line per row (``split``, ``text``, ``label``, ``weight``, ``gold``, ``target``
        for a soft-target row, and ``dimension`` for a row of an extra head)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        rows = _rows(self.train, self.val, self.heads)
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path, summary: dict[str, Any]) -> "Snapshot":
        """The rows a run recorded, checked against its content hash (refuses edited files)."""
        split: dict[str, tuple[list[Example], list[Example]]] = {CATEGORY: ([], [])}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            target = tuple((str(k), float(v)) for k, v in r["target"]) if r.get("target") else None
            example = Example(r["text"], r["label"], float(r["weight"]), bool(r["gold"]), target)
            train_rows, val_rows = split.setdefault(r.get("dimension", CATEGORY), ([], []))
            (val_rows if r["split"] == "val" else train_rows).append(example)
        train, val = split.pop(CATEGORY)
        recorded = summary.get("heads") or {}
        heads = {
            d: HeadRows(d, list(recorded.get(d, {}).get("labels") or sorted({e.label for e in t})), t, v)
            for d, (t, v) in split.items()
        }
        digest = content_sha256(train, val, heads)
        if digest != summary.get("content_sha256"):
            raise TrainerError(f"{path} does not hash to the run's recorded snapshot: cannot reuse it")
        return cls(train, val, sorted({e.label for e in [*train, *val]}), summary, heads)


def _rows(
    train: list[Example], val: list[Example], heads: Mapping[str, HeadRows] | None = None
) -> list[dict[str, Any]]:
    """The rows as written: the category's as before dimensions existed (no ``dimension`` key, so
    their hash is unchanged), then each extra head's with its ``dimension``."""
    groups = [(None, train, val), *((d, h.train, h.val) for d, h in sorted((heads or {}).items()))]
    out = [
        {"split": split, "text": e.text, "label": e.label, "weight": round(e.weight, 6), "gold": e.gold}
        | ({"target": [list(pair) for pair in e.target]} if e.target else {})
        | ({"dimension": dimension} if dimension else {})
        for dimension, train_rows, val_rows in groups
        for split, examples in (("train", train_rows), ("val", val_rows))
        for e in examples
    ]
    return sorted(out, key=lambda r: (r.get("dimension", ""), r["split"], r["text"]))


def content_sha256(
    train: list[Example], val: list[Example], heads: Mapping[str, HeadRows] | None = None
) -> str:
    """Hash of the exact rows (split, text, label, weight, gold; dimension for extra heads): two
    runs on equal hashes saw equal data."""
    digest = hashlib.sha256()
    for row in _rows(train, val, heads):
        digest.update((json.dumps(row, sort_keys=True) + "\n").encode())
    return digest.hexdigest()


def check_trainable(data: Snapshot, train: TrainSettings) -> None:
    """Refuse, with the numbers and the settings to change, a snapshot too small to learn from: a
    model trained on a handful of rows would still be registered and could be promoted."""
    counts = data.summary.get("counts", {})
    problems = []
    if len(data.train) < train.min_examples:
        problems.append(
            f"{len(data.train)} training rows < INTENTLOOP_TRAIN__MIN_EXAMPLES {train.min_examples}"
        )
    if len(data.labels) < 2:
        problems.append(
            f"{len(data.labels)} label(s) with at least INTENTLOOP_TRAIN__MIN_EXAMPLES_PER_LABEL "
            f"{train.min_examples_per_label} rows ({counts.get('labels_left_out', 0)} rarer left out)"
        )
    if not data.val:
        problems.append("no validation rows (every labelled query fell in the training bucket)")
    if problems:
        raise NotEnoughDataError(
            f"not enough data to train on ({'; '.join(problems)}); snapshot from {data.summary['source']}: "
            f"{data.summary['queries']} labelled queries. Ingest more traffic, run `intentloop labels "
            "aggregate`, or lower the settings named"
        )


def _replay_sample(
    old: list[LabelledQuery], n: int, tail: set[str], boost: float, seed: int
) -> list[LabelledQuery]:
    """``n`` of ``old`` without replacement, tail queries ``boost`` times likelier (Efraimidis-
    Spirakis keys u^(1/w): one seeded pass, the same sample for the same rows and seed)."""
    if n >= len(old):
        return list(old)
    rng = random.Random(seed)
    keyed = []
    for row in sorted(old, key=lambda r: r.norm_text):
        weight = boost if row.norm_text in tail else 1.0
        keyed.append((rng.random() ** (1.0 / weight), row.norm_text, row))
    keyed.sort(key=lambda k: (-k[0], k[1]))
    return [row for _, _, row in keyed[:n]]


def build_snapshot(
    db: Database,
    train: TrainSettings,
    *,
    fresh_since: datetime | None,
    champion: str | None = None,
    dimensions: tuple[str, ...] | list[str] = (CATEGORY,),
) -> Snapshot:
    """Draw this run's rows from the store (see the module docstring). Deterministic for a given
    store state, ``fresh_since`` and settings (the seed drives the replay sample). ``dimensions``
    other than the category get :class:`HeadRows` when the aggregation labelled any query in them."""
    rows, source = snapshot_examples(db, train)
    others = [d for d in dimensions if d != CATEGORY]
    with db.session() as session:
        gold_split = gold_by_purpose(session)
        last_seen = label_last_seen(session, source)
        counts = query_frequencies(session)
    held = _eval_queries(db, others)  # another dimension's eval gold: never trained on either
    heads = {d: h for d in others if (h := head_rows(db, train, d, held | set(gold_split.eval))) is not None}
    pools = _pools([r for r in rows if r.norm_text not in held], gold_split, train.val_fraction)
    drawn = _draw(pools.train_pool, last_seen, counts, fresh_since, train)
    candidates = [
        *(to_example(r, train) for r in [*drawn.fresh, *drawn.replay]),
        *(Example(q, lab, gold_split.weight_of(q), gold=True) for q, lab in pools.gold_train.items()),
    ]
    per_label = Counter(e.label for e in candidates)
    labels = _learnable_labels(per_label, train.min_examples_per_label)
    kept = set(labels)
    train_examples = sorted((e for e in candidates if e.label in kept), key=lambda e: e.text)
    val_examples = sorted((e for e in pools.val.values() if e.label in kept), key=lambda e: e.text)
    newest = max(last_seen.values(), default=None)
    rare = sorted(set(per_label) - kept)
    summary: dict[str, Any] = {
        "source": source,
        "queries": len(rows),  # the pool (the gate compares it with its own rebuild)
        "train": len(train_examples),
        "val": len(val_examples),
        "labels": len(labels),
        "window": {
            "fresh_since": fresh_since.isoformat() if fresh_since else None,
            "end": newest.isoformat() if newest else None,
            "champion": champion,
        },
        "counts": _counts(pools, drawn, per_label, rare, kept),
        "labels_left_out": rare[:50],
        "params": _params(train),
        # kept at top level too: readers of the earlier snapshot shape (drift references) use them
        "min_votes": train.min_votes,
        "min_confidence": train.min_confidence,
        "content_sha256": content_sha256(train_examples, val_examples, heads),
    }
    if heads:
        summary["heads"] = {
            d: {"labels": h.labels, "train": len(h.train), "val": len(h.val)} for d, h in heads.items()
        }
    log.info(
        "snapshot from %s: %d fresh + %d replayed (%d tail) of %d older + %d gold -> %d train, %d val",
        source,
        len(drawn.fresh),
        len(drawn.replay),
        summary["counts"]["replay_tail"],
        len(drawn.old),
        len(pools.gold_train),
        len(train_examples),
        len(val_examples),
    )
    return Snapshot(train_examples, val_examples, labels, summary, heads)


def _eval_queries(db: Database, dimensions: list[str]) -> set[str]:
    """Every query with an eval gold label in any of ``dimensions``: the encoder is shared, so a
    query measured in one dimension is trained on in none."""
    with db.session() as session:
        return {q for d in dimensions for q in gold_by_purpose(session, d).eval}


def head_rows(
    db: Database, train: TrainSettings, dimension: str, held: set[str] | None = None
) -> HeadRows | None:
    """The rows of one extra dimension (see the module docstring); ``None`` when the latest
    aggregation labelled nothing in it (the run then trains without that head and says so).
    ``held``: queries kept out (eval gold of any dimension)."""
    with db.session() as session:
        rows = distribution_snapshot(session, dimension=dimension)
        gold = gold_by_purpose(session, dimension)
    if not rows and not gold.train:
        log.info(
            "no %s labels to train a head on: run `intentloop labels aggregate` with it configured", dimension
        )
        return None
    frac = train.val_fraction
    held = (held or set()) | set(gold.eval)
    weak = {r.norm_text: to_example(r, train) for r in rows if r.norm_text not in held}
    for q, label in gold.train.items():
        weak[q] = Example(q, label, gold.weight_of(q), gold=True)
    per_label = Counter(e.label for q, e in weak.items() if not is_validation(q, frac))
    labels = _learnable_labels(per_label, train.min_examples_per_label)
    kept = [e for _, e in sorted(weak.items()) if e.label in labels]
    return HeadRows(
        dimension,
        labels,
        [e for e in kept if not is_validation(e.text, frac)],
        [e for e in kept if is_validation(e.text, frac)],
    )


@dataclass(frozen=True)
class _Pools:
    """The labelled queries by split bucket, deduplicated, with gold applied."""

    train_pool: list[LabelledQuery]  # weak rows of the training bucket (gold queries left out)
    val_pool: dict[str, LabelledQuery]  # weak rows of the validation bucket (eval gold left out)
    val: dict[str, Example]  # the validation rows: weak, or train gold where a query has it
    gold_train: dict[str, str]  # train gold in the training bucket: training rows
    gold_val: dict[str, str]  # train gold in the validation bucket: validation rows
    gold_eval: dict[str, str]  # eval gold: neither trained on nor validated on
    overrides: int  # gold labels that differ from their query's weak label


def _pools(rows: list[LabelledQuery], gold_split: GoldByPurpose, frac: float) -> _Pools:
    """Split ``rows`` by query bucket and apply gold: eval gold is for measuring only (the gate scores
    it, from the store), so its queries are neither trained on nor used to pick the epoch; train gold
    replaces the weak row of its query."""
    gold_eval, gold_for_training, gold = gold_split.eval, gold_split.train, gold_split.all
    weak = {r.norm_text: r for r in rows}  # dedup by normalised query (the SQL already groups by it)
    val_pool = {q: r for q, r in weak.items() if is_validation(q, frac) and q not in gold_eval}
    train_pool = [r for q, r in weak.items() if not is_validation(q, frac) and q not in gold]
    val = {q: Example(q, r.label, r.confidence) for q, r in val_pool.items()}
    gold_val = {q: lab for q, lab in gold_for_training.items() if is_validation(q, frac)}
    gold_train = {q: lab for q, lab in gold_for_training.items() if not is_validation(q, frac)}
    overrides = sum(1 for q, lab in gold.items() if q in weak and weak[q].label != lab)
    for q, lab in gold_val.items():
        val[q] = Example(q, lab, gold_split.weight_of(q), gold=True)
    return _Pools(train_pool, val_pool, val, gold_train, gold_val, gold_eval, overrides)


@dataclass(frozen=True)
class _Drawn:
    """The training pool split at the fresh window, and the replayed sample of the older rows."""

    fresh: list[LabelledQuery]
    old: list[LabelledQuery]
    replay: list[LabelledQuery]
    tail: set[str]  # older queries in the tail slice (favoured by the replay)


def _draw(
    train_pool: list[LabelledQuery],
    last_seen: Mapping[str, datetime],
    counts: Mapping[str, int],
    fresh_since: datetime | None,
    train: TrainSettings,
) -> _Drawn:
    """Fresh rows (label evidence newer than ``fresh_since``; all of them without it) and a
    tail-favouring replay of ``max(replay_min, replay_ratio x fresh)`` older ones."""
    if fresh_since is None:
        fresh, old = list(train_pool), []
    else:
        fresh = [r for r in train_pool if (ts := last_seen.get(r.norm_text)) is None or ts > fresh_since]
        old = [r for r in train_pool if (ts := last_seen.get(r.norm_text)) is not None and ts <= fresh_since]
    bounds = frequency_slices(counts, train.gate.head_share, train.gate.torso_share)
    tail = {r.norm_text for r in old if bounds.slice_of(counts.get(r.norm_text, 0)) == "tail"}
    want = max(train.replay_min, math.ceil(train.replay_ratio * len(fresh)))
    replay = _replay_sample(old, want, tail, train.replay_tail_boost, train.seed)
    return _Drawn(fresh, old, replay, tail)


def _learnable_labels(per_label: Mapping[str, int], min_rows: int) -> list[str]:
    """The labels with at least ``min_rows`` training rows, sorted; the others are logged."""
    labels = sorted(label for label, n in per_label.items() if n >= min_rows)
    rare = sorted(set(per_label) - set(labels))
    if rare:
        log.warning(
            "%d label(s) with fewer than %d training rows left out of this run (%s%s): "
            "INTENTLOOP_TRAIN__MIN_EXAMPLES_PER_LABEL",
            len(rare),
            min_rows,
            ", ".join(rare[:10]),
            f" and {len(rare) - 10} more" if len(rare) > 10 else "",
        )
    return labels


def _counts(
    pools: _Pools, drawn: _Drawn, per_label: Mapping[str, int], rare: list[str], kept: set[str]
) -> dict[str, int]:
    """How many rows each source and each rule contributed or left out (recorded with the run)."""
    return {
        "pool_train": len(pools.train_pool),
        "pool_val": len(pools.val_pool),
        "fresh": len(drawn.fresh),
        "older": len(drawn.old),
        "replay": len(drawn.replay),
        "replay_tail": sum(1 for r in drawn.replay if r.norm_text in drawn.tail),
        "older_tail": len(drawn.tail),
        "gold_train": len(pools.gold_train),
        "gold_val": len(pools.gold_val),
        "gold_overrides": pools.overrides,
        "gold_eval": len(pools.gold_eval),
        "labels_left_out": len(rare),
        "rows_left_out": sum(per_label[label] for label in rare),
        "val_rows_left_out": sum(1 for e in pools.val.values() if e.label not in kept),
    }


def _params(train: TrainSettings) -> dict[str, Any]:
    """The settings that chose the rows (recorded with the run)."""
    return {
        "min_votes": train.min_votes,
        "min_confidence": train.min_confidence,
        "val_fraction": train.val_fraction,
        "max_examples": train.max_examples,
        "replay_ratio": train.replay_ratio,
        "replay_min": train.replay_min,
        "replay_tail_boost": train.replay_tail_boost,
        "targets": train.targets,
        "example_weight": train.example_weight,
        "min_examples_per_label": train.min_examples_per_label,
        "seed": train.seed,
    }
