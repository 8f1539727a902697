"""The ``intentloop`` console script. Errors map to exit codes here, and only here."""

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from intentloop.drift_cli import dashboard as dashboard_cmd
from intentloop.drift_cli import drift as drift_group
from intentloop.runtime import Runtime
from intentloop.settings import Settings
from serving.settings import ServeSettings
from store.exceptions import ConfigurationError, IntentloopError, StoreUnavailableError

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _settings() -> Settings:
    """The settings, or one line naming each bad INTENTLOOP_* variable (exit code 2), not a traceback."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"INTENTLOOP_{'__'.join(str(part).upper() for part in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def _runtime(*, start_stack: bool = False) -> Runtime:
    return Runtime.from_settings(_settings(), start_stack=start_stack)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="intentloop")
def cli(verbose: bool) -> None:
    """intentloop: search feedback -> weak intent labels -> LoRA adapters -> hot-swapped inference.

    Configuration comes from INTENTLOOP_* environment variables (see README). With no server URLs
    set, commands use the embedded stack (`intentloop stack up`).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "httpx", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _quiet_dependencies()


def _quiet_dependencies() -> None:
    """Silence dependency chatter nobody running intentloop can act on, each by its exact message."""
    # peft (0.21) reads `is_gradient_checkpointing` of every model it wraps, a property transformers
    # 5 deprecated: one FutureWarning per model load that neither we nor the operator can fix.
    warnings.filterwarnings(
        "ignore",
        message="`is_gradient_checkpointing` is deprecated",
        category=FutureWarning,
        module=r"transformers\.modeling_utils",
    )
    # kafka-python 3 warns when a step of its IO thread takes over 0.1 s (not configurable through
    # KafkaProducer); a producer sharing the GIL with a busy main thread (replay parsing JSON) trips
    # it every few seconds although every record is delivered and acknowledged.
    logging.getLogger("kafka.net.selector").addFilter(_not_a_slow_task_notice)


def _not_a_slow_task_notice(record: logging.LogRecord) -> bool:
    return "blocking the event loop" not in record.getMessage()


# ---------------------------------------------------------------- stack
@cli.group()
def stack() -> None:
    """Start, stop and inspect the local servers (Tansu, PostgreSQL, Redis) for unset URLs."""


@stack.command("up")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for health.")
def stack_up(timeout: float) -> None:
    """Start every server that has no configured URL; prints the endpoints."""
    from intentloop.stack import LocalStack

    eps = LocalStack.from_settings(_settings()).up(timeout_s=timeout)
    click.echo(
        json.dumps({"kafka": eps.kafka_bootstrap, "postgres": eps.postgres_url, "redis": eps.redis_url})
    )


@stack.command("down")
def stack_down() -> None:
    """Stop the embedded servers this state directory started."""
    from intentloop.stack import LocalStack

    LocalStack.from_settings(_settings()).down()
    click.echo("stack stopped")


@stack.command("status")
def stack_status() -> None:
    """Health of each server (embedded or configured)."""
    from intentloop.stack import LocalStack

    rows = LocalStack.from_settings(_settings()).status()
    for s in rows:
        mark = "ok  " if s.healthy else "DOWN"
        kind = "embedded" if s.embedded else "configured"
        click.echo(f"{mark} {s.name:<9} {kind:<10} {s.address}  pid={s.pid or '-'}  log={s.log_path or '-'}")
    if not all(s.healthy for s in rows):
        raise SystemExit(EXIT_UNAVAILABLE)


