"""`intentloop eval --gold`: score a stored adapter on a gold file, saying exactly what was scored.

It spans layers (a gold file read by ``streams``, versions and traffic from ``store``, the model
and the metrics from ``trainer``), so it lives in the composition root; the CLI only prints.
Gold files repeat queries, so the report says how many file rows there were, how many distinct
queries were scored and what merging them decided (:class:`streams.gold.MergedGold`).
"""

from pathlib import Path
from typing import Any

from intentloop.runtime import Runtime
from store.evaluations import query_frequencies
from store.exceptions import IntentloopError, VersionNotFoundError
from store.migrate import upgrade
from store.models import AdapterVersion
from store.versions import recorded_alias
from streams.gold import MergedGold, merge_gold, read_gold_file
from trainer.evaluation import evaluate, frequency_slices


def read_gold(path: Path) -> MergedGold:
    """The file, one row per normalised query; raises before any server is contacted."""
    return merge_gold(read_gold_file(path))


def evaluate_gold(rt: Runtime, gold: MergedGold, version: str | None = None) -> dict[str, Any]:
    """The evaluation report of ``version`` (default: the champion) on ``gold``'s distinct queries.

    The report opens with ``version``, ``rows`` (of the file), ``distinct_queries`` (scored; the
    ``n`` of the metrics), ``scored_on`` and ``merged``, then the metrics of
    :func:`trainer.evaluation.evaluate` (slices by the store's search counts, ``unseen`` for gold
    queries nobody searched).
    """
    from trainer.model import load_for_inference, resolve_base_dir  # torch: only when scoring

    upgrade(rt.endpoints.postgres_url)
    with rt.db.session() as session:
        version = version or recorded_alias(session)
        if version is None:
            raise IntentloopError(
                "no champion yet: pass --version (see `intentloop registry list`) or promote one"
            )
        if session.get(AdapterVersion, version) is None:
            raise VersionNotFoundError(f"no adapter version {version!r}; see `intentloop registry list`")
        counts = query_frequencies(session)
    path, _ = rt.artifacts.fetch(version)
    model = load_for_inference(resolve_base_dir(rt.settings.model.base_dir), path)
    gate = rt.settings.train.gate
    bounds = frequency_slices(counts, gate.head_share, gate.torso_share)
    report = evaluate(model, gold.rows, counts, bounds)
    return {"version": version, **gold.summary(), "scored_on": "distinct_queries", **report}


def merge_note(gold: MergedGold) -> str | None:
    """One line for stderr when rows were merged (the JSON has the details), else ``None``."""
    summary = gold.summary()
    merged = summary["merged"]
    if not merged["rows"]:
        return None
    return (
        f"eval: {summary['rows']} gold rows -> {summary['distinct_queries']} distinct queries scored "
        f"({merged['rows']} duplicate rows merged; {merged['disagreeing_queries']} queries disagree, "
        "the later row's label is used)"
    )
