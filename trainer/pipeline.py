"""One training refresh, end to end: snapshot -> split -> fine-tune -> artifact -> recorded version.

Every run is recorded in Postgres whatever happens (``training_runs``: trigger, parameters, the
snapshot summary with its data window, device, duration, metrics); a failed or interrupted run never
touches the champion (promotion is a separate step, after the gate). With a ``runs_dir`` each run
gets ``<runs_dir>/<run id>/`` holding its exact rows (``snapshot.jsonl``) and its epoch
checkpoints, and :func:`run_training` with ``resume_run`` continues an interrupted run from there.
"""

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.artifacts import ArtifactStore
from store.db import Database
from store.dimensions import CATEGORY
from store.models import TrainingRun
from store.training import FAILED, INTERRUPTED, SUCCEEDED, reopen_run, run_of_version, window_end_of
from store.versions import finish_run, record_version, recorded_alias, start_run
from trainer.dataset import Example
from trainer.exceptions import TrainerError
from trainer.settings import ModelSettings, TrainSettings
from trainer.snapshot import (
    FROM_DISTRIBUTIONS,
    FROM_WEAK_LABELS,
    ROWS_FILE,
    Snapshot,
    build_snapshot,
    check_trainable,
    snapshot_examples,
    to_examples,
)
from trainer.warm_start import format_fingerprint, warm_start_source

if TYPE_CHECKING:  # torch: imported by the steps that train, not by this module
    from trainer.finetune import FitResult
    from trainer.fused_training import FusedTraining
    from trainer.inputs import InputFormat

__all__ = [
    "FROM_DISTRIBUTIONS",
    "FROM_WEAK_LABELS",
    "TrainOutcome",
    "run_training",
    "snapshot_examples",
    "to_examples",
]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


class _Auto:
    """Sentinel: look the champion up in the alias audit trail."""


AUTO = _Auto()


@dataclass(frozen=True)
class TrainOutcome:
    run_id: int
    version: str
    metrics: dict[str, Any]
    snapshot: dict[str, Any]
    artifact_dir: Path
    train_examples: list[Example] = field(default_factory=list, repr=False)  # what the adapter saw


def _fresh_since(db: Database, champion: str | None) -> datetime | None:
    """Where the fresh window starts: the end of the champion's own data window."""
    if champion is None:
        return None
    with db.session() as session:
        return window_end_of(run_of_version(session, champion))


def run_training(
    db: Database,
    artifacts: ArtifactStore,
    model: ModelSettings,
    train: TrainSettings,
    *,
    trigger: str = "manual",
    progress: bool = True,
    champion: "str | _Auto | None" = AUTO,
    runs_dir: Path | None = None,
    resume_run: int | None = None,
    trigger_detail: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    dimensions: Sequence[str] = (CATEGORY,),
) -> TrainOutcome:
    """Train a candidate adapter from the current labels and record it (not promoted).

    ``champion``: the version to warm-start from and whose data window ends the fresh window (by
    default the recorded champion). ``resume_run``: continue that failed/interrupted run from its
    directory under ``runs_dir`` with its recorded parameters and rows (``train`` is then ignored).
    ``dimensions``: the label dimensions (``taxonomy.dimensions``); each one besides the category
    with aggregated labels trains as a head of the same adapter.
    The caller holds the training lock (``store.training.TrainingLock``) when runs may overlap.
    """
    from trainer.classifier import resolve_base_dir
    from trainer.inputs import resolve_input_format

    base_dir = resolve_base_dir(model.base_dir)
    input_format = resolve_input_format(model, base_dir)  # before a run is started: fails fast
    if champion is AUTO:
        with db.session() as session:
            champion = recorded_alias(session)
    assert not isinstance(champion, _Auto)
    started = time.monotonic()
    if resume_run is not None:
        run_id, train, data, init = _reopen(db, resume_run, runs_dir, trigger)
    else:
        with db.session() as session:
            run_id = start_run(session, trigger=trigger[:32], params=train.model_dump(mode="json"))
    run_dir = runs_dir / str(run_id) if runs_dir is not None else None
    job = _Run(db, artifacts, model, train, run_id, run_dir, base_dir, tuple(dimensions))
    try:
        if resume_run is None:
            data, init = _take_snapshot(job, input_format, champion, trigger_detail)
        result = _fit(
            job,
            data,
            init,
            input_format,
            resuming=resume_run is not None,
            progress=progress,
            on_epoch_end=on_epoch_end,
        )
        fused = _fuse(job, data, result)
        version, version_dir, metrics = _publish(job, data, result, fused, started)
    except BaseException as exc:
        _record_failure(job, exc, started)
        raise
    if job.run_dir is not None:  # the rows stay (reproduction); checkpoints are only for resuming
        shutil.rmtree(job.run_dir / CHECKPOINT_DIR, ignore_errors=True)
    log.info("run %d produced version %s in %.1fs", run_id, version, time.monotonic() - started)
    return TrainOutcome(run_id, version, metrics, data.summary, version_dir, train_examples=data.train)


