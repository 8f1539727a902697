"""The behaviour memory: a query's aggregated shopper evidence, answered as its label distribution.

For a head query the clicks, carts and purchases of thousands of searches already say what the
shoppers wanted; no model has to guess. The memory keeps, per normalised query, the evidence
weight of each label (e.g. the weak-label vote table's ``actions``: purchase 3, add-to-cart 2,
click 1, each action once) and answers the **Dirichlet-smoothed** distribution

    p(label | query) = (count[label] + alpha * prior[label]) / (n + alpha),   n = sum(count)

for a query with ``n >= min_evidence``, and the label prior for any other query (it then knows
nothing: :meth:`BehaviourMemory.evidence` says 0, which is how the fusion learns that the member
is absent for that row).

Saved as one JSON file (sorted keys, fixed separators: the same memory is the same bytes, so its
sha256 can sit in a manifest). ``max_queries`` bounds the file: the most-evidenced queries are kept.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store.taxonomy import normalise_query
from trainer.members.exceptions import CorruptMemberError

FILENAME = "memory.json"
FORMAT = "intentloop.behaviour_memory/1"

# Pseudo-evidence of the prior, in the evidence's own units (2 = two clicks, or one add-to-cart):
# a query seen with a single click then answers 1/3 prior, 2/3 that click, instead of certainty.
DEFAULT_ALPHA = 2.0
# Below this much evidence (one purchase, or three clicks) a query's label mix is mostly chance;
# the memory answers the prior and reports no evidence, leaving the row to the other members.
DEFAULT_MIN_EVIDENCE = 3.0
# About 200k queries x a few labels is a JSON file of some 10 MB; the tail beyond it rarely has
# enough evidence to matter, and the lexical and encoder members cover it.
DEFAULT_MAX_QUERIES = 200_000

# query -> label -> evidence weight
Evidence = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class _Entry:
    columns: np.ndarray  # label indices with positive evidence
    weights: np.ndarray  # their evidence
    total: float


class BehaviourMemory:
    """Per-query smoothed label distributions speaking the ``Predictor`` protocol.

    Build one with :func:`build_memory`; :meth:`save` / :meth:`load` for the artifact.
    """

    def __init__(
        self,
        labels: Sequence[str],
        prior: np.ndarray,
        queries: Mapping[str, Mapping[str, float]],
        *,
        searches: Mapping[str, int] | None = None,
        alpha: float = DEFAULT_ALPHA,
        min_evidence: float = DEFAULT_MIN_EVIDENCE,
    ) -> None:
        if alpha <= 0 or min_evidence < 0:
            raise ValueError("need alpha > 0 and min_evidence >= 0")
        self._labels = list(labels)
        self.prior = np.asarray(prior, dtype=np.float64)
        if self.prior.shape != (len(self._labels),):
            raise ValueError(f"prior has shape {self.prior.shape} for {len(self._labels)} labels")
        self.alpha, self.min_evidence = float(alpha), float(min_evidence)
        index = {label: i for i, label in enumerate(self._labels)}
        self._searches = {q: int(n) for q, n in (searches or {}).items() if n > 0}
        self._entries: dict[str, _Entry] = {}
        for q, per_label in queries.items():
            cols = sorted(index[label] for label, w in per_label.items() if label in index and w > 0)
            w = np.asarray([float(per_label[self._labels[c]]) for c in cols], dtype=np.float64)
            self._entries[q] = _Entry(np.asarray(cols, dtype=np.intp), w, float(w.sum()))

    @property
    def labels(self) -> list[str]:
        return self._labels

    def __len__(self) -> int:
        return len(self._entries)

    def _known(self, text: str) -> _Entry | None:
        entry = self._entries.get(normalise_query(text))
        return entry if entry is not None and entry.total >= self.min_evidence and entry.total > 0 else None

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """The smoothed distribution of each known query; the prior for the others."""
        out = np.tile(self.prior, (len(texts), 1))
        for i, text in enumerate(texts):
            entry = self._known(text)
            if entry is not None:
                row = self.alpha * self.prior
                row[entry.columns] += entry.weights
                out[i] = row / (entry.total + self.alpha)
        return out.astype(np.float32)

    def evidence(self, texts: list[str]) -> np.ndarray:
        """Each text's total evidence behind its answer: 0 when the memory answers the prior."""
        return np.asarray(
            [entry.total if (entry := self._known(t)) is not None else 0.0 for t in texts], dtype=np.float64
        )

    def searches(self, texts: list[str]) -> np.ndarray:
        """Each text's search count as recorded at build time (0 when not kept): the fusion's
        frequency feature, read from the same artifact in training and serving."""
        return np.asarray([float(self._searches.get(normalise_query(t), 0)) for t in texts], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        queries = {
            q: {self._labels[c]: float(w) for c, w in zip(e.columns, e.weights, strict=True)}
            for q, e in self._entries.items()
        }
        return {
            "format": FORMAT,
            "labels": self._labels,
            "prior": [float(p) for p in self.prior],
            "alpha": self.alpha,
            "min_evidence": self.min_evidence,
            "queries": queries,
            "searches": self._searches,
        }

    def save(self, directory: Path) -> Path:
        """Write ``memory.json`` into ``directory`` (deterministic bytes); returns its path."""
        path = Path(directory) / FILENAME
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        path.write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> "BehaviourMemory":
        path = Path(directory) / FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise CorruptMemberError(f"{path}: not a behaviour memory ({data.get('format')!r})")
            return cls(
                data["labels"],
                np.asarray(data["prior"], dtype=np.float64),
                data["queries"],
                searches={q: int(n) for q, n in data["searches"].items()},
                alpha=float(data["alpha"]),
                min_evidence=float(data["min_evidence"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptMemberError(f"cannot read the behaviour memory at {path}: {exc}") from exc


def label_prior(evidence: Evidence, labels: Sequence[str]) -> np.ndarray:
    """The evidence-weighted label mix, add-one smoothed: a label nobody clicked yet keeps some
    probability (the memory's prior must not rule out what another member may rightly say)."""
    index = {label: i for i, label in enumerate(labels)}
    mix = np.ones(len(labels), dtype=np.float64)
    for per_label in evidence.values():
        for label, w in per_label.items():
            if label in index and w > 0:
                mix[index[label]] += w
    return mix / mix.sum()


def build_memory(
    evidence: Evidence,
    labels: Sequence[str],
    *,
    searches: Mapping[str, int] | None = None,
    prior: np.ndarray | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_evidence: float = DEFAULT_MIN_EVIDENCE,
    max_queries: int = DEFAULT_MAX_QUERIES,
) -> BehaviourMemory:
    """A memory of ``evidence`` (``{query: {label: weight}}``, e.g. ``VoteTable.actions``).

    Queries are normalised (duplicates merged); negative weights (evidence against) and labels
    outside ``labels`` are dropped: the Dirichlet counts must be non-negative. Queries below
    ``min_evidence`` are not stored (they would answer the prior); of the rest the ``max_queries``
    with the most evidence are kept (ties: alphabetical, so the same input keeps the same queries).
    ``searches`` (``{query: searches}``, the frequency feature of the fusion) is stored for the
    ``max_queries`` most searched queries; ``prior`` defaults to :func:`label_prior` of the evidence.
    """
    if max_queries < 0:
        raise ValueError("max_queries must be >= 0")
    known = set(labels)
    merged: dict[str, dict[str, float]] = {}
    for q, per_label in evidence.items():
        row = merged.setdefault(normalise_query(q), {})
        for label, w in per_label.items():
            if label in known and w > 0 and math.isfinite(w):
                row[label] = row.get(label, 0.0) + float(w)
    kept = sorted(
        ((q, row) for q, row in merged.items() if row and sum(row.values()) >= min_evidence),
        key=lambda kv: (-sum(kv[1].values()), kv[0]),
    )[:max_queries]
    counts: dict[str, int] = {}
    for q, n in (searches or {}).items():
        key = normalise_query(q)
        counts[key] = counts.get(key, 0) + int(n)
    top = sorted(((q, n) for q, n in counts.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))[:max_queries]
    return BehaviourMemory(
        labels,
        label_prior(evidence, labels) if prior is None else prior,
        dict(kept),
        searches=dict(top),
        alpha=alpha,
        min_evidence=min_evidence,
    )