# ---------------------------------------------------------------- db
@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head (idempotent)."""
    from store.migrate import current, upgrade

    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    click.echo(f"database at revision {current(rt.endpoints.postgres_url)}")


# ---------------------------------------------------------------- status
@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def status_cmd(as_json: bool) -> None:
    """What is stored and whether ingestion has caught up.

    Counts of searches, feedback by status, dead letters by reason, weak-label queries, aggregated
    labels (labelled / abstained by reason), gold labels, catalog, adapter versions and the
    champion; then the ingestion consumer group's committed offset, end offset and lag per
    partition. An unreachable Postgres or Kafka is one error line (exit code 3) after the rest.
    """
    from intentloop.status import collect_status

    status = collect_status(_runtime())
    if as_json:
        click.echo(json.dumps(status.as_dict(), default=str))
    else:
        for line in status.lines():
            click.echo(line)
    status.raise_unavailable()


# ---------------------------------------------------------------- workers
@cli.group()
def worker() -> None:
    """Long-running workers."""


@worker.command("ingest")
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Stop once every partition is read to its end and committed (a backfill); prints a JSON summary.",
)
def worker_ingest(until_caught_up: bool) -> None:
    """Ingestion worker: search.queries + search.feedback -> Postgres weak labels; SIGTERM stops it.

    With --until-caught-up it stops by itself when the consumer group's lag is zero (see
    `intentloop status`), exit code 130 if a signal stopped it first.
    """
    from store.migrate import upgrade
    from streams.ingestion.worker import run_ingest_worker
    from streams.kafka import ensure_topics

    rt = _runtime()
    s = rt.settings
    upgrade(rt.endpoints.postgres_url)
    ensure_topics(
        rt.endpoints.kafka_bootstrap,
        partitions=s.kafka.partitions,
        replication_factor=s.kafka.replication_factor,
    )
    counters = run_ingest_worker(
        rt.endpoints.kafka_bootstrap, s.ingest, rt.db, until_caught_up=until_caught_up
    )
    if until_caught_up:
        click.echo(json.dumps(asdict(counters)))
        if not counters.caught_up:
            click.echo("stopped before catching up", err=True)
            raise SystemExit(130)


@worker.command("serve")
@click.option("--port", type=int, default=None, help="Overrides INTENTLOOP_SERVE__PORT.")
@click.option("--worker-id", default=None, help="Name shown in the registry (default host-pid).")
def worker_serve(port: int | None, worker_id: str | None) -> None:
    """Inference worker: POST /v1/intent, hot-swaps to each promoted adapter."""
    rt = _runtime()
    serve = rt.settings.serve if port is None else rt.settings.serve.model_copy(update={"port": port})
    _passive_openmp(serve)
    from serving.worker import run_serve

    run_serve(rt.db, rt.registry, rt.artifacts, rt.settings.model, serve, worker_id=worker_id)


@worker.command("predict")
@click.option("--worker-id", default=None, help="Name shown in the registry (default host-pid).")
def worker_predict(worker_id: str | None) -> None:
    """Stream inference agent: search.queries -> intent.predictions, hot-swapping like `worker serve`."""
    rt = _runtime()
    s = rt.settings
    _passive_openmp(s.serve)
    from serving.agent import run_predict_agent
    from streams.kafka import ensure_topics

    ensure_topics(
        rt.endpoints.kafka_bootstrap,
        partitions=s.kafka.partitions,
        replication_factor=s.kafka.replication_factor,
    )
    run_predict_agent(
        rt.endpoints.kafka_bootstrap, rt.db, rt.registry, rt.artifacts, s.model, s.serve, worker_id=worker_id
    )


def _passive_openmp(serve: ServeSettings) -> None:
    """Before torch loads: idle OpenMP threads sleep instead of spinning. A worker's model thread
    shares the cores with its event loop, and threads spinning for ~100 ms after each micro-batch
    steal exactly the CPU the next requests need (p99 at half rate 67 -> 45 ms in `bench serve`).
    An explicit OMP_WAIT_POLICY in the environment wins."""
    if serve.omp_passive:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# ---------------------------------------------------------------- training and registry
@cli.group("train", invoke_without_command=True)
@click.option("--promote/--no-promote", default=False, help="Promote the candidate if the gate blesses it.")
@click.option(
    "--min-macro-f1",
    type=float,
    default=None,
    help="Gate: held-out macro-F1 floor [default: INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1, 0.5].",
)
@click.option(
    "--full-ft/--no-full-ft",
    default=None,
    help="Also fully fine-tune the encoder as a baseline (slow) [default: INTENTLOOP_TRAIN__GATE__FULL_FT].",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--resume",
    type=int,
    is_flag=False,
    flag_value=-1,
    default=None,
    metavar="[RUN_ID]",
    help="Continue an interrupted or failed run from its last epoch checkpoint (default: the latest run).",
)
@click.pass_context
def train(
    ctx: click.Context,
    promote: bool,
    min_macro_f1: float | None,
    full_ft: bool | None,
    quiet: bool,
    resume: int | None,
) -> None:
    """Snapshot labels, fine-tune an adapter, gate it against the champion and baselines.

    The gate's decision and reasons go to stderr as one line and into the JSON on stdout
    ("gate"); it is recorded in Postgres either way. With --promote only a blessed candidate
    becomes the champion. One training at a time: a second one is refused while another holds
    the training lock. `intentloop train schedule` runs refreshes on a cron expression and on drift.
    """
    if ctx.invoked_subcommand is not None:
        return
    from intentloop.jobs import train_and_maybe_promote

    rt = _runtime()
    result = train_and_maybe_promote(
        rt, promote=promote, min_macro_f1=min_macro_f1, full_ft=full_ft, progress=not quiet, resume=resume
    )
    gate = result["gate"]
    verdict = "BLESSED" if gate["blessed"] else "REJECTED"
    promoted = "promoted" if result["promoted"] else result.get("promotion", "not promoted")
    click.echo(f"gate: {verdict} {result['version']} ({promoted}): {'; '.join(gate['reasons'])}", err=True)
    click.echo(json.dumps(result, indent=2, default=str))


@train.command("schedule")
@click.option("--promote/--no-promote", default=True, show_default=True, help="Promote blessed candidates.")
@click.option("--once", is_flag=True, help="One tick (resume / drift refresh / due cron run), then exit.")
@click.option("--next", "show_next", type=int, default=None, help="Print the next N fire times and exit.")
def train_schedule(promote: bool, once: bool, show_next: int | None) -> None:
    """Refresh on INTENTLOOP_TRAIN__SCHEDULE (cron, UTC; nightly by default) and on drift requests.

    Polls the Redis key <prefix>:refresh:requested (set by the drift job) every
    INTENTLOOP_TRAIN__POLL_S seconds, resumes interrupted runs, and takes the training lock for
    each run. SIGTERM stops it; a run in progress is recorded interrupted and resumed next time.
    """
    from intentloop.schedule import Scheduler, install_stop_handlers, upcoming

    settings = _settings()
    if show_next is not None:
        for at in upcoming(settings.train.schedule, show_next):
            click.echo(at.isoformat())
        return
    rt = Runtime.from_settings(settings)
    scheduler = Scheduler(rt, promote=promote)
    if once:
        outcome = scheduler.tick()
        click.echo(
            json.dumps(
                {"action": outcome.action, "error": outcome.error, "result": outcome.result}, default=str
            )
        )
        if outcome.error:
            raise SystemExit(EXIT_ERROR)
        return
    install_stop_handlers(scheduler)
    try:
        scheduler.run_forever()
    finally:
        rt.close()


@cli.command("eval")
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
    report = evaluate_gold(_runtime(), gold, version)
    note = merge_note(gold)
    if note:
        click.echo(note, err=True)
    click.echo(json.dumps({"gold_file": str(gold_path), **report}, default=str))


@cli.group()
def registry() -> None:
    """Adapter versions and the champion alias."""


@registry.command("list")
def registry_list() -> None:
    """Every recorded version, newest first; * marks the champion; gate= its latest gate verdict."""
    from store.evaluations import latest_gate_by_version
    from store.versions import list_versions, reconcile_alias

    rt = _runtime()
    champion = reconcile_alias(rt.db, rt.registry)
    with rt.db.session() as session:
        verdicts = latest_gate_by_version(session)
        for v in list_versions(session):
            f1 = v.metrics.get("val_macro_f1")
            mark = "*" if v.version == champion else " "
            f1_s = f"{f1:.3f}" if isinstance(f1, float) else "-"
            when = f"{v.created_at:%Y-%m-%d %H:%M:%S}"
            judged = verdicts.get(v.version)
            verdict = "-" if judged is None else ("blessed" if judged else "rejected")
            click.echo(
                f"{mark} {v.version}  {when}  val_macro_f1={f1_s}  gate={verdict}  run={v.training_run_id}"
            )


_MARKET = click.option("--market", default=None, help="The market's aliases (default: the default market).")


@registry.command("promote")
@click.argument("version")
@click.option("--reason", default="manual promotion", show_default=True)
@_MARKET
def registry_promote(version: str, reason: str, market: str | None) -> None:
    """Make VERSION the champion (of --market); workers switch to it without restarting."""
    from store.versions import CHAMPION, alias_name, promote

    rt = _runtime()
    alias = alias_name(CHAMPION, market)
    move = promote(rt.db, rt.registry, version, actor=_actor(), reason=reason, alias=alias)
    click.echo(f"{move.alias}: {move.previous} -> {move.version}")


@registry.command("rollback")
@click.option("--reason", default="manual rollback", show_default=True)
@_MARKET
def registry_rollback(reason: str, market: str | None) -> None:
    """Point the champion (of --market) back at the version before its latest move."""
    from store.versions import CHAMPION, alias_name, rollback

    rt = _runtime()
    move = rollback(rt.db, rt.registry, actor=_actor(), reason=reason, alias=alias_name(CHAMPION, market))
    click.echo(f"{move.alias}: {move.previous} -> {move.version}")


@registry.group("canary")
def registry_canary() -> None:
    """The canary alias: a share of sessions (INTENTLOOP_SERVE__CANARY_SHARE) tries a version first."""


@registry_canary.command("start")
@click.argument("version")
@click.option("--reason", default="canary started", show_default=True)
@_MARKET
def registry_canary_start(version: str, reason: str, market: str | None) -> None:
    """Send the canary share of sessions to VERSION; the rest stays on the champion."""
    from store.versions import CANARY, alias_name, promote

    rt = _runtime()
    move = promote(
        rt.db, rt.registry, version, actor=_actor(), reason=reason, alias=alias_name(CANARY, market)
    )
    click.echo(f"{move.alias}: {move.previous} -> {move.version}")


@registry_canary.command("promote")
@click.option("--reason", default="canary promoted", show_default=True)
@_MARKET
def registry_canary_promote(reason: str, market: str | None) -> None:
    """Make the canary's version the champion and retire the canary."""
    from store.versions import graduate_canary

    rt = _runtime()
    move = graduate_canary(rt.db, rt.registry, actor=_actor(), reason=reason, market=market)
    click.echo(f"{move.alias}: {move.previous} -> {move.version} (canary retired)")


