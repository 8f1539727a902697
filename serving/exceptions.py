"""Errors of the inference workers."""

from store.exceptions import IntentloopError


class ServingError(IntentloopError):
    """Base of inference-worker errors."""


class NotReadyError(ServingError):
    """No adapter is loaded yet: promote one with `intentloop registry promote VERSION`."""


class AdapterRefusedError(ServingError):
    """A candidate adapter failed verification; the current one keeps serving."""