@dataclass(frozen=True)
class _Run:
    """What every step of one run needs: where it records, stores and trains from."""

    db: Database
    artifacts: ArtifactStore
    model: ModelSettings
    train: TrainSettings
    run_id: int
    run_dir: Path | None  # ``<runs_dir>/<run id>``: rows and checkpoints; None without a runs_dir
    base_dir: Path
    dimensions: tuple[str, ...] = (CATEGORY,)


def _take_snapshot(
    job: _Run, input_format: "InputFormat", champion: str | None, trigger_detail: dict[str, Any] | None
) -> tuple[Snapshot, dict[str, Any]]:
    """Draw a new run's rows, check them, choose its starting point, and record both with the run."""
    from trainer.classifier import config_sha256
    from trainer.coverage import check_tokenizer_coverage

    db, train = job.db, job.train
    data = build_snapshot(
        db, train, fresh_since=_fresh_since(db, champion), champion=champion, dimensions=job.dimensions
    )
    texts = [e.text for e in (*data.train, *data.val)]
    data.summary["tokenizer_coverage"] = check_tokenizer_coverage(job.base_dir, texts)
    check_trainable(data, train)
    _, init = warm_start_source(
        job.artifacts,
        train,
        data.labels,
        champion,
        config_sha256(job.base_dir),
        {"template": input_format.template, "pooling": input_format.pooling},
    )
    data.summary["init"] = init
    if trigger_detail:
        data.summary["trigger"] = trigger_detail
    if job.run_dir is not None:
        data.write(job.run_dir / ROWS_FILE)
    with db.session() as session:  # recorded now: a crash still leaves the window on record
        _set(session, job.run_id, snapshot=data.summary)
    return data, init


def _fit(
    job: _Run,
    data: Snapshot,
    init: dict[str, Any],
    input_format: "InputFormat",
    *,
    resuming: bool,
    progress: bool,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
) -> "FitResult":
    """Fine-tune on the snapshot, checkpointing every epoch (resumed from the last one if asked)."""
    from trainer.finetune import fit

    init_dir: Path | None = None
    if init.get("from") == "champion":
        init_dir, _ = job.artifacts.fetch(str(init["champion"]))
    with _checkpoint_dir(job.run_dir) as ckpt_dir:
        return fit(
            data.train,
            data.val,
            data.labels,
            job.base_dir,
            job.train,
            job.model.max_length,
            progress=progress,
            init_from=init_dir,
            checkpoint_dir=ckpt_dir,
            resume=resuming and (ckpt_dir / "LATEST").is_file(),
            fingerprint={
                "content_sha256": data.summary["content_sha256"],
                "params": _fit_params(job.train),
                # only when not the plain format, so runs checkpointed before it existed still resume;
                # a format changed since the crash is then refused rather than silently continued
                **format_fingerprint(input_format.as_dict()),
            },
            on_epoch_end=on_epoch_end,
            input_format=input_format,
            heads=list(data.heads.values()),
        )


@contextmanager
def _checkpoint_dir(run_dir: Path | None) -> Iterator[Path]:
    """The run's checkpoint directory; without a run directory checkpoints are still written (same
    code path) to a scratch directory removed afterwards: there is nowhere to resume from."""
    if run_dir is not None:
        yield run_dir / CHECKPOINT_DIR
        return
    scratch = Path(tempfile.mkdtemp(prefix="intentloop-run-"))
    try:
        yield scratch / CHECKPOINT_DIR
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fuse(job: _Run, data: Snapshot, result: "FitResult") -> "FusedTraining":
    """The lexical member, behaviour memory and fusion beside the fitted adapter, fitted on the
    validation rows (:mod:`trainer.fused_training`); parts ``None``: publish the plain adapter."""
    from store.labels import BehaviourEvidence, behaviour_evidence
    from trainer.classifier import LoadedModel
    from trainer.fused_training import fit_fused, fusion_rows_of

    settings, source = job.train.fusion, str(data.summary["source"])
    with job.db.session() as session:  # no read when disabled: fit_fused then says why it skipped
        behaviour = (
            behaviour_evidence(session, source) if settings.enabled else BehaviourEvidence({}, {}, source)
        )
    device = next(result.model.parameters()).device
    encoder = LoadedModel(result.model, result.tokenizer, {"labels": list(result.model.labels)}, device)
    return fit_fused(
        encoder,
        data.train,
        fusion_rows_of(data.val),
        behaviour.evidence,
        behaviour.searches,
        data.labels,
        settings,
        seed=job.train.seed,
    )


