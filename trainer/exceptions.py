"""Errors of the training side (and of the shared model code the inference workers load adapters with)."""

from store.exceptions import IntentloopError


class TrainerError(IntentloopError):
    """Base of every error the trainer raises on purpose."""


class ModelError(TrainerError):
    """The base encoder or an adapter cannot be found, built or loaded (the message says why)."""


class NotEnoughDataError(TrainerError):
    """Too few labels or examples to fine-tune; ingest more traffic or loosen the snapshot filters."""


class CorruptAdapterError(ModelError):
    """An adapter artifact's files are missing or unreadable: publish or fetch it again."""


class IncompatibleAdapterError(ModelError):
    """An adapter does not fit this base encoder (trained on another one, or tensors of other shapes)."""


class InvalidAdapterError(ModelError):
    """An adapter's manifest or tensors are malformed (unknown format, no label map, non-finite values)."""
