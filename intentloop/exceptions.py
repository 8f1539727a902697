"""Errors raised by the top layer (the CLI's own machinery), all under the one project base."""

from store.exceptions import IntentloopError


class StackError(IntentloopError):
    """A local-stack server cannot start, stop or be reached; the message names the port, setting or log."""
