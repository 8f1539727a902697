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
from store.models import AdapterVersion
from store.versions import recorded_alias
from streams.gold import MergedGold, merge_gold, read_gold_file
from trainer.evaluation import Predictor, evaluate, frequency_slices, predict
from trainer.metrics import accuracy, macro_f1


def read_gold(path: Path) -> MergedGold:
    """The file, one row per normalised query; raises before any server is contacted."""
    return merge_gold(read_gold_file(path))


def evaluate_gold(rt: Runtime, gold: MergedGold, version: str | None = None) -> dict[str, Any]:
    """The evaluation report of ``version`` (default: the champion) on ``gold``'s distinct queries.

    The report opens with ``version``, ``rows`` (of the file), ``distinct_queries`` (scored; the
    ``n`` of the metrics), ``scored_on``, ``merged`` and ``by_row`` (the same model scored on every
    file row), then the metrics of
    :func:`trainer.evaluation.evaluate` (slices by the store's search counts, ``unseen`` for gold
    queries nobody searched).
    """
    from trainer.artifact import load_for_inference  # torch: only when scoring
    from trainer.classifier import resolve_base_dir

    with rt.ready_db().session() as session:
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
    by_row = score_rows(model, gold)
    return {"version": version, **gold.summary(), "scored_on": "distinct_queries", "by_row": by_row, **report}


def score_rows(model: Predictor, gold: MergedGold) -> dict[str, Any]:
    """Accuracy and macro-F1 over every row of the file (a repeated query once per row, each with its
    own label): what an annotator's spreadsheet scores, next to the distinct-query report."""
    predicted, _ = predict(model, [q for q, _ in gold.rows])
    truth: list[str] = []
    guesses: list[str] = []
    for (query, label), guess in zip(gold.rows, predicted, strict=True):
        for row_label in gold.repeated.get(query, [label]):
            truth.append(row_label)
            guesses.append(guess)
    return {
        "n": len(truth),
        "accuracy": round(accuracy(truth, guesses), 6) if truth else None,
        "macro_f1": round(macro_f1(truth, guesses), 6) if truth else None,
    }


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
