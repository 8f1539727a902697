"""One training refresh, end to end: snapshot -> split -> fine-tune -> artifact -> recorded version.

Every run is recorded in Postgres whatever happens; a failed run never touches the champion.
"""

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.artifacts import ArtifactStore
from store.db import Database
from store.labels import (
    LabelledQuery,
    distribution_snapshot,
    labelled_distribution_count,
    weak_label_snapshot,
)
from store.versions import finish_run, record_version, start_run
from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError
from trainer.settings import ModelSettings, TrainSettings
from trainer.split import split_by_query

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: int
    version: str
    metrics: dict[str, Any]
    snapshot: dict[str, Any]
    artifact_dir: Path


# Where a snapshot's labels came from (recorded with the run and its adapter).
FROM_DISTRIBUTIONS = "label_distributions"
FROM_WEAK_LABELS = "weak_labels"


def snapshot_examples(db: Database, train: TrainSettings) -> tuple[list[LabelledQuery], str]:
    """The training rows and their source.

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


def run_training(
    db: Database,
    artifacts: ArtifactStore,
    model: ModelSettings,
    train: TrainSettings,
    *,
    trigger: str = "manual",
    progress: bool = True,
) -> TrainOutcome:
    """Train a candidate adapter from the current weak labels and record it (not promoted)."""
    from trainer.finetune import fit
    from trainer.model import resolve_base_dir, save_adapter

    base_dir = resolve_base_dir(model.base_dir)
    with db.session() as session:
        run_id = start_run(session, trigger=trigger, params=train.model_dump(mode="json"))
    started = time.monotonic()
    try:
        rows, source = snapshot_examples(db, train)
        train_rows, val_rows = split_by_query(rows, lambda r: r.norm_text, train.val_fraction)
        labels = sorted({r.label for r in rows})
        snapshot = {
            "source": source,
            "queries": len(rows),
            "train": len(train_rows),
            "val": len(val_rows),
            "labels": len(labels),
            "min_votes": train.min_votes,
            "min_confidence": train.min_confidence,
        }
        if len(labels) < 2 or not train_rows or not val_rows:
            raise NotEnoughDataError(
                f"snapshot (from {source}) has {len(rows)} confident queries over {len(labels)} labels; "
                "need at least 2 labels and both a train and a validation split (ingest more traffic "
                "or lower INTENTLOOP_TRAIN__MIN_CONFIDENCE, and INTENTLOOP_TRAIN__MIN_VOTES or "
                "INTENTLOOP_LABELS__MIN_EVIDENCE)"
            )
        log.info("snapshot from %s: %s", source, snapshot)
        result = fit(
            to_examples(train_rows),
            to_examples(val_rows),
            labels,
            base_dir,
            train,
            model.max_length,
            progress=progress,
        )
        with tempfile.TemporaryDirectory(prefix="intentloop-adapter-") as tmp:
            save_adapter(
                result.model,
                Path(tmp),
                base_dir=base_dir,
                labels=labels,
                metrics=result.metrics,
                extra={"training_run_id": run_id, "snapshot": snapshot},
                max_length=model.max_length,
            )
            version = artifacts.publish(Path(tmp))
        _, manifest = artifacts.fetch(version)
        with db.session() as session:
            record_version(
                session, version=version, manifest=manifest, uri=str(artifacts.path(version)), run_id=run_id
            )
            finish_run(
                session,
                run_id,
                status="succeeded",
                version=version,
                metrics=result.metrics,
                snapshot=snapshot,
                device=str(result.metrics.get("device")),
            )
        log.info("run %d produced version %s in %.1fs", run_id, version, time.monotonic() - started)
        return TrainOutcome(run_id, version, result.metrics, snapshot, artifacts.path(version))
    except BaseException as exc:
        with db.session() as session:
            finish_run(session, run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
