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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from store.artifacts import ArtifactStore
from store.db import Database
from store.exceptions import ArtifactError, IntentloopError
from store.models import TrainingRun
from store.training import FAILED, INTERRUPTED, SUCCEEDED, reopen_run, run_of_version, window_end_of
from store.versions import finish_run, record_version, recorded_alias, start_run
from trainer.dataset import Example
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


def _warm_start_source(
    artifacts: ArtifactStore,
    train: TrainSettings,
    labels: list[str],
    champion: str | None,
    base_sha: str,
    input_format: dict[str, Any] | None = None,
) -> tuple[Path | None, dict[str, Any]]:
    """The champion's adapter directory when ``init=champion`` can use it, and why or why not.

    Falls back to the base model (logged, and recorded in the run's snapshot under ``init``) when
    there is no champion, its artifact is unavailable, it was trained on another base, or its label
    set differs (new or vanished labels would need new head rows: kept simple, start over).
    """
    if train.init == "base":
        return None, {"requested": "base", "from": "base"}
    note: dict[str, Any] = {"requested": "champion", "champion": champion}
    reason: str | None = None
    path: Path | None = None
    if champion is None:
        reason = "no champion yet"
    else:
        try:
            path, manifest = artifacts.fetch(champion)
        except ArtifactError as exc:
            reason = f"champion {champion} artifact unavailable: {exc}"
        else:
            theirs = list(manifest.get("labels") or [])
            if manifest.get("base_model", {}).get("config_sha256") != base_sha:
                reason = f"champion {champion} was trained on another base model"
            elif input_format is not None and _format_of(manifest) != input_format:
                reason = (
                    f"champion {champion} was trained with input format {_format_of(manifest)}, "
                    f"this run uses {input_format}"
                )
            elif theirs != labels:
                added, gone = sorted(set(labels) - set(theirs)), sorted(set(theirs) - set(labels))
                reason = f"label set differs from champion {champion}'s (new {added}, gone {gone})"
    if reason is not None:
        log.info("warm start: training from the base model (%s)", reason)
        return None, {**note, "from": "base", "fallback": reason}
    log.info("warm start: from champion %s", champion)
    return path, {**note, "from": "champion"}


def _format_fingerprint(fmt: dict[str, Any]) -> dict[str, Any]:
    plain = fmt.get("template") == "{text}" and fmt.get("pooling") == "mean"
    return {} if plain else {"input_format": fmt}


