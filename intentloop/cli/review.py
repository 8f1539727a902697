"""``intentloop review``: fill the review queue, see how it stands, manage reviewer tokens."""

import hashlib
import json
import os
import secrets
from dataclasses import asdict

import click

from intentloop.cli.common import runtime
from store.dimensions import DIMENSIONS


@click.group()
def review() -> None:
    """The review queue: people label the queries worth most, on the dashboard's review page; their
    labels are gold for the gate and training."""


@review.command("select")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="Queries to queue.")
@click.option(
    "--strategy",
    type=click.Choice(["active", "random"]),
    default="active",
    show_default=True,
    help="active: uncertainty, disagreement, busy abstentions and drift, weighted by traffic, "
    "near-duplicates spread (INTENTLOOP_REVIEW__RANDOM_SHARE of it random); random: all at random.",
)
@click.option(
    "--dimension",
    type=click.Choice(list(DIMENSIONS)),
    default=None,
    help="Label dimension [default: INTENTLOOP_REVIEW__DIMENSION].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random picks.")
def review_select(budget: int, strategy: str, dimension: str | None, seed: int) -> None:
    """Queue up to BUDGET unreviewed queries for review, each with why it was chosen.

    Scores the most searched unreviewed queries (INTENTLOOP_REVIEW__POOL_MAX) with the champion,
    queues the best, and stores with each what the reviewer will see (the model's top labels, the
    weak labels and their evidence, the explanation). Prints a table, then one JSON line.
    """
    from intentloop.review.select import select

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    rt = runtime()
    result = select(rt, budget=budget, strategy=strategy, dimension=dimension, seed=seed)
    if not result.items:
        click.echo(f"nothing to queue: {result.pool} unreviewed {result.dimension} queries in the pool")
    else:
        click.echo(
            f"batch {result.batch}: {len(result.items)} of {result.pool} {result.dimension} queries, "
            f"champion {result.version or 'none (weak labels only)'}"
        )
        click.echo(
            f"{'rank':>4}  {'strategy':<8} {'score':>7} {'searches':>8}  {'suggestion':<16} query / why"
        )
        for item in result.items:
            why = "; ".join(item.reasons.get("why", [])[:2])
            click.echo(
                f"{item.rank:>4}  {item.strategy:<8} {item.score:>7.3f} {item.searches:>8}  "
                f"{(item.suggestion or '-')[:16]:<16} {item.query[:40]}  ({why})"
            )
    click.echo(json.dumps(result.summary(), ensure_ascii=False))


@review.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option(
    "--dimension",
    type=click.Choice(list(DIMENSIONS)),
    default=None,
    help="Agreement of this dimension [default: INTENTLOOP_REVIEW__DIMENSION].",
)
def review_status(as_json: bool, dimension: str | None) -> None:
    """The queue (queued, reviewed, skipped, pending) and how far reviewers agree (Cohen's kappa)."""
    from intentloop.review.agreement import agreement
    from store.review import double_reviewed, queue_counts

    rt = runtime()
    dimension = dimension or rt.settings.review.dimension
    with rt.ready_db().session() as session:
        counts = queue_counts(session)
        figures = agreement(double_reviewed(session, dimension))
    if as_json:
        out = {"queue": counts, "dimension": dimension, "agreement": asdict(figures)}
        click.echo(json.dumps(out))
        return
    click.echo("queue: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not figures.items:
        click.echo(f"agreement ({dimension}): no query labelled by two reviewers yet")
        return
    click.echo(
        f"agreement ({dimension}): {figures.items} queries labelled twice, "
        f"{_pct(figures.agreement)} agree, kappa {_num(figures.kappa)}"
    )
    for p in figures.pairs:
        click.echo(
            f"  {p.first} / {p.second}: {p.items} queries, {_pct(p.agreement)} agree, kappa {_num(p.kappa)}"
        )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


@review.group("token")
def token() -> None:
    """Reviewer tokens: what a reviewer types to sign in to the review page."""


@token.command("add")
@click.argument("name")
def token_add(name: str) -> None:
    """Give reviewer NAME a new token (replacing any old one) and print it once: only its SHA-256
    is stored, so a lost token is replaced, never recovered."""
    from store.review import add_reviewer

    if not 0 < len(name) <= 64:
        raise click.BadParameter("a reviewer name has 1 to 64 characters", param_hint="NAME")
    value = secrets.token_urlsafe(32)
    rt = runtime()
    with rt.ready_db().session() as session:
        add_reviewer(session, name, hashlib.sha256(value.encode()).hexdigest())
    click.echo(value)


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke reviewer NAME's token: the review page refuses it from now on (their labels stay)."""
    from store.review import revoke_reviewer

    rt = runtime()
    with rt.ready_db().session() as session:
        found = revoke_reviewer(session, name)
    if not found:
        raise click.ClickException(f"no active reviewer {name!r}")
    click.echo(f"revoked {name}")
