"""Worker start-up: what happens once, before the first request."""

import gc

from serving.worker import freeze_startup_heap


def test_start_up_heap_is_frozen_so_full_collections_skip_it():
    """Issue 12's p99 regression was a full collection walking every start-up object mid-load."""
    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the test process's libraries, like a worker's torch and encoder
        assert len(gc.get_objects(generation=2)) < frozen / 100  # a full collection walks only the rest
        later = [object() for _ in range(3)]  # what serving allocates stays collectable
        assert gc.get_freeze_count() == frozen and later
    finally:
        gc.unfreeze()
