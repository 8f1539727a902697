"""The serving commands exist, document themselves, and their settings parse from the environment."""

import pytest
from click.testing import CliRunner

from intentloop.cli import cli
from intentloop.settings import Settings


@pytest.mark.parametrize(
    "args",
    [
        ["registry", "canary"],
        ["registry", "canary", "start"],
        ["registry", "canary", "promote"],
        ["registry", "canary", "rollback"],
        ["worker", "predict"],
        ["bench", "serve"],
        ["bench", "swap"],
    ],
)
def test_serving_commands_have_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output, result.output


def test_serve_settings_from_environment(monkeypatch):
    monkeypatch.setenv("INTENTLOOP_SERVE__MARKETS", '["de", "fr"]')
    monkeypatch.setenv("INTENTLOOP_SERVE__CANARY_SHARE", "0.2")
    monkeypatch.setenv("INTENTLOOP_SERVE__ADMIN_TOKEN", "hunter2")
    s = Settings().serve
    assert s.markets == ["de", "fr"] and s.canary_share == 0.2
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s)
