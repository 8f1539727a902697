"""What every command module shares: the settings, the runtime, and how a command says it failed.

Command modules import this, never each other or the root group, so the package has no cycles.
"""

import click
from pydantic import ValidationError

from intentloop.runtime import Runtime
from intentloop.settings import Settings
from store.exceptions import ConfigurationError


def load_settings() -> Settings:
    """The settings, or one line naming each bad INTENTLOOP_* variable (exit code 2), not a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"INTENTLOOP_{'__'.join(str(part).upper() for part in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def runtime(*, start_stack: bool = False) -> Runtime:
    """The services of the configured (or embedded) stack; each connects on first use."""
    return Runtime.from_settings(load_settings(), start_stack=start_stack)


# Which simulated shoppers a command's traffic comes from (``simulate``, ``demo``, ``bench train``).
shoppers_option = click.option(
    "--shoppers",
    type=click.Choice(["realistic", "easy"]),
    default="realistic",
    show_default=True,
    help="realistic: paraphrases, typos, questions, other languages (docs/simulator.md); easy: the "
    "catalogue's own words only, as before issue 13.",
)
