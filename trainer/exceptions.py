"""Errors of the training side (and of the shared model code the inference workers load adapters with)."""

from store.exceptions import IntentloopError


class TrainerError(IntentloopError):
    """Base of every error the trainer raises on purpose."""


class ModelError(TrainerError):
    """The base encoder or an adapter cannot be found, built or loaded (the message says why)."""


class NotEnoughDataError(TrainerError):
    """Too few labels or examples to fine-tune; ingest more traffic or loosen the snapshot filters."""
