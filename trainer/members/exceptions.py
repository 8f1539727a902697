"""Errors of saving and loading fusion members (the encoder member's are in :mod:`trainer.exceptions`)."""

from trainer.exceptions import ModelError


class CorruptMemberError(ModelError):
    """A member's files are missing, unreadable or malformed: publish or fetch the artifact again."""


class UntrustedMemberError(ModelError):
    """A member file names types outside its allow-list: it was not written by this code; do not load it."""
