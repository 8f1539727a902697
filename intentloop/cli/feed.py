"""What feeds the loop: ``simulate`` (synthetic traffic), ``replay`` (a shop's recorded logs) and
``catalog load`` (its products)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from intentloop.cli.common import runtime, shoppers_option

if TYPE_CHECKING:
    from streams.simulator import SimConfig


@click.command("simulate")
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
@shoppers_option
def simulate_cmd(
    searches: int,
    seed: int,
    out: Path | None,
    malformed: int,
    unknown_product: int,
    profile: str,
    shoppers: str,
) -> None:
    """Synthetic shop traffic with known ground truth (catalog, long-tail queries, biased clicks).

    To Kafka (and the catalog into Postgres), or with --out to FILE plus FILE.catalog.jsonl and
    FILE.truth.json (normalised query -> true category path).
    """
    from intentloop.traffic import send_traffic, sim_config

    config = sim_config(profile, seed=seed, searches=searches, shoppers=shoppers)
    if out is not None:
        _write_simulation(out, config)
        return
    sim, counts = send_traffic(runtime(), config, malformed=malformed, unknown_product=unknown_product)
    summary = {
        "produced": counts.total,
        "queries": counts.queries,
        "feedback": counts.feedback,
        "malformed": counts.malformed,
        "products": len(sim.catalog),
    }
    click.echo(json.dumps(summary))


def _write_simulation(out: Path, config: "SimConfig") -> None:
    """The events to ``out``, the catalog and the ground truth next to it."""
    from streams.codec import write_catalog_jsonl, write_jsonl
    from streams.simulator import simulate

    sim = simulate(config)
    n = write_jsonl(out, sim.events())
    write_catalog_jsonl(out.with_name(out.name + ".catalog.jsonl"), sim.catalog)
    out.with_name(out.name + ".truth.json").write_text(json.dumps(sim.truth, indent=0, sort_keys=True))
    click.echo(f"wrote {n} events, {len(sim.catalog)} products and ground truth next to {out}")


@click.command("replay")
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
    from streams.kafka import EventProducer
    from streams.replay import ReplayReport, read_csv, read_jsonl, replay, require_sent

    rt = runtime()
    rt.ready_topics()
    report = ReplayReport()
    if csv_topic is None:
        records = read_jsonl(path, report)
    else:
        records = read_csv(path, csv_topic, _column_map(mapping))
    with EventProducer(rt.endpoints.kafka_bootstrap) as producer:
        replay(records, producer, report, speed=speed)
    summary = {
        "sent": report.sent,
        "by_topic": report.by_topic,
        "unreadable_lines": report.unreadable_lines[:20],
        "unreadable": len(report.unreadable_lines),
    }
    click.echo(json.dumps(summary))
    require_sent(report, path)  # nothing sent: exit code 1, after the summary


def _column_map(mapping: tuple[str, ...]) -> dict[str, str]:
    """``--map FIELD=COLUMN`` options as a dict; a malformed one is a usage error."""
    pairs: dict[str, str] = {}
    for item in mapping:
        name, sep, column = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected FIELD=COLUMN", param_hint="--map")
        pairs[name] = column
    return pairs


@click.group()
def catalog() -> None:
    """The product catalog (product id -> category path, title)."""


@catalog.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_load(path: Path) -> None:
    """Upsert products from a JSONL file in the documented schema (docs/schemas/catalog.schema.json)."""
    from store.catalog import load_catalog
    from streams.codec import read_catalog_jsonl

    rt = runtime()
    db = rt.ready_db()
    products = [p.model_dump() for p in read_catalog_jsonl(path)]
    with db.session() as session:
        n = load_catalog(session, products, rt.settings.taxonomy)
    click.echo(f"loaded {n} products")
