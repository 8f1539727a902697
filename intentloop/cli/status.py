"""``intentloop status``: what is stored and how far ingestion is behind (``intentloop.status``)."""

import json

import click

from intentloop.cli.common import runtime


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def status_cmd(as_json: bool) -> None:
    """What is stored and whether ingestion has caught up.

    Counts of searches, feedback by status, dead letters by reason, weak-label queries, aggregated
    labels (labelled / abstained by reason), gold labels, catalog, adapter versions and the
    champion; then the ingestion consumer group's committed offset, end offset and lag per
    partition. An unreachable Postgres or Kafka is one error line (exit code 3) after the rest.
    """
    from intentloop.status import collect_status

    status = collect_status(runtime())
    if as_json:
        click.echo(json.dumps(status.as_dict(), default=str))
    else:
        for line in status.lines():
            click.echo(line)
    status.raise_unavailable()
