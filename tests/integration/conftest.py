"""Fixtures several integration test modules share."""

import pytest

from store.registry import RedisRegistry
from store.versions import record_version


@pytest.fixture
def registry(redis_url, redis_prefix):
    with RedisRegistry(redis_url, prefix=redis_prefix) as reg:
        yield reg


@pytest.fixture
def versions(db):
    """Three recorded versions (no artifacts): enough for alias moves and their audit trail."""
    with db.session() as s:
        for v in ("v1", "v2", "v3"):
            record_version(
                s,
                version=v,
                manifest={"base_model": {"name": "tiny"}, "labels": ["a"]},
                uri=f"/a/{v}",
                run_id=None,
            )
    return ["v1", "v2", "v3"]
