"""Errors raised by the top layer (the CLI's own machinery), all under the one project base."""

from typing import Literal

from store.exceptions import IntentloopError

Failure = Literal["error", "unavailable", "interrupted"]


class StackError(IntentloopError):
    """A local-stack server cannot start, stop or be reached; the message names the port, setting or log."""


class CommandFailedError(IntentloopError):
    """A command whose own output already told what went wrong; ``main`` maps ``kind`` to the exit
    code and prints ``note`` (when given) as it is, without the ``error:`` prefix."""

    def __init__(self, kind: Failure, note: str | None = None) -> None:
        super().__init__(note or kind)
        self.kind = kind
        self.note = note
