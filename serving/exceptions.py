"""Errors of the inference workers."""

from enum import StrEnum

from store.exceptions import IntentloopError


class ServingError(IntentloopError):
    """Base of inference-worker errors."""


class NotReadyError(ServingError):
    """No adapter is loaded yet: promote one with `intentloop registry promote VERSION`."""


class UnknownMarketError(ServingError):
    """The request names a market this worker does not serve (INTENTLOOP_SERVE__MARKETS)."""


class UnknownDimensionError(ServingError):
    """The request asks for a label dimension the serving version was not trained for."""


class RefusalKind(StrEnum):
    """Why an adapter was refused; the label of the refusal metric."""

    MISSING = "missing"  # no artifact under that version
    INTEGRITY = "integrity"  # sha256 mismatch, truncated or missing files, unreadable tensors
    INCOMPATIBLE = "incompatible"  # trained on another base model, or weights that do not fit it
    INVALID = "invalid"  # no label map, unknown format, non-finite outputs


class AdapterRefusedError(ServingError):
    """A candidate adapter failed verification; the current one keeps serving."""

    def __init__(self, version: str, kind: RefusalKind, reason: str) -> None:
        super().__init__(f"adapter {version} refused ({kind}): {reason}")
        self.version, self.kind, self.reason = version, kind, reason


class ExplainError(ServingError):
    """An explanation that cannot be given as asked: an unknown label, method or dimension, a query
    with no words or more than the configured limit."""


class ExplainBusyError(ServingError):
    """Every explanation slot of this worker is taken (INTENTLOOP_SERVE__EXPLAIN__CONCURRENCY)."""
