"""The model host: which adapter version answers, and the hot swap between versions.

Requests read ``self._current`` once and use that object for the whole batch, so a swap (one
reference assignment, atomic under the GIL) can never mix two versions in one response. A new
version is fully loaded, verified and warmed up before the flip; the old one is released after.
"""

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.exceptions import AdapterRefusedError, NotReadyError
from store.artifacts import ArtifactStore
from store.exceptions import ArtifactError
from trainer.exceptions import ModelError
from trainer.model import LoadedModel, load_for_inference, resolve_base_dir
from trainer.settings import ModelSettings

log = logging.getLogger(__name__)

_WARMUP = ["warm up query", "a second, longer warm up query for the tokenizer"]


@dataclass(frozen=True)
class Served:
    """An immutable (version, model) pair: what one batch is answered with."""

    version: str
    model: LoadedModel


@dataclass(frozen=True)
class Prediction:
    query: str
    labels: list[tuple[str, float]]


class ModelHost:
    def __init__(self, artifacts: ArtifactStore, model: ModelSettings) -> None:
        self._artifacts = artifacts
        self._base_dir = resolve_base_dir(model.base_dir)
        self._current: Served | None = None
        self._swap_lock = threading.Lock()
        self.refused: dict[str, str] = {}
        self.swaps = 0

    @property
    def version(self) -> str | None:
        cur = self._current
        return cur.version if cur else None

    def load(self, version: str) -> None:
        """Verify, load and warm ``version`` next to the current one, then flip to it."""
        with self._swap_lock:
            if self.version == version:
                return
            try:
                path, _ = self._artifacts.fetch(version)
                model = load_for_inference(self._base_dir, path)
                model.predict_proba(_WARMUP)
            except (ArtifactError, ModelError, OSError, ValueError, KeyError, RuntimeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self.refused[version] = reason
                log.error("refused adapter %s: %s (still serving %s)", version, reason, self.version)
                raise AdapterRefusedError(f"adapter {version} refused: {reason}") from exc
            previous = self._current
            self._current = Served(version, model)
            self.swaps += 1
            log.info("now serving adapter %s (was %s)", version, previous.version if previous else None)

    def predict(self, queries: list[str], top_k: int) -> tuple[str, list[Prediction]]:
        served = self._current
        if served is None:
            raise NotReadyError("no adapter loaded yet: promote one with `intentloop registry promote`")
        probs = served.model.predict_proba(queries)
        return served.version, [
            _top_k(q, row, served.model.labels, top_k) for q, row in zip(queries, probs, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        cur = self._current
        return {
            "version": cur.version if cur else None,
            "labels": list(cur.model.labels) if cur else [],
            "swaps": self.swaps,
            "refused": dict(self.refused),
        }


def _top_k(query: str, row: np.ndarray, labels: list[str], k: int) -> Prediction:
    order = np.argsort(-row)[:k]
    return Prediction(query, [(labels[i], float(row[i])) for i in order])
