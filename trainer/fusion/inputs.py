"""What the fusion reads for each row: every member's probabilities and a few facts about the query.

Features (:data:`FEATURE_NAMES`), the same in training and serving because both compute them with
:meth:`RowFeatures.of_queries` from the behaviour-memory artifact:

- ``log_searches``: ``log1p`` of the query's searches: head queries are where the memory is right
  and the tail is where models guess;
- ``log_memory_evidence``: ``log1p`` of the memory's evidence for the query;
- ``memory_present``: 1 when the memory knows the query, 0 when it answered the prior. A member
  that has nothing to say must say so explicitly rather than pass off its prior as an opinion: on
  such rows its log-probabilities enter the fusion as 0 (no vote) in both methods;
- ``query_words``: the query's length in words (long natural-language queries defeat n-grams).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from store.taxonomy import normalise_query
from trainer.calibration import log_probabilities
from trainer.members.memory import BehaviourMemory

FEATURE_NAMES = ("log_searches", "log_memory_evidence", "memory_present", "query_words")


@dataclass(frozen=True)
class RowFeatures:
    """Per-row facts about the queries scored, as raw numbers (see :meth:`matrix` for the features)."""

    searches: np.ndarray  # (n,) searches of the query, 0 when never seen
    memory_evidence: np.ndarray  # (n,) BehaviourMemory.evidence: 0 = the memory answered its prior
    query_words: np.ndarray  # (n,) words in the normalised query

    def __post_init__(self) -> None:
        arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in self._arrays()]
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(f"feature arrays of different lengths: {[a.shape[0] for a in arrays]}")
        for name, a in zip(("searches", "memory_evidence", "query_words"), arrays, strict=True):
            object.__setattr__(self, name, a)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.searches, self.memory_evidence, self.query_words

    def __len__(self) -> int:
        return int(self.searches.shape[0])

    @property
    def memory_present(self) -> np.ndarray:
        return self.memory_evidence > 0

    def matrix(self) -> np.ndarray:
        """``(n, len(FEATURE_NAMES))`` float64, columns in :data:`FEATURE_NAMES` order."""
        return np.column_stack(
            [
                np.log1p(np.maximum(self.searches, 0.0)),
                np.log1p(np.maximum(self.memory_evidence, 0.0)),
                self.memory_present.astype(np.float64),
                self.query_words,
            ]
        )

    def take(self, rows: np.ndarray) -> "RowFeatures":
        return RowFeatures(self.searches[rows], self.memory_evidence[rows], self.query_words[rows])

    @classmethod
    def of_queries(
        cls,
        texts: Sequence[str],
        memory: BehaviourMemory | None,
        searches: Mapping[str, int] | None = None,
    ) -> "RowFeatures":
        """The features of ``texts``: searches from ``searches`` (``{normalised query: n}``) when
        given, else as the memory recorded them; evidence from the memory (0 without one)."""
        texts = list(texts)
        if searches is not None:
            counts = np.asarray([float(searches.get(normalise_query(t), 0)) for t in texts])
        elif memory is not None:
            counts = memory.searches(texts)
        else:
            counts = np.zeros(len(texts))
        evidence = memory.evidence(texts) if memory is not None else np.zeros(len(texts))
        words = np.asarray([len(normalise_query(t).split()) for t in texts], dtype=np.float64)
        return cls(counts, evidence, words)


def aligned(probs: np.ndarray, member_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """A member's ``predict_proba`` columns (in ``member_labels`` order) put in the fusion's
    ``labels`` order; a label the member does not know gets probability 0 (clipped before logs).
    Members trained on the same snapshot share one label list, but the fusion must not assume it."""
    source = {label: j for j, label in enumerate(member_labels)}
    p = np.asarray(probs, dtype=np.float64)
    out = np.zeros((p.shape[0], len(labels)))
    for i, label in enumerate(labels):
        if label in source:
            out[:, i] = p[:, source[label]]
    return out


def member_log_probs(
    member_probs: Mapping[str, np.ndarray],
    members: Sequence[str],
    features: RowFeatures,
    n_labels: int,
    memory_member: str | None,
) -> np.ndarray:
    """``(members, n, labels)`` clipped log-probabilities, 0 (no vote) where a member is absent.

    Raises ``ValueError`` when a member is missing or extra, or a matrix has the wrong shape.
    """
    if sorted(member_probs) != sorted(members):
        raise ValueError(f"fusion expects members {sorted(members)}, got {sorted(member_probs)}")
    n = len(features)
    out = np.empty((len(members), n, n_labels), dtype=np.float64)
    for m, name in enumerate(members):
        probs = np.asarray(member_probs[name])
        if probs.shape != (n, n_labels):
            raise ValueError(f"member {name!r}: probabilities of shape {probs.shape}, need {(n, n_labels)}")
        out[m] = log_probabilities(probs)
        if name == memory_member:
            out[m][~features.memory_present] = 0.0
    return out
