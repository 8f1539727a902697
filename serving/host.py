"""The model host: which adapter version answers which request, and the hot swap between versions.

Routing is one immutable snapshot (alias -> loaded adapter). A micro-batch reads the snapshot
*once* and resolves every request in it against that snapshot, so a request is answered by exactly
one version, named in its response, however many swaps happen meanwhile. A swap builds the new
adapter completely (artifact hashes verified, manifest and tensor shapes checked against the base,
warmed up) outside any lock the request path takes, then publishes a new snapshot with one
reference assignment (atomic under the GIL): the flip lands between batches. Batches already
running keep the adapter object they hold ("drain"); an evicted adapter is freed when the last
batch holding it finishes ("unload").

Versions recently served by an alias stay loaded (``keep_warm`` per alias), so a rollback is a flip
without a reload. A refused adapter never touches the snapshot: the old version keeps serving.
A fused version is an :class:`~serving.adapters.Adapter` like any other: routing, swaps, canary
and rollback never look inside it; only a request asking for ``members`` sees its members.
"""

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, overload

import numpy as np

from serving.adapters import Adapter, SharedBase, bucket
from serving.exceptions import (
    AdapterRefusedError,
    NotReadyError,
    RefusalKind,
    ServingError,
    UnknownDimensionError,
    UnknownMarketError,
)
from serving.metrics import ServingMetrics
from serving.tally import PredictionTally
from store.artifacts import ArtifactStore
from store.exceptions import ArtifactError
from store.versions import CANARY, CHAMPION, alias_name
from trainer.fused_artifact import Scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One API request (or one stream record batch) as the host sees it."""

    texts: list[str]
    top_k: int = 3
    abstain_below: float = 0.0
    market: str | None = None
    session: str | None = None  # stickiness key for the canary split
    members: bool = False  # also each member's top labels and weight (fused versions only)
    dimensions: tuple[str, ...] | None = None  # extra label dimensions to answer; None: every one


@dataclass(frozen=True)
class ScoreRequest:
    """Texts to score on one loaded version: an explanation's perturbations of a query.

    Not routed (the explanation holds the version it explains, so a swap mid-explanation cannot
    mix versions in it), not counted or tallied as served predictions (they are not traffic); they
    ride in the next micro-batch of that version, whose one forward pass costs little more for a
    few extra texts than a call of their own would.
    """

    adapter: Adapter
    texts: list[str]


@dataclass(frozen=True)
class MemberAnswer:
    """One member's answer to a query inside a fused version, beside its weight in the fusion."""

    name: str
    kind: str  # adapter, lexical or memory (trainer.fused_artifact)
    weight: float  # Fusion.member_weights()
    voted: bool  # False: the fusion ignored this member for the query (the memory without evidence)
    labels: list[tuple[str, float]]


@dataclass(frozen=True)
class DimensionAnswer:
    """A query's answer in one extra label dimension (the intent type), from the same pass."""

    labels: list[tuple[str, float]]
    label: str | None  # None: abstained (top probability below the threshold)


@dataclass(frozen=True)
class Prediction:
    query: str
    labels: list[tuple[str, float]]
    intent: str | None  # None: abstained (top probability below the threshold)
    version: str
    members: list[MemberAnswer] | None = None  # asked for, and the version is fused
    dimensions: dict[str, DimensionAnswer] | None = None  # the extra heads asked for (or all)


@dataclass(frozen=True)
class Answer:
    """Every prediction of one request, all from ``version`` (served through ``alias``)."""

    version: str
    alias: str
    predictions: list[Prediction]


@dataclass(frozen=True)
class Refusal:
    kind: RefusalKind
    reason: str
    at: float


@dataclass(frozen=True)
class _Routing:
    slots: Mapping[str, Adapter] = field(default_factory=lambda: MappingProxyType({}))


