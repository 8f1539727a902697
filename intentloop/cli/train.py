"""``intentloop train`` and ``train schedule``: one refresh now, or refreshes on a schedule and on drift
(``intentloop.jobs``, ``intentloop.schedule``)."""

import json

import click

from intentloop.cli.common import load_settings, runtime
from intentloop.exceptions import CommandFailedError
from intentloop.runtime import Runtime


@click.group("train", invoke_without_command=True)
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

    rt = runtime()
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

    settings = load_settings()
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
            raise CommandFailedError("error")  # the JSON above carries the error
        return
    install_stop_handlers(scheduler)
    try:
        scheduler.run_forever()
    finally:
        rt.close()