@registry_canary.command("rollback")
@click.option("--reason", default="canary rolled back", show_default=True)
@_MARKET
def registry_canary_rollback(reason: str, market: str | None) -> None:
    """Retire the canary: all of its sessions return to the champion."""
    from store.versions import CANARY, alias_name, retire_alias

    rt = _runtime()
    move = retire_alias(rt.db, rt.registry, alias_name(CANARY, market), actor=_actor(), reason=reason)
    click.echo(f"{move.alias}: {move.version} retired")


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


# ---------------------------------------------------------------- traffic
@cli.command("simulate")
@click.option("--searches", default=10_000, show_default=True, help="Number of simulated searches.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same events.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JSONL (.gz ok) instead of producing to Kafka.",
)
@click.option("--malformed", default=0, show_default=True, help="Add this many malformed events.")
@click.option("--unknown-product", default=0, show_default=True, help="Add clicks on unknown products.")
@click.option(
    "--profile",
    type=click.Choice(["shop", "long_tail"]),
    default="shop",
    show_default=True,
    help="shop: a busy few minutes, head queries repeated; long_tail: ~10 weeks of a click log, "
    "most queries searched once, one click and no purchase the common case.",
)
def simulate_cmd(
    searches: int, seed: int, out: Path | None, malformed: int, unknown_product: int, profile: str
) -> None:
    """Synthetic shop traffic with known ground truth (catalog, long-tail queries, biased clicks).

    To Kafka (and the catalog into Postgres), or with --out to FILE plus FILE.catalog.jsonl and
    FILE.truth.json (normalised query -> true category path).
    """
    from store.catalog import load_catalog
    from store.migrate import upgrade
    from streams.codec import write_catalog_jsonl, write_jsonl
    from streams.kafka import ensure_topics
    from streams.simulator import SimConfig, simulate
    from streams.simulator.publish import produce, traffic_records

    if profile == "long_tail":
        sim = simulate(SimConfig.long_tail(seed=seed, n_searches=searches))
    else:
        sim = simulate(SimConfig(seed=seed, n_searches=searches))
    if out is not None:
        n = write_jsonl(out, sim.events())
        write_catalog_jsonl(out.with_name(out.name + ".catalog.jsonl"), sim.catalog)
        out.with_name(out.name + ".truth.json").write_text(json.dumps(sim.truth, indent=0, sort_keys=True))
        click.echo(f"wrote {n} events, {len(sim.catalog)} products and ground truth next to {out}")
        return
    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    with rt.db.session() as session:
        load_catalog(session, [p.model_dump() for p in sim.catalog], rt.settings.taxonomy)
    ensure_topics(
        rt.endpoints.kafka_bootstrap,
        partitions=rt.settings.kafka.partitions,
        replication_factor=rt.settings.kafka.replication_factor,
    )
    records, counts = traffic_records(sim, malformed=malformed, unknown_product=unknown_product, seed=seed)
    produce(rt.endpoints.kafka_bootstrap, records)
    click.echo(
        json.dumps(
            {
                "produced": counts.total,
                "queries": counts.queries,
                "feedback": counts.feedback,
                "malformed": counts.malformed,
                "products": len(sim.catalog),
            }
        )
    )


