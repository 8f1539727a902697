import pytest
from click.testing import CliRunner

from intentloop.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, cli, main
from intentloop.runtime import Runtime
from intentloop.settings import Settings
from intentloop.stack import Endpoints


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["stack"],
        ["review"],
        ["review", "select"],
        ["review", "status"],
        ["review", "token", "add"],
        ["db"],
        ["worker"],
        ["registry"],
        ["catalog"],
        ["train"],
        ["simulate"],
        ["demo"],
        ["labels"],
        ["labels", "aggregate"],
        ["labels", "report"],
        ["labels", "gold", "load"],
    ],
)
def test_every_command_has_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_settings_nest_sections_from_environment(monkeypatch):
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("INTENTLOOP_TRAIN__EPOCHS", "3")
    monkeypatch.setenv("INTENTLOOP_TRAIN__MIN_STEPS", "0")
    monkeypatch.setenv("INTENTLOOP_TAXONOMY__LABELS", '["fashion", "toys"]')
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", "postgresql+psycopg://u:secret@db/x")
    s = Settings()
    assert s.kafka.bootstrap == "broker:9092" and s.train.epochs == 3
    assert s.taxonomy.labels == ["fashion", "toys"]
    assert "secret" not in repr(s)  # URLs with passwords are secrets


def test_unreachable_server_is_one_line_and_exit_code_3(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["registry", "list"])
    assert exc.value.code == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unreachable" in err


def test_invalid_setting_is_one_line_and_exit_code_2(monkeypatch, capsys):
    monkeypatch.setenv("INTENTLOOP_LABELS__MIN_EVIDENCE", "lots")
    with pytest.raises(SystemExit) as exc:
        main(["labels", "aggregate"])
    assert exc.value.code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration: INTENTLOOP_LABELS__MIN_EVIDENCE: ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_runtime_migrates_and_creates_topics_once(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("store.migrate.upgrade", lambda url: calls.append(f"upgrade {url}"))
    monkeypatch.setattr(
        "streams.kafka.ensure_topics",
        lambda bootstrap, *, partitions, replication_factor: calls.append(f"topics {bootstrap} {partitions}"),
    )
    rt = Runtime(Settings(), Endpoints("broker:9092", "postgresql+psycopg://u@db/x", "redis://r/0"))
    assert rt.ready_db() is rt.ready_db() is rt.db
    rt.ready_topics()
    rt.ready_topics()
    assert calls == [
        "upgrade postgresql+psycopg://u@db/x",
        f"topics broker:9092 {Settings().kafka.partitions}",
    ]


def test_unhealthy_stack_lists_every_server_then_exits_3_without_an_error_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["stack", "status"])
    assert exc.value.code == EXIT_UNAVAILABLE
    out, err = capsys.readouterr()
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["DOWN", "kafka"],
        ["DOWN", "postgres"],
        ["DOWN", "redis"],
    ]
    assert err == ""


def test_the_embedded_stack_refuses_a_non_loopback_address_outside_a_namespace(tmp_path):
    """Its servers trust every client (no passwords): on a reachable address that is an open door."""
    from intentloop.exceptions import StackError
    from intentloop.stack import LocalStack

    with pytest.raises(StackError, match="loopback"):
        LocalStack(tmp_path, host="0.0.0.0")
    assert LocalStack(tmp_path, host="127.0.0.1").host == "127.0.0.1"
    assert LocalStack(tmp_path, host="10.77.0.3", netns="h-postgres").netns == "h-postgres"
