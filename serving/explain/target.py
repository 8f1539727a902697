"""What an explanation explains: one label of one dimension of one loaded version.

:class:`Target` is the only way the explainers reach the model. ``probabilities`` scores texts with
the version exactly as ``/v1/intent`` does (``SharedBase.score``: template, tokenizer, pooling, the
fusion for a fused version), ``chunk`` texts at a time, each text once per explanation (``memo``).
In a worker the texts ride in the intent micro-batches (``scorer``: a ``ScoreRequest`` to the
batcher), so an explanation adds a few rows to forward passes that run anyway instead of calls of
its own; the gradient method's forward and backward pass (``module``) runs on the same single model
thread through ``run``, as a low-priority call between micro-batches. In the CLI and the benchmark
both are inline.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from serving.adapters import Adapter, SharedBase
from serving.exceptions import ExplainError
from store.dimensions import CATEGORY
from trainer.fused_artifact import Scores

T = TypeVar("T")
Runner = Callable[[Callable[[], T]], T]


def inline(fn: Callable[[], T]) -> T:
    """Run model work on the calling thread (the CLI, the benchmark, tests)."""
    return fn()


@dataclass
class Target:
    """One label of one dimension of ``adapter``, scored on ``base``; counts its model calls."""

    base: SharedBase
    adapter: Adapter
    label: str | None = None  # None: only ``all_probabilities`` (to find the top label)
    dimension: str = CATEGORY
    run: Runner[Any] = inline  # model-thread work other than scoring (integrated gradients)
    # Scores texts on the version; None: ``base.score`` through ``run``. A worker's rides the texts
    # in its micro-batches (``ScoreRequest``).
    scorer: Callable[[Adapter, list[str]], Scores] | None = None
    chunk: int = 16
    calls: int = field(default=0, init=False)  # texts scored, for the benchmark's cost figures
    # text -> every label's probability, shared by the targets ``for_label`` derives (one version,
    # one dimension): no text is scored twice within one explanation
    memo: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        labels = self.labels
        if self.label is not None and self.label not in labels:
            raise ExplainError(f"{self.dimension} label {self.label!r} is not one of {list(labels)}")
        self.index = -1 if self.label is None else labels.index(self.label)

    def for_label(self, label: str) -> "Target":
        """This target explaining ``label`` (a fresh call count)."""
        return replace(self, label=label)

    @property
    def labels(self) -> tuple[str, ...]:
        dims = self.adapter.dimensions
        if self.dimension not in dims:
            raise ExplainError(f"version {self.adapter.version} answers {list(dims)}, not {self.dimension!r}")
        return dims[self.dimension]

    def all_probabilities(self, texts: list[str]) -> np.ndarray:
        """Every label's probability of the dimension for each text, ``chunk`` texts per model call.

        Texts this target (or one it was derived from) already scored come from its memo: the
        perturbation methods score the whole query and the empty one again, and occlusion's texts
        are scored with the first call (:func:`serving.explain.methods.prefetch`).
        """
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        for i in range(0, len(todo), self.chunk):
            part = todo[i : i + self.chunk]
            rows = self._rows(part)
            self.memo.update(zip(part, rows, strict=True))
            self.calls += len(part)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        return np.stack([self.memo[t] for t in texts])

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """The explained label's probability for each text (an empty text scores as the empty query)."""
        if self.label is None:
            raise ExplainError("no label chosen to explain")
        return self.all_probabilities(texts)[:, self.index]

    def scores(self, texts: list[str]) -> Scores:
        """The version's whole answer for ``texts`` (every head, a fused version's members)."""
        if self.scorer is not None:
            return self.scorer(self.adapter, texts)
        result: Scores = self.run(functools.partial(self.base.score, self.adapter, texts))
        return result

    def _rows(self, texts: list[str]) -> np.ndarray:
        scores = self.scores(texts)
        if self.dimension == CATEGORY:
            return np.asarray(scores.probs, dtype=np.float64)
        return np.asarray(scores.heads[self.dimension], dtype=np.float64)

    @property
    def module(self) -> Any:
        """The version's classifier (encoder with its adapter merged, and heads): the gradient path."""
        return self.adapter.module