@cli.command("replay")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--speed",
    default=0.0,
    show_default=True,
    help="0: as fast as possible; 1: real time by the records' timestamps; 60: an hour a minute.",
)
@click.option(
    "--csv-topic",
    type=click.Choice(["search.queries", "search.feedback"]),
    default=None,
    help="PATH is a CSV export of this topic (else JSONL as written by `simulate --out`).",
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="CSV column for an event field, e.g. --map query_id=qid (repeat; default same names).",
)
def replay_cmd(path: Path, speed: float, csv_topic: str | None, mapping: tuple[str, ...]) -> None:
    """Replay recorded logs into Kafka so a shop can backfill from its own history."""
    from streams.kafka import EventProducer, ensure_topics
    from streams.replay import ReplayReport, read_csv, read_jsonl, replay, require_sent

    rt = _runtime()
    ensure_topics(
        rt.endpoints.kafka_bootstrap,
        partitions=rt.settings.kafka.partitions,
        replication_factor=rt.settings.kafka.replication_factor,
    )
    report = ReplayReport()
    if csv_topic is None:
        records = read_jsonl(path, report)
    else:
        pairs: dict[str, str] = {}
        for item in mapping:
            name, sep, column = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r}: expected FIELD=COLUMN", param_hint="--map")
            pairs[name] = column
        records = read_csv(path, csv_topic, pairs)
    with EventProducer(rt.endpoints.kafka_bootstrap) as producer:
        replay(records, producer, report, speed=speed)
    click.echo(
        json.dumps(
            {
                "sent": report.sent,
                "by_topic": report.by_topic,
                "unreadable_lines": report.unreadable_lines[:20],
                "unreadable": len(report.unreadable_lines),
            }
        )
    )
    require_sent(report, path)  # nothing sent: exit code 1, after the summary


