"""The ``intentloop`` console script: one module per command group, errors mapped to exit codes in
``main``.

Each command parses its options, asks the runtime for what it needs and calls a function of the
layer that does the work; what is left here is printing.
"""

from intentloop.cli.app import cli
from intentloop.cli.main import EXIT_CONFIG, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, main

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_UNAVAILABLE", "cli", "main"]