def _publish(
    job: _Run, data: Snapshot, result: "FitResult", fused: "FusedTraining", started: float
) -> tuple[str, Path, dict[str, Any]]:
    """Save the adapter (fused when ``fused`` has parts) as an artifact, record the version and the
    run's success: (version, its directory, the run's metrics)."""
    from trainer.artifact import save_adapter

    with tempfile.TemporaryDirectory(prefix="intentloop-adapter-") as tmp:
        save_adapter(
            result.model,
            Path(tmp),
            base_dir=job.base_dir,
            labels=data.labels,
            metrics=result.metrics,
            extra={"training_run_id": job.run_id, "snapshot": data.summary, "fusion_training": fused.report},
            max_length=job.model.max_length,
            fused=fused.parts,
        )
        if job.train.export.onnx:
            _export(job, Path(tmp), data)
        version = job.artifacts.publish(Path(tmp))
    version_dir, manifest = job.artifacts.fetch(version)
    metrics = {**result.metrics, "fusion": fused.report, "duration_s": round(time.monotonic() - started, 3)}
    with job.db.session() as session:
        record_version(
            session, version=version, manifest=manifest, uri=job.artifacts.uri(version), run_id=job.run_id
        )
        finish_run(
            session,
            job.run_id,
            status=SUCCEEDED,
            version=version,
            metrics=metrics,
            device=f"{result.metrics['device']}/{result.metrics['dtype']}",
        )
    return version, version_dir, metrics


def _export(job: _Run, adapter_dir: Path, data: Snapshot) -> None:
    """The version's ONNX graphs, checked on the validation rows, into the unpublished artifact
    (so the manifest's hashes cover them): :mod:`trainer.onnx_graph`."""
    from trainer.classifier import FrozenBase
    from trainer.onnx_graph import export_version

    t = time.monotonic()
    base = FrozenBase(job.base_dir, "cpu")  # the reference is fp32 PyTorch, what the graph computes
    heads = {d: [(e.text, e.label) for e in rows.val] for d, rows in data.heads.items()}
    rows = [(e.text, e.label) for e in data.val]
    section = export_version(adapter_dir, base, rows, job.train.export, head_rows=heads)
    published = [k for k in ("fp32", "int8") if (section.get(k) or {}).get("published")]
    log.info("ONNX export in %.1fs: %s published", time.monotonic() - t, published or "nothing")


def _record_failure(job: _Run, exc: BaseException, started: float) -> None:
    """Mark the run failed (or interrupted, on Ctrl-C / a signal) and say how to resume it."""
    status = INTERRUPTED if isinstance(exc, KeyboardInterrupt | SystemExit) else FAILED
    with job.db.session() as session:
        finish_run(
            session,
            job.run_id,
            status=status,
            error=f"{type(exc).__name__}: {exc}",
            metrics={"duration_s": round(time.monotonic() - started, 3)},
        )
    if job.run_dir is not None and (job.run_dir / CHECKPOINT_DIR / "LATEST").is_file():
        log.warning(
            "run %d %s; resume it with `intentloop train --resume %d`", job.run_id, status, job.run_id
        )


# Settings that do not change what an epoch computes: a checkpoint stays valid when they change.
# The snapshot's own settings (targets, weights, minimum sizes) are not either: the rows they made are
# fixed by the snapshot's content hash, so a run interrupted before they existed can still resume.
_NOT_FIT = {
    "gate",
    "fusion",  # fitted after the last epoch, from its result: never part of what an epoch computes
    "export",  # the ONNX graphs, exported after the last epoch too
    "schedule",
    "poll_s",
    "runs_dir",
    "checkpoint",
    "targets",
    "example_weight",
    "min_examples",
    "min_examples_per_label",
}


def _fit_params(train: TrainSettings) -> dict[str, Any]:
    """The parameters a checkpoint must agree on to be continued."""
    return train.model_dump(mode="json", exclude=_NOT_FIT)


def _set(session: Any, run_id: int, **fields: Any) -> None:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise TrainerError(f"training run {run_id} vanished")
    for key, value in fields.items():
        setattr(run, key, value)


def _reopen(
    db: Database, run_id: int, runs_dir: Path | None, trigger: str
) -> tuple[int, TrainSettings, Snapshot, dict[str, Any]]:
    """An interrupted run's recorded parameters and rows, with the run marked running again."""
    if runs_dir is None:
        raise TrainerError("resuming needs the runs directory (INTENTLOOP_TRAIN__RUNS_DIR)")
    rows = runs_dir / str(run_id) / ROWS_FILE
    with db.session() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise TrainerError(f"no training run {run_id}")
        if not rows.is_file():
            raise TrainerError(
                f"training run {run_id} left no rows at {rows} (it stopped before its snapshot was "
                "taken, or another machine ran it): start a new run instead"
            )
        params, summary = dict(run.params or {}), dict(run.snapshot or {})
        train = TrainSettings.model_validate(params)
        data = Snapshot.read(rows, summary)  # before reopening: a bad file leaves the run as it was
        reopen_run(session, run_id)
        resumes = int(summary.get("resumes", 0)) + 1
        summary = {**summary, "resumes": resumes, "resumed_by": [*summary.get("resumed_by", []), trigger]}
        run.snapshot = summary
    log.info(
        "resuming training run %d (resume #%d) on its recorded %d rows", run_id, resumes, len(data.train)
    )
    return (
        run_id,
        train,
        Snapshot(data.train, data.val, data.labels, summary),
        dict(summary.get("init") or {"from": "base"}),
    )