@cli.group()
def catalog() -> None:
    """The product catalog (product id -> category path, title)."""


@catalog.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_load(path: Path) -> None:
    """Upsert products from a JSONL file in the documented schema (docs/schemas/catalog.schema.json)."""
    from store.catalog import load_catalog
    from store.migrate import upgrade
    from streams.codec import read_catalog_jsonl

    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    products = [p.model_dump() for p in read_catalog_jsonl(path)]
    with rt.db.session() as session:
        n = load_catalog(session, products, rt.settings.taxonomy)
    click.echo(f"loaded {n} products")


# ---------------------------------------------------------------- labels
@cli.group()
def labels() -> None:
    """Weak labels: aggregate them per query, report on the labeling functions, load gold labels."""


@labels.command("aggregate")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def labels_aggregate(quiet: bool) -> None:
    """Re-label every query of the window from stored behaviour (INTENTLOOP_LABELS__*).

    Position-debiased, time-decayed votes of every labeling function -> one label distribution per
    query (or an abstention), replacing the previous ones; training reads them from then on. A
    Dawid-Skene label model replaces the majority vote only where it wins on gold labels. Prints a
    summary, then one JSON line.
    """
    from intentloop.labels_report import summary_lines
    from store.migrate import upgrade
    from streams.labels_job import run_aggregation

    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    result = run_aggregation(rt.db, rt.settings.labels, progress=not quiet)
    for line in summary_lines(result.report_id, result.report):
        click.echo(line)
    click.echo(json.dumps(result.summary(), default=str))


