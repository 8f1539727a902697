"""The fused model of `intentloop bench train`: behaviour memory + TF-IDF + LoRA, learned on reviewed rows.

The members are the ones the weak-label bench already trained (``lora`` and ``tfidf``, on the
same rows) plus the **behaviour memory** (``trainer.members.memory``): the action evidence per
query of the searches before the snapshot (``streams.labels_job.vote_table``), smoothed toward the
label prior, answering only for queries with enough of it. The fusion (``trainer.fusion``) is fitted
on the reviewed queries, which no member trained on, with their reviewers' labels; it is then
applied to the held-out queries. The reviewed queries' memory includes their own searches before
the snapshot, so on them the memory agrees with the label a little more than on a held-out query's
later searches: if anything the fusion trusts the memory too much, which the held-out rows would
show. Which member is best is read on the held-out rows after the fact,
for the comparison only (nothing is chosen with them).
"""

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from intentloop.bench.train_common import Echo, Scored
from streams.labels_job import vote_table
from streams.weak.settings import LabelSettings

if TYPE_CHECKING:
    from intentloop.bench.train_weak import _Traffic

MEMBERS = ("lora", "tfidf")  # the trained members; the memory is built here


@dataclass(frozen=True)
class FusionResult:
    """Each new model's probabilities on the held-out queries (``memory``, ``fused``) and what the
    fusion recorded about itself."""

    proba: dict[str, np.ndarray]
    details: dict[str, Any]


def fuse(traffic: "_Traffic", scored: dict[str, Scored], labels: LabelSettings, echo: Echo) -> FusionResult:
    """Build the memory, fit the fusion on the reviewed rows and apply it to the held-out ones."""
    from trainer.fusion import MEMORY_MEMBER, RowFeatures, fit_fusion
    from trainer.members.memory import build_memory

    started = time.monotonic()
    table, _ = vote_table(traffic.before, traffic.catalog, LabelSettings.model_validate(labels))
    searches = dict(Counter(r.norm_text for r in traffic.before))
    memory = build_memory(table.actions or {}, traffic.labels, searches=searches)
    review_q, review_y = [q for q, _ in traffic.review], [label for _, label in traffic.review]
    remembered = {"test": memory.predict_proba(traffic.queries), "review": memory.predict_proba(review_q)}
    rows = {
        part: {m: scored[m].proba[part] for m in MEMBERS} | {MEMORY_MEMBER: remembered[part]}
        for part in ("review", "test")
    }
    features = {
        "review": RowFeatures.of_queries(review_q, memory),  # searches as the memory recorded them,
        "test": RowFeatures.of_queries(traffic.queries, memory),  # as a serving worker reads them
    }
    fusion = fit_fusion(rows["review"], features["review"], review_y, traffic.labels)
    proba = {MEMORY_MEMBER: remembered["test"], "fused": fusion.predict_proba(rows["test"], features["test"])}
    weights = fusion.member_weights()
    echo(
        f"      {fusion.method}: weights { ({m: round(w, 3) for m, w in weights.items()}) }, temperature "
        f"{fusion.report.get('temperature')}; memory knows {len(memory)} queries"
    )
    details = {
        **fusion.report,
        "member_weights": {m: round(w, 4) for m, w in weights.items()},
        "memory_queries": len(memory),
        "test_rows_with_memory": int(features["test"].memory_present.sum()),
        "wall_s": round(time.monotonic() - started, 2),
    }
    return FusionResult(proba, details)
