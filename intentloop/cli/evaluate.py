"""``intentloop eval --gold``: score an adapter on a gold file (``intentloop.gold_eval``)."""

import json
import os
from pathlib import Path

import click

from intentloop.cli.common import runtime


@click.command("eval")
@click.option(
    "--gold",
    "gold_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV (header with query,label) or JSONL ({'query': .., 'label': ..}).",
)
@click.option("--version", "version", default=None, help="Adapter version [default: the champion].")
def eval_cmd(gold_path: Path, version: str | None) -> None:
    """Evaluate an adapter on gold labels; prints one JSON report.

    Accuracy, macro-F1, per-class precision/recall/F1, expected calibration error (15 bins) and
    head/torso/tail slices by how often each query was searched, plus "unseen" for gold queries
    never searched (see trainer/evaluation.py). Scored on distinct queries: "rows", "distinct_queries"
    and "merged" say what repeated queries in the file were folded into.
    """
    from intentloop.gold_eval import evaluate_gold, merge_note, read_gold

    gold = read_gold(gold_path)  # a bad file is refused before any server is contacted
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar
    report = evaluate_gold(runtime(), gold, version)
    note = merge_note(gold)
    if note:
        click.echo(note, err=True)
    click.echo(json.dumps({"gold_file": str(gold_path), **report}, default=str))