class ModelHost:
    """Adapters on one shared base, routed per request by market and canary split."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        base: SharedBase,
        *,
        markets: list[str] | None = None,
        canary_share: float = 0.0,
        keep_warm: int = 1,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self._artifacts = artifacts
        self.base = base
        self.markets: tuple[str | None, ...] = (None, *(markets or []))
        self.canary_share = canary_share
        self.keep_warm = keep_warm
        self.metrics = metrics or ServingMetrics()
        self.metrics.watch_served(self.served)
        self._routing = _Routing()
        self._cache: dict[str, Adapter] = {}  # version -> adapter: the only place adapters are built into
        self._recent: dict[str, list[str]] = {}  # alias -> versions it served before, newest first
        self._load_lock = threading.Lock()  # one load at a time; never taken by the request path
        self.refused: dict[str, Refusal] = {}
        self.tally = PredictionTally()  # what was served, for the drift job (flushed by the watcher)
        self.swaps = 0
        self.loads = 0

    # ------------------------------------------------------------------ what is served
    @property
    def aliases(self) -> list[str]:
        """Every alias this host can route to: champion and canary of each market it serves."""
        return [alias_name(role, m) for m in self.markets for role in (CHAMPION, CANARY)]

    def version(self, alias: str = CHAMPION) -> str | None:
        adapter = self._routing.slots.get(alias)
        return adapter.version if adapter else None

    def served(self) -> dict[str, str]:
        return {alias: a.version for alias, a in self._routing.slots.items()}

    def warm_versions(self) -> list[str]:
        return sorted(self._cache)

    def describe(self) -> dict[str, object]:
        champion = self._routing.slots.get(CHAMPION)
        return {
            "version": champion.version if champion else None,
            "labels": list(champion.labels) if champion else [],
            "aliases": self.served(),
            "warm": self.warm_versions(),
            "backends": {v: a.backend for v, a in sorted(self._cache.items())},  # torch, onnx-fp32, onnx-int8
            "markets": [m for m in self.markets if m is not None],
            "canary_share": self.canary_share,
            "swaps": self.swaps,
            "loads": self.loads,
            "refused": {v: f"{r.kind}: {r.reason}" for v, r in self.refused.items()},
        }

    # ------------------------------------------------------------------ swaps
    def assign(self, alias: str, version: str | None) -> str:
        """Point ``alias`` at ``version`` (``None``: nothing). Returns what happened: ``unchanged``,
        ``warm`` (flipped to a version still loaded), ``loaded`` or ``cleared``. Raises
        :class:`AdapterRefusedError` (logged, counted) and leaves the routing as it was."""
        with self._load_lock:
            current = self._routing.slots.get(alias)
            if (current.version if current else None) == version:
                return "unchanged"
            if version is None:
                self._flip(alias, None)
                self.metrics.swaps.labels(alias, "cleared").inc()
                log.info("%s cleared (was %s)", alias, current.version if current else None)
                return "cleared"
            adapter = self._cache.get(version)
            kind = "warm"
            if adapter is None:
                adapter = self._load(version)
                kind = "loaded"
            self._flip(alias, adapter)
            self.swaps += 1
            self.metrics.swaps.labels(alias, kind).inc()
            log.info(
                "%s now serves %s (was %s; %s)", alias, version, current.version if current else None, kind
            )
            return kind

    def _load(self, version: str) -> Adapter:
        t = time.monotonic()
        try:
            try:
                path, manifest = self._artifacts.fetch(version)
            except ArtifactError as exc:
                kind = RefusalKind.MISSING if "not found" in str(exc) else RefusalKind.INTEGRITY
                raise AdapterRefusedError(version, kind, str(exc)) from exc
            adapter = self.base.build(version, Path(path), manifest)
        except AdapterRefusedError as exc:
            self._refuse(exc)
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            refusal = AdapterRefusedError(version, RefusalKind.INVALID, f"{type(exc).__name__}: {exc}")
            self._refuse(refusal)
            raise refusal from exc
        self.refused.pop(version, None)
        self._cache[version] = adapter
        self.loads += 1
        log.info("loaded adapter %s (%s) in %.0f ms", version, adapter.backend, (time.monotonic() - t) * 1000)
        return adapter

    def _refuse(self, exc: AdapterRefusedError) -> None:
        self.refused[exc.version] = Refusal(exc.kind, exc.reason, time.time())
        self.metrics.refusals.labels(str(exc.kind)).inc()
        log.error(
            "refused adapter %s (%s): %s; still serving %s", exc.version, exc.kind, exc.reason, self.served()
        )

    def _flip(self, alias: str, adapter: Adapter | None) -> None:
        slots = dict(self._routing.slots)
        previous = slots.pop(alias, None)
        if adapter is not None:
            slots[alias] = adapter
        if previous is not None:
            recent = [previous.version, *(v for v in self._recent.get(alias, []) if v != previous.version)]
            self._recent[alias] = recent[: self.keep_warm]
        self._routing = _Routing(MappingProxyType(slots))  # the flip: one reference assignment
        keep = {a.version for a in slots.values()} | {v for vs in self._recent.values() for v in vs}
        for version in [v for v in self._cache if v not in keep]:
            del self._cache[version]  # freed once no running batch holds it

    # ------------------------------------------------------------------ predictions
    def check_market(self, market: str | None) -> None:
        if market not in self.markets:
            served = ", ".join(m for m in self.markets if m is not None) or "none besides the default"
            raise UnknownMarketError(f"unknown market {market!r}; this worker serves: {served}")

    def route(self, slots: Mapping[str, Adapter], req: Request) -> tuple[str, Adapter]:
        """The alias and adapter that answer ``req`` under the routing ``slots``."""
        self.check_market(req.market)
        canary = alias_name(CANARY, req.market)
        if canary in slots and self.canary_share > 0:
            key = req.session if req.session is not None else (req.texts[0] if req.texts else "")
            if bucket(key) < self.canary_share:
                return canary, slots[canary]
        champion = alias_name(CHAMPION, req.market)
        adapter = slots.get(champion)
        if adapter is None:
            raise NotReadyError(
                f"no adapter for {champion} yet: promote one with `intentloop registry promote VERSION`"
            )
        return champion, adapter

    def resolve(self, req: Request) -> tuple[str, Adapter]:
        """The alias and adapter that answer ``req`` now: what ``/v1/explain`` explains, so an
        explanation names the version ``/v1/intent`` would use for the same request."""
        return self.route(self._routing.slots, req)

    @overload
    def run_group(self, requests: Sequence[Request]) -> list[Answer | ServingError]: ...

    @overload
    def run_group(
        self, requests: Sequence[Request | ScoreRequest]
    ) -> list[Answer | Scores | ServingError]: ...

    def run_group(self, requests: Sequence[Request | ScoreRequest]) -> list[Any]:
        """Answer a micro-batch: one routing read, one model call per version in the group
        (an explanation's :class:`ScoreRequest` gets its rows of the call's :class:`Scores`)."""
        slots = self._routing.slots  # read once: every request below sees the same versions
        results: list[Answer | Scores | ServingError] = [NotReadyError("not routed")] * len(requests)
        groups: dict[str, tuple[Adapter, list[tuple[int, str | None]]]] = {}
        for i, req in enumerate(requests):
            if isinstance(req, ScoreRequest):
                groups.setdefault(req.adapter.version, (req.adapter, []))[1].append((i, None))
                continue
            try:
                alias, adapter = self.route(slots, req)
            except ServingError as exc:
                results[i] = exc
                continue
            missing = [d for d in req.dimensions or () if d not in adapter.dimensions]
            if missing:
                results[i] = UnknownDimensionError(
                    f"version {adapter.version} answers {list(adapter.dimensions)}, not {missing}: "
                    "train with them in INTENTLOOP_TAXONOMY__DIMENSIONS"
                )
                continue
            groups.setdefault(adapter.version, (adapter, []))[1].append((i, alias))
        for adapter, routed in groups.values():
            texts = [t for i, _ in routed for t in requests[i].texts]
            scores = self.base.score(adapter, texts)
            self.metrics.batch_queries.observe(len(texts))
            row = 0
            served: list[int] = []  # rows of routed requests: what the drift tally counts
            tops: list[str] = []  # their category answers, as the predictions already ranked them
            for i, routed_by in routed:
                req = requests[i]
                n = len(req.texts)
                if isinstance(req, ScoreRequest) or routed_by is None:
                    results[i] = scores.rows(row, row + n)
                else:
                    preds = [_predict(q, scores, row + j, adapter, req) for j, q in enumerate(req.texts)]
                    results[i] = Answer(adapter.version, routed_by, preds)
                    self.metrics.predictions.labels(routed_by).inc(n)
                    served.extend(range(row, row + n))
                    tops.extend(p.labels[0][0] for p in preds if p.labels)
                row += n
            self._tally(adapter, scores, served, tops)
        self.metrics.batch_requests.observe(len(requests))
        return results

    def _tally(self, adapter: Adapter, scores: Scores, rows: list[int], tops: list[str]) -> None:
        """What ``rows`` of a model call were answered (``tops``: their category answers), every
        head's, once per call for the drift job; an explanation's rows are not traffic."""
        if not rows:
            return
        self.tally.add(adapter.version, tops)
        for dimension, probs in scores.heads.items():  # every head answered every text
            labels = adapter.module.head_labels[dimension]
            self.tally.add(
                adapter.version, [labels[int(j)] for j in probs[rows].argmax(axis=1)], dimension=dimension
            )

    def predict(self, req: Request) -> Answer:
        """One request on the caller's thread (the stream agent, benchmarks, tests)."""
        result = self.run_group([req])[0]
        if isinstance(result, ServingError):
            raise result
        assert isinstance(result, Answer)
        return result


