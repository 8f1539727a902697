"""The connection settings store.db adds reach the server: the backend's own keepalives are on."""

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.integration

_SETTING = text("SELECT setting FROM pg_settings WHERE name = :name")  # in the setting's base unit


def test_the_backend_probes_a_silent_client(db):
    with db.session() as s:
        got = [s.execute(_SETTING, {"name": f"tcp_keepalives_{k}"}).scalar_one() for k in ("idle", "count")]
    assert got == ["10", "3"]  # idle 0 would mean the kernel's default: two hours before a probe
