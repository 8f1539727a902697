"""Canary and market aliases in the registry: CLI, admin endpoint errors, Redis re-seeding."""

import asyncio

import httpx
import pytest

from intentloop.cli import main
from serving.adapters import SharedBase
from serving.api import Admin, create_api
from serving.host import ModelHost
from serving.settings import ServeSettings
from store.artifacts import ArtifactStore
from store.versions import (
    CANARY,
    alias_history,
    alias_name,
    promote,
    reconcile_aliases,
    retire_alias,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(monkeypatch, pg_url, redis_url, redis_prefix, tmp_path):
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", pg_url)
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", redis_url)
    monkeypatch.setenv("INTENTLOOP_REDIS__KEY_PREFIX", redis_prefix)
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))


def _cli(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_canary_cli_start_promote_rollback(db, registry, versions, cli_env, capsys):
    promote(db, registry, "v1", actor="t", reason="first")
    assert _cli(["registry", "canary", "start", "v2"], capsys) == (0, "canary: None -> v2\n")
    assert registry.get_alias("canary") == "v2"
    code, out = _cli(["registry", "canary", "promote", "--reason", "looks good"], capsys)
    assert code == 0 and "champion: v1 -> v2 (canary retired)" in out
    assert registry.get_aliases(["champion", "canary"]) == {"champion": "v2", "canary": None}
    code, out = _cli(["registry", "canary", "rollback"], capsys)
    assert code == 1 and "nothing to roll back" in out
    assert _cli(["registry", "canary", "start", "v3", "--market", "de"], capsys)[0] == 0
    assert _cli(["registry", "canary", "rollback", "--market", "de"], capsys) == (
        0,
        "canary.de: v3 retired\n",
    )
    with db.session() as s:
        assert [(e.version, e.action) for e in alias_history(s, "canary.de")] == [
            ("v3", "retire"),
            ("v3", "promote"),
        ]
        champion = [(e.version, e.previous, e.reason) for e in alias_history(s, "champion")]
    assert champion[0] == ("v2", "v1", "canary graduated: looks good")


def test_market_champions_are_promoted_and_rolled_back_on_their_own(db, registry, versions, cli_env, capsys):
    promote(db, registry, "v1", actor="t", reason="first")
    assert _cli(["registry", "promote", "v2", "--market", "de"], capsys) == (0, "champion.de: None -> v2\n")
    assert _cli(["registry", "promote", "v3", "--market", "de"], capsys) == (0, "champion.de: v2 -> v3\n")
    assert _cli(["registry", "rollback", "--market", "de"], capsys) == (0, "champion.de: v3 -> v2\n")
    assert registry.get_aliases(["champion", "champion.de"]) == {"champion": "v1", "champion.de": "v2"}
    code, out = _cli(["registry", "rollback"], capsys)  # the default market was never moved twice
    assert code == 1 and "no earlier version" in out
    assert registry.get_alias("champion") == "v1"


def test_a_retired_canary_stays_retired_when_redis_loses_everything(db, registry, versions):
    promote(db, registry, "v1", actor="t", reason="r")
    promote(db, registry, "v2", actor="t", reason="r", alias=alias_name(CANARY))
    promote(db, registry, "v3", actor="t", reason="r", alias=alias_name(CANARY, "de"))
    retire_alias(db, registry, "canary", actor="t", reason="bad canary")
    registry.delete_keys("alias:*")  # Redis restarted empty
    aliases = ["champion", "canary", "champion.de", "canary.de"]
    assert reconcile_aliases(db, registry, aliases) == {
        "champion": "v1",
        "canary": None,
        "champion.de": None,
        "canary.de": "v3",
    }
    assert registry.get_aliases(aliases) == {
        "champion": "v1",
        "canary": None,
        "champion.de": None,
        "canary.de": "v3",
    }


def test_admin_endpoint_errors_are_4xx(db, registry, versions, tiny_encoder_dir, tmp_path):
    host = ModelHost(ArtifactStore(tmp_path), SharedBase(tiny_encoder_dir))  # admin routes need no adapter
    app = create_api(host, ServeSettings(), worker_id="t", admin=Admin(db, registry, "tok"))
    auth = {"Authorization": "Bearer tok"}

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as c:
            return [
                await c.post("/admin/champion/promote", json={"version": "nope"}, headers=auth),
                await c.post("/admin/champion/rollback", json={}, headers=auth),
                await c.post("/admin/canary/promote", json={}, headers=auth),
                await c.post("/admin/champion/promote", json={"version": "v1", "market": "de"}, headers=auth),
                await c.post("/admin/canary/start", json={"version": "v2", "market": "de"}, headers=auth),
                await c.post("/admin/canary/promote", json={"market": "de"}, headers=auth),
            ]

    r = asyncio.run(go())
    assert [x.status_code for x in r] == [404, 409, 409, 200, 200, 200]
    assert "no adapter version 'nope'" in r[0].text and "no earlier version" in r[1].text
    assert r[5].json() == {"alias": "champion.de", "version": "v2", "previous": "v1"}
    assert registry.get_aliases(["champion.de", "canary.de"]) == {"champion.de": "v2", "canary.de": None}