def _format_of(manifest: dict[str, Any]) -> dict[str, Any]:
    from trainer.inputs import InputFormat

    fmt = InputFormat.from_manifest(manifest)
    return {"template": fmt.template, "pooling": fmt.pooling}  # a new max_length still warm-starts


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
) -> TrainOutcome:
    """Train a candidate adapter from the current labels and record it (not promoted).

    ``champion``: the version to warm-start from and whose data window ends the fresh window (by
    default the recorded champion). ``resume_run``: continue that failed/interrupted run from its
    directory under ``runs_dir`` with its recorded parameters and rows (``train`` is then ignored).
    The caller holds the training lock (``store.training.TrainingLock``) when runs may overlap.
    """
    from trainer.coverage import check_tokenizer_coverage
    from trainer.finetune import fit
    from trainer.inputs import resolve_input_format
    from trainer.model import config_sha256, resolve_base_dir, save_adapter

    base_dir = resolve_base_dir(model.base_dir)
    input_format = resolve_input_format(model, base_dir)  # before a run is started: fails fast
    if champion is AUTO:
        with db.session() as session:
            champion = recorded_alias(session)
    assert not isinstance(champion, _Auto)
    started = time.monotonic()
    resuming = resume_run is not None
    if resuming:
        assert resume_run is not None
        run_id, train, data, init = _reopen(db, resume_run, runs_dir, trigger)
    else:
        with db.session() as session:
            run_id = start_run(session, trigger=trigger[:32], params=train.model_dump(mode="json"))
    run_dir = runs_dir / str(run_id) if runs_dir is not None else None
    scratch: Path | None = None
    try:
        if not resuming:
            data = build_snapshot(db, train, fresh_since=_fresh_since(db, champion), champion=champion)
            texts = [e.text for e in (*data.train, *data.val)]
            data.summary["tokenizer_coverage"] = check_tokenizer_coverage(base_dir, texts)
            check_trainable(data, train)
            _, init = _warm_start_source(
                artifacts,
                train,
                data.labels,
                champion,
                config_sha256(base_dir),
                {"template": input_format.template, "pooling": input_format.pooling},
            )
            data.summary["init"] = init
            if trigger_detail:
                data.summary["trigger"] = trigger_detail
            if run_dir is not None:
                data.write(run_dir / ROWS_FILE)
            with db.session() as session:  # recorded now: a crash still leaves the window on record
                _set(session, run_id, snapshot=data.summary)
        init_dir: Path | None = None
        if init.get("from") == "champion":
            init_dir, _ = artifacts.fetch(str(init["champion"]))
        if run_dir is None:  # checkpoints still written (same code path), but nowhere to resume from
            scratch = Path(tempfile.mkdtemp(prefix="intentloop-run-"))
        ckpt_dir = (run_dir or scratch or Path(tempfile.gettempdir())) / CHECKPOINT_DIR
        result = fit(
            data.train,
            data.val,
            data.labels,
            base_dir,
            train,
            model.max_length,
            progress=progress,
            init_from=init_dir,
            checkpoint_dir=ckpt_dir,
            resume=resuming and (ckpt_dir / "LATEST").is_file(),
            fingerprint={
                "content_sha256": data.summary["content_sha256"],
                "params": _fit_params(train),
                # only when not the plain format, so runs checkpointed before it existed still resume;
                # a format changed since the crash is then refused rather than silently continued
                **_format_fingerprint(input_format.as_dict()),
            },
            on_epoch_end=on_epoch_end,
            input_format=input_format,
        )
        with tempfile.TemporaryDirectory(prefix="intentloop-adapter-") as tmp:
            save_adapter(
                result.model,
                Path(tmp),
                base_dir=base_dir,
                labels=data.labels,
                metrics=result.metrics,
                extra={"training_run_id": run_id, "snapshot": data.summary},
                max_length=model.max_length,
            )
            version = artifacts.publish(Path(tmp))
        version_dir, manifest = artifacts.fetch(version)
        metrics = {**result.metrics, "duration_s": round(time.monotonic() - started, 3)}
        with db.session() as session:
            record_version(
                session, version=version, manifest=manifest, uri=artifacts.uri(version), run_id=run_id
            )
            finish_run(
                session,
                run_id,
                status=SUCCEEDED,
                version=version,
                metrics=metrics,
                device=f"{result.metrics['device']}/{result.metrics['dtype']}",
            )
        if run_dir is not None:  # the rows stay (reproduction); checkpoints are only for resuming
            shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
        log.info("run %d produced version %s in %.1fs", run_id, version, time.monotonic() - started)
        return TrainOutcome(run_id, version, metrics, data.summary, version_dir, train_examples=data.train)
    except BaseException as exc:
        status = INTERRUPTED if isinstance(exc, KeyboardInterrupt | SystemExit) else FAILED
        with db.session() as session:
            finish_run(
                session,
                run_id,
                status=status,
                error=f"{type(exc).__name__}: {exc}",
                metrics={"duration_s": round(time.monotonic() - started, 3)},
            )
        if run_dir is not None and (run_dir / CHECKPOINT_DIR / "LATEST").is_file():
            log.warning("run %d %s; resume it with `intentloop train --resume %d`", run_id, status, run_id)
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# Settings that do not change what an epoch computes: a checkpoint stays valid when they change.
# The snapshot's own settings (targets, weights, minimum sizes) are not either: the rows they made are
# fixed by the snapshot's content hash, so a run interrupted before they existed can still resume.
_NOT_FIT = {
    "gate",
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
        raise IntentloopError(f"training run {run_id} vanished")
    for key, value in fields.items():
        setattr(run, key, value)


def _reopen(
    db: Database, run_id: int, runs_dir: Path | None, trigger: str
) -> tuple[int, TrainSettings, Snapshot, dict[str, Any]]:
    """An interrupted run's recorded parameters and rows, with the run marked running again."""
    if runs_dir is None:
        raise IntentloopError("resuming needs the runs directory (INTENTLOOP_TRAIN__RUNS_DIR)")
    rows = runs_dir / str(run_id) / ROWS_FILE
    with db.session() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise IntentloopError(f"no training run {run_id}")
        if not rows.is_file():
            raise IntentloopError(
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
