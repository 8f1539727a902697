"""Where a run starts from: the champion's adapter (``init=champion``, the default) or the base model.

Warm-starting from the champion keeps what it learned and converges in fewer epochs, but only when
the champion is compatible with this run: same base encoder, same input format and the same label
set (new or vanished labels would need new head rows: kept simple, start over). Otherwise the run
falls back to the base model, and the run's snapshot records why under ``init``.
"""

import logging
from pathlib import Path
from typing import Any

from store.artifacts import ArtifactStore
from store.exceptions import ArtifactError
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)


def warm_start_source(
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


def format_fingerprint(fmt: dict[str, Any]) -> dict[str, Any]:
    """The input format as a checkpoint must agree on it: nothing for the plain format (so runs
    checkpointed before formats existed still resume), the format otherwise."""
    plain = fmt.get("template") == "{text}" and fmt.get("pooling") == "mean"
    return {} if plain else {"input_format": fmt}


def _format_of(manifest: dict[str, Any]) -> dict[str, Any]:
    from trainer.inputs import InputFormat

    fmt = InputFormat.from_manifest(manifest)
    return {"template": fmt.template, "pooling": fmt.pooling}  # a new max_length still warm-starts
