"""`intentloop eval` / `bench train` command surface: help, and gold-file errors before any server."""

import pytest
from click.testing import CliRunner

from intentloop.cli import EXIT_ERROR, cli, main


@pytest.mark.parametrize("args", [["eval"], ["bench", "train"], ["train"]])
def test_commands_have_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("gold.csv", "query,intent\nred shoes,fashion\n", "needs 'query' and 'label' columns"),
        ("gold.jsonl", '{"query": "a", "label": "toys"}\n{oops\n', "gold.jsonl:2: not JSON"),
        ("gold.jsonl", '{"query": "", "label": "toys"}\n', "gold.jsonl:1: 'query' must be non-empty"),
        ("gold.txt", "query,label\na,b\n", "unknown format '.txt'"),
        ("gold.csv", "query,label\n", "no gold labels"),
    ],
)
def test_bad_gold_file_is_one_line_and_exit_code_1(tmp_path, capsys, monkeypatch, name, content, message):
    # Unreachable servers: the file is rejected before anything connects.
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", "redis://127.0.0.1:1/0")
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--gold", str(path)])
    assert exc.value.code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_bench_train_refuses_a_tiny_snapshot(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "train", "--queries", "10"])
    assert exc.value.code == 2
    assert "'--queries': 10 is not in the range x>=100" in capsys.readouterr().err