@labels.command("report")
@click.option("--json", "as_json", is_flag=True, help="The stored report as one JSON object.")
def labels_report(as_json: bool) -> None:
    """The latest aggregation's report: per labeling function coverage, overlap, conflict and
    accuracy on gold labels; propensity per rank; majority vote vs the label model."""
    from intentloop.labels_report import report_lines
    from store.labels import latest_labeling_report
    from store.migrate import upgrade

    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    with rt.db.session() as session:
        entry = latest_labeling_report(session)
        if entry is None:
            raise IntentloopError("no labeling report yet: run `intentloop labels aggregate` first")
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
    from store.migrate import upgrade

    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    result = export_labels(rt.db, out, format_for(out, fmt), include_abstained=include_abstained)
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
    help="eval: measured against, never trained on; train: also a training row (weight 1).",
)
def labels_gold_load(path: Path, source: str | None, purpose: str) -> None:
    """Upsert gold labels from CSV (header with query,label) or JSONL ({"query": .., "label": ..}).

    Queries are normalised like search logs; labels must be ones the catalog (or the closed
    INTENTLOOP_TAXONOMY__LABELS) knows. A bad row rejects the whole file. Evaluation gold is kept
    out of every training row and scored by the gate and `eval --gold`; training gold trains (its
    validation-bucket share is held out like any query). See docs/labeling.md.
    """
    from store.migrate import upgrade
    from streams.gold import load_gold

    rt = _runtime()
    upgrade(rt.endpoints.postgres_url)
    n = load_gold(
        rt.db, path, allowed=rt.settings.taxonomy.labels, source=(source or path.name)[:64], purpose=purpose
    )
    click.echo(f"loaded {n} gold labels for {purpose} from {path}")


# ---------------------------------------------------------------- demo
@cli.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object, last line.")
@click.option("--searches", default=6000, show_default=True, help="Simulated searches.")
@click.option("--seed", default=7, show_default=True)
@click.option("--keep-stack", is_flag=True, help="Leave the demo's servers running afterwards.")
def demo(as_json: bool, searches: int, seed: int, keep_stack: bool) -> None:
    """The whole loop on a fresh embedded stack: traffic -> labels -> adapter -> promoted -> served.

    Uses its own servers under <state_dir>/demo on free ports (configured URLs are not touched),
    so every run starts from empty and is reproducible for a seed.
    """
    from intentloop.demo import run_demo

    summary = run_demo(_settings(), searches=searches, seed=seed, echo=click.echo, keep_stack=keep_stack)
    if as_json:
        click.echo(json.dumps(summary, default=str))


# ---------------------------------------------------------------- benchmarks
@cli.group()
def bench() -> None:
    """Benchmarks: they print numbers (JSON on the last line) and assert nothing."""


@bench.command("ingest")
@click.option("--events", default=1_000_000, show_default=True, help="Approximate stream size.")
@click.option("--seed", default=11, show_default=True)
@click.option("--rate", type=float, default=None, help="Latency phase events/s [default: half the max].")
@click.option("--latency-seconds", default=25.0, show_default=True, help="Length of the latency phase.")
@click.option("--keep-stack", is_flag=True, help="Leave the benchmark's servers running afterwards.")
def bench_ingest(
    events: int, seed: int, rate: float | None, latency_seconds: float, keep_stack: bool
) -> None:
    """End-to-end ingest speed vs a raw consume + COPY baseline, label latency and worker memory.

    Uses its own servers under <state_dir>/bench on free ports for every unset URL (configured
    servers must be empty, and Postgres needs track_commit_timestamp=on).
    """
    from intentloop.bench.ingest import BenchOptions, run_ingest_bench

    opts = BenchOptions(events, seed, rate, latency_seconds, keep_stack)
    summary = run_ingest_bench(_settings(), opts, echo=click.echo)
    click.echo(json.dumps(summary, default=str))


