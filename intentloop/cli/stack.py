"""``intentloop stack up|down|status``: the local servers (``intentloop.stack``)."""

import json

import click

from intentloop.cli.common import load_settings
from intentloop.exceptions import CommandFailedError


@click.group()
def stack() -> None:
    """Start, stop and inspect the local servers (Tansu, PostgreSQL, Redis) for unset URLs."""


@stack.command("up")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for health.")
def stack_up(timeout: float) -> None:
    """Start every server that has no configured URL; prints the endpoints."""
    from intentloop.stack import LocalStack

    eps = LocalStack.from_settings(load_settings()).up(timeout_s=timeout)
    click.echo(
        json.dumps({"kafka": eps.kafka_bootstrap, "postgres": eps.postgres_url, "redis": eps.redis_url})
    )


@stack.command("down")
def stack_down() -> None:
    """Stop the embedded servers this state directory started."""
    from intentloop.stack import LocalStack

    LocalStack.from_settings(load_settings()).down()
    click.echo("stack stopped")


@stack.command("status")
def stack_status() -> None:
    """Health of each server (embedded or configured)."""
    from intentloop.stack import LocalStack

    rows = LocalStack.from_settings(load_settings()).status()
    for s in rows:
        mark = "ok  " if s.healthy else "DOWN"
        kind = "embedded" if s.embedded else "configured"
        click.echo(f"{mark} {s.name:<9} {kind:<10} {s.address}  pid={s.pid or '-'}  log={s.log_path or '-'}")
    if not all(s.healthy for s in rows):
        raise CommandFailedError("unavailable")  # the DOWN rows above say which
