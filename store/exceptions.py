"""The project's single base exception, and the errors of the persistence layer.

:class:`IntentloopError` lives here, not in a top-level module, because ``store`` is the lowest
layer: every package (``streams``, ``trainer``, ``serving``, the CLI) may import ``store`` and none
may import upwards, so this is the one place all of them can derive their errors from. Each package
keeps its own errors in its own ``exceptions.py`` under this base; the CLI maps them to exit codes.
"""


class IntentloopError(Exception):
    """Base of every error intentloop raises on purpose; the CLI maps these to exit codes."""


class ConfigurationError(IntentloopError):
    """A setting is missing or contradictory; the message says which variable to set."""


class StoreError(IntentloopError):
    """Base of the persistence layer's errors (Postgres, Redis, artifact storage)."""


class StoreUnavailableError(StoreError):
    """Postgres or Redis cannot be reached; check the URL and that the server is running."""


class ArtifactError(StoreError):
    """An adapter artifact is missing, corrupt or does not match its manifest."""


class VersionNotFoundError(StoreError):
    """No adapter version with that id is recorded."""


class TrainingLockedError(StoreError):
    """Another training run holds the one-trainer lock; the message names the holder."""


class ReviewError(StoreError):
    """A review request the store cannot carry out (unknown item, revoked reviewer, bad action or
    label); the message says which."""
