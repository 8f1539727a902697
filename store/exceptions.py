"""Errors of the persistence layer, and the project's single base exception."""


class IntentloopError(Exception):
    """Base of every error intentloop raises on purpose; the CLI maps these to exit codes."""


class ConfigurationError(IntentloopError):
    """A setting is missing or contradictory; the message says which variable to set."""


class StoreUnavailableError(IntentloopError):
    """Postgres or Redis cannot be reached; check the URL and that the server is running."""


class ArtifactError(IntentloopError):
    """An adapter artifact is missing, corrupt or does not match its manifest."""


class VersionNotFoundError(IntentloopError):
    """No adapter version with that id is recorded."""