@bench.command("train")
@click.option("--queries", default=50_000, show_default=True, help="Labelled simulated searches.")
@click.option("--seed", default=17, show_default=True, help="Same seed, same snapshot.")
@click.option(
    "--full-ft/--no-full-ft",
    default=True,
    show_default=True,
    help="Also fully fine-tune the encoder (the slowest phase; off reports nulls).",
)
@click.option("--epochs", default=1, show_default=True, help="Epochs for LoRA and full fine-tuning.")
@click.option(
    "--traffic",
    type=click.Choice(["long_tail", "shop"]),
    default="long_tail",
    show_default=True,
    help="Simulated traffic: a real click log's long tail, or the busy shop of the demo.",
)
@click.option(
    "--labels",
    "labels_from",
    type=click.Choice(["weak", "truth"]),
    default="weak",
    show_default=True,
    help="weak: the loop's own labeling (today's threshold vs the configured policy); truth: intents.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench_train(
    queries: int, seed: int, full_ft: bool, epochs: int, traffic: str, labels_from: str, quiet: bool
) -> None:
    """LoRA vs full fine-tuning vs TF-IDF on a fixed simulated snapshot, held out by query.

    Prints speed (samples/s, wall time, trainable parameters, device) and quality (macro-F1
    overall and on the head/torso/tail slices) of each; with weak labels (default) also the labels'
    coverage and accuracy per evidence bucket and the soft-vs-hard and new-vs-old label policy
    comparisons (McNemar). Needs no servers.
    """
    from intentloop.bench.train import TrainBenchOptions, run_train_bench

    if queries < 100 or epochs < 1:
        raise click.BadParameter("need --queries >= 100 and --epochs >= 1")
    opts = TrainBenchOptions(
        queries=queries,
        seed=seed,
        full_ft=full_ft,
        epochs=epochs,
        progress=not quiet,
        traffic=traffic,
        labels=labels_from,
    )
    summary = run_train_bench(_settings(), opts, echo=click.echo)
    click.echo(json.dumps(summary, default=str))


@bench.command("serve")
@click.option("--clients", default=32, show_default=True, help="Concurrent HTTP clients (max-rate phase).")
@click.option("--seconds", default=10.0, show_default=True, help="Length of each timed phase.")
@click.option("--batch1-requests", default=300, show_default=True, help="Sequential single requests.")
@click.option("--seed", default=5, show_default=True, help="Synthetic adapter and query set.")
def bench_serve(clients: int, seconds: float, batch1_requests: int, seed: int) -> None:
    """HTTP inference speed of one worker vs the same adapter called directly in batches.

    Prints qps (max, concurrent clients), p50/p99 at half that rate, raw_qps, ratio_vs_raw and
    batch1_p50_ms. Configured Postgres gets a scratch database; unset URLs get embedded servers.
    """
    from intentloop.bench.serve import ServeBenchOptions, run_serve_bench

    opts = ServeBenchOptions(clients=clients, seconds=seconds, batch1_requests=batch1_requests, seed=seed)
    click.echo(json.dumps(run_serve_bench(_settings(), opts, echo=click.echo), default=str))


@bench.command("swap")
@click.option("--swaps", default=5, show_default=True, help="Promotions of a new adapter.")
@click.option("--rate", default=100.0, show_default=True, help="Requests/s to each of the two workers.")
@click.option("--interval", default=3.0, show_default=True, help="Seconds between promotions.")
@click.option("--seed", default=21, show_default=True)
def bench_swap(swaps: int, rate: float, interval: float, seed: int) -> None:
    """Two workers under steady load while new adapters are promoted: swap latency, failures, mixing."""
    from intentloop.bench.swap import SwapBenchOptions, run_swap_bench

    opts = SwapBenchOptions(swaps=swaps, rate=rate, interval_s=interval, seed=seed)
    click.echo(json.dumps(run_swap_bench(_settings(), opts, echo=click.echo), default=str))


# ---------------------------------------------------------------- drift monitoring (intentloop/drift_cli.py)
cli.add_command(drift_group)
cli.add_command(dashboard_cmd)


def _exit_code(exc: IntentloopError) -> int:
    from streams.kafka import KafkaUnavailableError  # the Kafka client loads on this error path only

    if isinstance(exc, ConfigurationError):
        return EXIT_CONFIG
    if isinstance(exc, StoreUnavailableError | KafkaUnavailableError):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the click group and turns our errors into one line and an exit code."""
    runner: Callable[..., Any] = cli.main
    try:
        runner(args=argv, prog_name="intentloop", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except IntentloopError as exc:
        message = " ".join(str(exc).split())  # one line, whatever a driver's message spans
        click.echo(f"error: {message}", err=True)
        raise SystemExit(_exit_code(exc)) from None


if __name__ == "__main__":
    main()