def _predict(query: str, scores: Scores, row: int, adapter: Adapter, req: Request) -> Prediction:
    labels = _top(scores.probs[row], adapter.labels, req.top_k)
    intent = labels[0][0] if labels and labels[0][1] >= req.abstain_below else None
    members = None
    if req.members and adapter.fused is not None:
        fused = adapter.fused
        members = [
            MemberAnswer(
                name,
                fused.kinds[name],
                fused.weights[name],
                bool(scores.voted[name][row]),
                _top(probs[row], adapter.labels, req.top_k),
            )
            for name, probs in scores.members.items()
        ]
    dimensions = None
    if scores.heads:
        heads = adapter.module.head_labels
        asked = req.dimensions if req.dimensions is not None else tuple(heads)
        dimensions = {}
        for d in asked:
            if d in scores.heads:
                top = _top(scores.heads[d][row], tuple(heads[d]), req.top_k)
                dimensions[d] = DimensionAnswer(top, top[0][0] if top[0][1] >= req.abstain_below else None)
    return Prediction(query, labels, intent, adapter.version, members, dimensions)


def _top(row: np.ndarray, labels: tuple[str, ...], k: int) -> list[tuple[str, float]]:
    return [(labels[i], float(row[i])) for i in np.argsort(-row)[:k]]
