"""``intentloop demo``: the whole loop on a fresh embedded stack (``intentloop.demo``)."""

import json

import click

from intentloop.cli.common import load_settings, shoppers_option


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object, last line.")
@click.option("--searches", default=6000, show_default=True, help="Simulated searches.")
@click.option("--seed", default=7, show_default=True)
@click.option("--keep-stack", is_flag=True, help="Leave the demo's servers running afterwards.")
@shoppers_option
def demo(as_json: bool, searches: int, seed: int, keep_stack: bool, shoppers: str) -> None:
    """The whole loop on a fresh embedded stack: traffic -> labels -> adapter -> promoted -> served.

    Uses its own servers under <state_dir>/demo on free ports (configured URLs are not touched),
    so every run starts from empty and is reproducible for a seed.
    """
    from intentloop.demo import run_demo

    settings = load_settings()
    summary = run_demo(
        settings, searches=searches, seed=seed, echo=click.echo, keep_stack=keep_stack, shoppers=shoppers
    )
    if as_json:
        click.echo(json.dumps(summary, default=str))
