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
- **Gold.** Human labels always go in, override the weak label of the same query, and weigh 1
  (weak rows weigh their confidence).
- **Deduplicated, split by query.** One row per normalised query; :mod:`trainer.split` hashes the
  query, so a validation query is never trained on, in this refresh or any other. The validation
  split is *every* labelled validation-bucket query (not a sample): it is what early stopping (gold
  rows first) and the gate score on.

Class imbalance is handled in the loss (``finetune._sample_weights``: inverse square root of the
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from store.db import Database
from store.evaluations import query_frequencies
from store.labels import (
    LabelledQuery,
    distribution_snapshot,
    gold_labels,
    label_last_seen,
    labelled_distribution_count,
    weak_label_snapshot,
)
from trainer.dataset import Example
from trainer.evaluation import frequency_slices
from trainer.exceptions import TrainerError
from trainer.settings import TrainSettings
from trainer.split import is_validation

log = logging.getLogger(__name__)

# Where a snapshot's labels came from (recorded with the run and its adapter).
FROM_DISTRIBUTIONS = "label_distributions"
FROM_WEAK_LABELS = "weak_labels"
ROWS_FILE = "snapshot.jsonl"


def snapshot_examples(db: Database, train: TrainSettings) -> tuple[list[LabelledQuery], str]:
    """Every labelled query training may use (the pool the snapshot is drawn from), and its source.

    The aggregated labels (``intentloop labels aggregate``: position-debiased, time-decayed, with
    negative evidence and abstention) when an aggregation labelled any query; otherwise the raw
    running vote ingestion keeps, so that training works before the first aggregation too. The
    aggregation applied its own evidence bar, so only ``min_confidence`` filters its rows here.
    """
    with db.session() as session:
        if labelled_distribution_count(session) > 0:
            source = FROM_DISTRIBUTIONS
            rows = distribution_snapshot(session, min_confidence=train.min_confidence)
        else:
            source = FROM_WEAK_LABELS
            rows = weak_label_snapshot(
                session, min_votes=train.min_votes, min_confidence=train.min_confidence
            )
    if train.max_examples is not None:
        rows = rows[: train.max_examples]
    return rows, source


def to_examples(rows: list[LabelledQuery]) -> list[Example]:
    """Confidence becomes the per-example loss weight: unsure labels teach less."""
    return [Example(text=r.norm_text, label=r.label, weight=r.confidence) for r in rows]


@dataclass(frozen=True)
class Snapshot:
    """The rows of one training run and what is recorded about them."""

    train: list[Example]
    val: list[Example]
    labels: list[str]
    summary: dict[str, Any]

    def write(self, path: Path) -> None:
        """One JSON line per row (``split``, ``text``, ``label``, ``weight``, ``gold``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in _rows(self.train, self.val)))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path, summary: dict[str, Any]) -> "Snapshot":
        """The rows a run recorded, checked against its content hash (refuses edited files)."""
        train: list[Example] = []
        val: list[Example] = []
        for line in path.read_text().splitlines():
            r = json.loads(line)
            example = Example(r["text"], r["label"], float(r["weight"]), bool(r["gold"]))
            (val if r["split"] == "val" else train).append(example)
        digest = content_sha256(train, val)
        if digest != summary.get("content_sha256"):
            raise TrainerError(f"{path} does not hash to the run's recorded snapshot: cannot reuse it")
        return cls(train, val, sorted({e.label for e in [*train, *val]}), summary)


def _rows(train: list[Example], val: list[Example]) -> list[dict[str, Any]]:
    out = [
        {"split": split, "text": e.text, "label": e.label, "weight": round(e.weight, 6), "gold": e.gold}
        for split, examples in (("train", train), ("val", val))
        for e in examples
    ]
    return sorted(out, key=lambda r: (r["split"], r["text"]))


def content_sha256(train: list[Example], val: list[Example]) -> str:
    """Hash of the exact rows (split, text, label, weight, gold): two runs on equal hashes saw equal data."""
    digest = hashlib.sha256()
    for row in _rows(train, val):
        digest.update((json.dumps(row, sort_keys=True) + "\n").encode())
    return digest.hexdigest()


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
) -> Snapshot:
    """Draw this run's rows from the store (see the module docstring). Deterministic for a given
    store state, ``fresh_since`` and settings (the seed drives the replay sample)."""
    rows, source = snapshot_examples(db, train)
    with db.session() as session:
        gold = {g.norm_text: g.label for g in gold_labels(session)}
        last_seen = label_last_seen(session, source)
        counts = query_frequencies(session)
    weak = {r.norm_text: r for r in rows}  # dedup by normalised query (the SQL already groups by it)
    frac = train.val_fraction
    val_pool = {q: r for q, r in weak.items() if is_validation(q, frac)}
    train_pool = [r for q, r in weak.items() if not is_validation(q, frac) and q not in gold]

    val = {q: Example(q, r.label, r.confidence) for q, r in val_pool.items()}
    gold_val = {q: lab for q, lab in gold.items() if is_validation(q, frac)}
    gold_train = {q: lab for q, lab in gold.items() if not is_validation(q, frac)}
    overrides = sum(1 for q, lab in gold.items() if q in weak and weak[q].label != lab)
    for q, lab in gold_val.items():
        val[q] = Example(q, lab, 1.0, gold=True)

    newest = max(last_seen.values(), default=None)
    if fresh_since is None:
        fresh, old = list(train_pool), []
    else:
        fresh = [r for r in train_pool if (ts := last_seen.get(r.norm_text)) is None or ts > fresh_since]
        old = [r for r in train_pool if (ts := last_seen.get(r.norm_text)) is not None and ts <= fresh_since]
    bounds = frequency_slices(counts, train.gate.head_share, train.gate.torso_share)
    tail = {r.norm_text for r in old if bounds.slice_of(counts.get(r.norm_text, 0)) == "tail"}
    want = max(train.replay_min, math.ceil(train.replay_ratio * len(fresh)))
    replay = _replay_sample(old, want, tail, train.replay_tail_boost, train.seed)
    train_examples = sorted(
        [
            *(Example(r.norm_text, r.label, r.confidence) for r in [*fresh, *replay]),
            *(Example(q, lab, 1.0, gold=True) for q, lab in gold_train.items()),
        ],
        key=lambda e: e.text,
    )
    val_examples = sorted(val.values(), key=lambda e: e.text)
    labels = sorted({e.label for e in [*train_examples, *val_examples]})
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
        "counts": {
            "pool_train": len(train_pool),
            "pool_val": len(val_pool),
            "fresh": len(fresh),
            "older": len(old),
            "replay": len(replay),
            "replay_tail": sum(1 for r in replay if r.norm_text in tail),
            "older_tail": len(tail),
            "gold_train": len(gold_train),
            "gold_val": len(gold_val),
            "gold_overrides": overrides,
        },
        "params": {
            "min_votes": train.min_votes,
            "min_confidence": train.min_confidence,
            "val_fraction": frac,
            "max_examples": train.max_examples,
            "replay_ratio": train.replay_ratio,
            "replay_min": train.replay_min,
            "replay_tail_boost": train.replay_tail_boost,
            "seed": train.seed,
        },
        # kept at top level too: readers of the earlier snapshot shape (drift references) use them
        "min_votes": train.min_votes,
        "min_confidence": train.min_confidence,
        "content_sha256": content_sha256(train_examples, val_examples),
    }
    log.info(
        "snapshot from %s: %d fresh + %d replayed (%d tail) of %d older + %d gold -> %d train, %d val",
        source,
        len(fresh),
        len(replay),
        summary["counts"]["replay_tail"],
        len(old),
        len(gold_train),
        len(train_examples),
        len(val_examples),
    )
    return Snapshot(train_examples, val_examples, labels, summary)
