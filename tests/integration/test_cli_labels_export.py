"""`intentloop labels export` on real Postgres: per-query labels with their evidence, every column."""

import csv
import json

import pytest

from intentloop.cli import EXIT_ERROR, main
from store.labels import replace_label_distributions
from store.models import LabelDistribution

pytestmark = pytest.mark.integration

_ROWS = [
    {
        "norm_text": "red shoes",
        "label": "fashion",
        "confidence": 0.8,
        "evidence": 6.5,
        "distribution": {"fashion": 0.8, "sports": 0.2},
        "abstained": False,
        "reason": "",
        "method": "majority",
    },
    {
        "norm_text": "lego",
        "label": "toys",
        "confidence": 1.0,
        "evidence": 3.0,
        "distribution": {"toys": 1.0},
        "abstained": False,
        "reason": "",
        "method": "label_model",
    },
    {
        "norm_text": "zzz",
        "label": None,
        "confidence": 0.0,
        "evidence": 0.0,
        "distribution": {},
        "abstained": True,
        "reason": "no_evidence",
        "method": "majority",
    },
]
# Every column of the table but the aggregation's timestamp: columns a migration adds come along.
_COLUMNS = [c.name for c in LabelDistribution.__table__.columns if c.name != "computed_at"]


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, tmp_path):
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", pg_url)
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", redis_url)
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path / "state"))


def test_export_without_an_aggregation_says_what_to_run(db, env, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["labels", "export"])
    assert exc.value.code == EXIT_ERROR
    assert (
        capsys.readouterr().err
        == "error: no aggregated labels yet: run `intentloop labels aggregate` first\n"
    )


def test_export_writes_labelled_queries_with_evidence_and_all_with_abstentions(db, env, tmp_path, capsys):
    with db.session() as s:
        replace_label_distributions(s, _ROWS)

    main(["labels", "export"])  # JSONL to stdout, labelled only, by query
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["norm_text"] for r in rows] == ["lego", "red shoes"]
    assert list(rows[1]) == _COLUMNS
    assert {k: rows[1][k] for k in _ROWS[0]} == _ROWS[0]
    assert err == "exported 2 query labels to stdout (1 abstentions left out; --all adds them)\n"

    target = tmp_path / "labels.csv"
    main(["labels", "export", "--all", "--out", str(target)])  # the suffix picks CSV
    assert capsys.readouterr().out == ""
    with target.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == _COLUMNS
    assert [(r["norm_text"], r["label"], r["abstained"], r["reason"]) for r in table] == [
        ("lego", "toys", "false", ""),
        ("red shoes", "fashion", "false", ""),
        ("zzz", "", "true", "no_evidence"),
    ]
    assert json.loads(table[1]["distribution"]) == {"fashion": 0.8, "sports": 0.2}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
