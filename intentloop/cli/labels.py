"""``intentloop labels``: aggregate weak labels, report on the labeling functions, export them, load
gold labels (``streams.labels_job``, ``intentloop.labels_report``, ``intentloop.labels_export``)."""

import json
from pathlib import Path

import click

from intentloop.cli.common import runtime
from store.dimensions import CATEGORY, DIMENSIONS
from store.exceptions import IntentloopError


@click.group()
def labels() -> None:
    """Weak labels: aggregate them per query, report on the labeling functions, load gold labels."""


@labels.command("aggregate")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--full",
    is_flag=True,
    help="Recompute from every search of the window in this process (the earlier behaviour) "
    "instead of the default incremental run; same labels, slower on big windows.",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Only fold the statistics of the queries of shard I of N (md5 of the query mod N) and exit; "
    "run all N (e.g. an indexed Kubernetes Job), then a plain `labels aggregate` to combine.",
)
def labels_aggregate(quiet: bool, full: bool, shard: str | None) -> None:
    """Re-label every query of the window from stored behaviour (INTENTLOOP_LABELS__*), in every
    label dimension (INTENTLOOP_TAXONOMY__DIMENSIONS: category, intent type).

    Position-debiased, time-decayed votes of every labeling function -> one label distribution per
    query (or an abstention), replacing the previous ones; training reads them from then on. A
    Dawid-Skene label model replaces the majority vote only where it wins on gold labels. Prints a
    summary, then one JSON line.

    By default the run is incremental: per-query statistics are kept in Postgres per time bucket
    (INTENTLOOP_LABELS__BUCKET_HOURS) and only buckets whose searches or feedback changed are
    re-read; the labels equal a --full run's (docs/labeling.md, "Incremental and sharded runs").
    """
    from intentloop.labels_report import summary_lines
    from streams.labels_incremental import Shard, fold, run_incremental
    from streams.labels_job import run_aggregation

    if full and shard:
        raise click.UsageError("--full recomputes in one process: it takes no --shard")
    try:
        parsed = Shard.parse(shard) if shard else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None
    rt = runtime()
    db = rt.ready_db()
    dimensions = rt.settings.taxonomy.dimensions
    if parsed is not None:
        summary = fold(db, rt.settings.labels, shard=parsed, dimensions=dimensions, progress=not quiet)
        click.echo(
            f"shard {summary.shard}: folded {summary.folded_buckets} bucket(s), {summary.folded_searches} "
            f"searches ({summary.current_buckets} already current) in {summary.wall_s:.1f}s"
        )
        click.echo(json.dumps(summary.as_dict()))
        return
    run = run_aggregation if full else run_incremental
    result = run(db, rt.settings.labels, dimensions=dimensions, progress=not quiet)
    for dimension, r in result.dimensions.items():
        if len(dimensions) > 1:
            click.echo(f"{dimension}:")
        for line in summary_lines(r.report_id, r.report):
            click.echo(line if len(dimensions) == 1 else f"  {line}")
    click.echo(json.dumps(result.summary(), default=str))


@labels.command("report")
@click.option("--json", "as_json", is_flag=True, help="The stored report as one JSON object.")
@click.option(
    "--dimension",
    type=click.Choice(list(DIMENSIONS)),
    default=CATEGORY,
    show_default=True,
    help="Which label dimension (INTENTLOOP_TAXONOMY__DIMENSIONS).",
)
def labels_report(as_json: bool, dimension: str) -> None:
    """The latest aggregation's report: per labeling function coverage, overlap, conflict and
    accuracy on gold labels; propensity per rank; majority vote vs the label model."""
    from intentloop.labels_report import report_lines
    from store.labels import latest_labeling_report

    rt = runtime()
    db = rt.ready_db()
    with db.session() as session:
        entry = latest_labeling_report(session, dimension)
        if entry is None:
            raise IntentloopError(
                f"no labeling report of {dimension} yet: run `intentloop labels aggregate` first"
                + ("" if dimension == CATEGORY else f" with {dimension} in INTENTLOOP_TAXONOMY__DIMENSIONS")
            )
        report_id, computed_at, report = entry.id, entry.computed_at, dict(entry.report)
    if as_json:
        click.echo(json.dumps({"id": report_id, **report}, default=str))
        return
    for line in report_lines(report_id, computed_at, report):
        click.echo(line)


@labels.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (whole or not at all) [default: stdout].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default=None,
    help="[default: csv for a .csv --out, else jsonl]",
)
@click.option(
    "--all", "include_abstained", is_flag=True, help="Also the queries the aggregation abstained on."
)
def labels_export(out: Path | None, fmt: str | None, include_abstained: bool) -> None:
    """Per-query labels of the latest aggregation: query, label, confidence, evidence, distribution,
    abstained, reason, method and every other stored column. Labelled queries only unless --all."""
    from intentloop.labels_export import export_labels, format_for

    rt = runtime()
    db = rt.ready_db()
    result = export_labels(db, out, format_for(out, fmt), include_abstained=include_abstained)
    skipped = "" if include_abstained else f" ({result.abstained} abstentions left out; --all adds them)"
    click.echo(f"exported {result.written} query labels to {out or 'stdout'}{skipped}", err=True)


@labels.group("gold")
def labels_gold() -> None:
    """Human-verified labels: what labeling functions and the label model are measured against."""


@labels_gold.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="Recorded with each label [default: the file name].")
@click.option(
    "--purpose",
    type=click.Choice(["eval", "train"]),
    default="eval",
    show_default=True,
    help="eval: measured against, never trained on; train: also a training row (of --weight).",
)
@click.option(
    "--weight",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Training weight of these rows (purpose train); weak rows weigh by their evidence.",
)
@click.option(
    "--dimension",
    type=click.Choice(list(DIMENSIONS)),
    default=CATEGORY,
    show_default=True,
    help="Which label dimension (INTENTLOOP_TAXONOMY__DIMENSIONS).",
)
def labels_gold_load(path: Path, source: str | None, purpose: str, dimension: str, weight: float) -> None:
    """Upsert gold labels from CSV (header with query,label) or JSONL ({"query": .., "label": ..}).

    Queries are normalised like search logs; category labels must be ones the catalog (or the
    closed INTENTLOOP_TAXONOMY__LABELS) knows, intent types one of buy, browse, ask, help. A bad
    row rejects the whole file. Evaluation gold is kept out of every training row and scored by
    the gate and `eval --gold`; training gold trains (its validation-bucket share is held out like
    any query). See docs/labeling.md.
    """
    from streams.gold import load_gold

    rt = runtime()
    db = rt.ready_db()
    n = load_gold(
        db,
        path,
        allowed=rt.settings.taxonomy.labels,
        source=(source or path.name)[:64],
        purpose=purpose,
        dimension=dimension,
        weight=weight,
    )
    click.echo(f"loaded {n} {dimension} gold labels for {purpose} from {path}")
