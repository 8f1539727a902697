"""The console entry point, and the one place where errors become exit codes."""

from collections.abc import Callable
from typing import Any

import click

from intentloop.cli.app import cli
from intentloop.exceptions import CommandFailedError
from store.exceptions import ConfigurationError, IntentloopError, StoreUnavailableError
from streams.exceptions import KafkaUnavailableError

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130  # the shell's code for "stopped by Ctrl-C"

_FAILURE_CODES = {"error": EXIT_ERROR, "unavailable": EXIT_UNAVAILABLE, "interrupted": EXIT_INTERRUPTED}


def exit_code(exc: IntentloopError) -> int:
    """2 for configuration, 3 for a server that cannot be reached, 1 for everything else."""
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
        raise SystemExit(EXIT_INTERRUPTED) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except CommandFailedError as exc:
        if exc.note:
            click.echo(exc.note, err=True)
        raise SystemExit(_FAILURE_CODES[exc.kind]) from None
    except IntentloopError as exc:
        message = " ".join(str(exc).split())  # one line, whatever a driver's message spans
        click.echo(f"error: {message}", err=True)
        raise SystemExit(exit_code(exc)) from None
