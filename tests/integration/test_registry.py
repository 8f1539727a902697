import json

import pytest

from store.exceptions import IntentloopError, VersionNotFoundError
from store.versions import alias_history, promote, reconcile_alias, rollback

pytestmark = pytest.mark.integration


def test_promote_sets_alias_records_history_and_hints(db, registry, versions):
    sub = registry.pubsub()
    promote(db, registry, "v1", actor="test", reason="first")
    move = promote(db, registry, "v2", actor="test", reason="better")
    assert (move.previous, move.version) == ("v1", "v2")
    assert registry.get_alias("champion") == "v2"
    with db.session() as s:
        assert [(e.version, e.previous, e.reason) for e in alias_history(s)] == [
            ("v2", "v1", "better"),
            ("v1", None, "first"),
        ]
    hints = [m for m in (sub.get_message(timeout=0.5) for _ in range(4)) if m is not None]
    assert [json.loads(m["data"])["version"] for m in hints] == ["v1", "v2"]


def test_rollback_walks_back_through_history(db, registry, versions):
    for v in versions:
        promote(db, registry, v, actor="t", reason="r")
    assert rollback(db, registry, actor="t", reason="bad").version == "v2"
    assert rollback(db, registry, actor="t", reason="bad").version == "v1"
    assert registry.get_alias("champion") == "v1"
    with pytest.raises(IntentloopError, match="no earlier version"):
        rollback(db, registry, actor="t", reason="bad")


def test_unknown_version_is_refused(db, registry, versions):
    with pytest.raises(VersionNotFoundError):
        promote(db, registry, "nope", actor="t", reason="r")
    assert registry.get_alias("champion") is None


def test_reconcile_reseeds_redis_from_postgres(db, registry, versions):
    promote(db, registry, "v2", actor="t", reason="r")
    registry.delete_keys("alias:champion")  # Redis restarted empty
    assert reconcile_alias(db, registry) == "v2"
    assert registry.get_alias("champion") == "v2"


def test_worker_heartbeats(registry):
    registry.report_worker("w1", {"version": "v1"})
    assert registry.workers() == {"w1": {"version": "v1"}}
