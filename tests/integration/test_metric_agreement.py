"""One macro-F1: what a training run records, what ``registry list`` shows and what the gate scores.

The three used to be computed twice (training averaged over the labels of the truth and the
predictions, the gate over the truth's labels only) and disagreed whenever the model predicted a
label the validation rows never use. Here the store is built so that it does: a ``toys`` label
lives only in the training bucket, on the same words as ``fashion``, so the trained model predicts
it on held-out ``fashion`` rows. With no gold, the gate's held-out rows are exactly the run's
validation rows, so the numbers must be one number.
"""

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from training_helpers import training_env

from intentloop.cli import main
from intentloop.jobs import train_and_maybe_promote
from intentloop.runtime import Runtime
from intentloop.settings import Settings
from intentloop.stack import Endpoints
from store.evaluations import gate_decisions
from store.models import AdapterVersion, SearchQuery, WeakLabel
from trainer.split import is_validation

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_WORDS = {
    "fashion": ["red shoe", "blue dress", "leather boots", "denim jacket"],
    "electronics": ["usb cable", "hdmi adapter", "phone charger", "wireless mouse"],
    "garden": ["garden hose", "flower pot", "lawn mower", "seed tray"],
}
_VAL_FRACTION = 0.2


def _queries() -> list[tuple[str, str]]:
    labels = sorted(_WORDS)
    rows = [(f"{_WORDS[labels[i % 3]][i % 4]} {i}", labels[i % 3]) for i in range(150)]
    # "toys": fashion's words, training bucket only, so it is predicted but never true on held-out rows.
    toys = [(f"{_WORDS['fashion'][i % 4]} {i}", "toys") for i in range(1000, 1200)]
    rows += [row for row in toys if not is_validation(row[0], _VAL_FRACTION)][:40]
    return rows


def _seed(db, queries: list[tuple[str, str]]) -> None:
    """Weak labels (3 votes, one label) and one search per query."""
    ts = datetime(2025, 3, 1, tzinfo=UTC)
    with db.session() as s:
        s.execute(
            insert(WeakLabel),
            [{"norm_text": q, "label": lab, "votes": 3.0, "events": 3, "last_ts": ts} for q, lab in queries],
        )
        s.execute(
            insert(SearchQuery),
            [
                {
                    "query_id": q,
                    "session_id": "s",
                    "ts": ts,
                    "text": q,
                    "norm_text": q,
                    "locale": "en-US",
                    "shown": [],
                }
                for q, _ in queries
            ],
        )


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    return training_env(
        monkeypatch,
        pg_url,
        redis_url,
        redis_prefix,
        tiny_encoder_dir,
        tmp_path,
        INTENTLOOP_TRAIN__EPOCHS="3",
        INTENTLOOP_TRAIN__VAL_FRACTION=str(_VAL_FRACTION),
    )


def test_run_registry_list_and_gate_report_one_macro_f1(db, env, capsys):
    queries = _queries()
    _seed(db, queries)
    settings = Settings()
    rt = Runtime(
        settings,
        Endpoints(
            env["INTENTLOOP_KAFKA__BOOTSTRAP"], env["INTENTLOOP_POSTGRES__URL"], env["INTENTLOOP_REDIS__URL"]
        ),
    )
    result = train_and_maybe_promote(rt, promote=False, progress=False)
    rt.close()

    with db.session() as s:
        recorded = s.get(AdapterVersion, result["version"]).metrics["val_macro_f1"]
        decision = gate_decisions(s)[0]
        assert decision.candidate == result["version"]
        report = decision.details["reports"]["candidate"]
        eval_set = decision.details["eval_set"]

    # The same rows: no gold, so the gate's held-out rows are the run's validation rows.
    assert eval_set["gold"] == 0 and eval_set["rows"] == result["snapshot"]["val"] == report["n"]
    # The rows exercise the difference: a label predicted on them but absent from their truth.
    assert "toys" in report["per_class"] and report["per_class"]["toys"]["support"] == 0
    assert report["per_class"]["toys"]["precision"] == 0.0  # predicted, never right
    assert 0 < report["macro_f1"] < 1
    assert recorded == report["macro_f1"]

    capsys.readouterr()
    main(["registry", "list"])
    line = next(row for row in capsys.readouterr().out.splitlines() if result["version"] in row)
    assert f"val_macro_f1={report['macro_f1']:.3f} " in line
