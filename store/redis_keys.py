"""Redis key and channel names: their single home."""


def alias_key(prefix: str, alias: str) -> str:
    return f"{prefix}:alias:{alias}"


def promotions_channel(prefix: str) -> str:
    return f"{prefix}:promotions"


def worker_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:worker:{worker_id}"


def worker_pattern(prefix: str) -> str:
    return f"{prefix}:worker:*"


def refresh_key(prefix: str) -> str:
    """The key a drift alert sets to ask the trainer's scheduler for a training refresh."""
    return f"{prefix}:refresh:requested"
