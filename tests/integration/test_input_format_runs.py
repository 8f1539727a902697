"""A training run on real Postgres records the tokenizer coverage of its snapshot and the input
format its adapter was trained with."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from store.artifacts import ArtifactStore
from store.models import SearchQuery, TrainingRun, WeakLabel
from trainer.pipeline import run_training
from trainer.settings import ModelSettings, TrainSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_QUERIES = {
    "electronics": ["usb cable", "phone charger", "无线充电器", "蓝牙耳机"],
    "baby": ["baby bottle", "diaper bag", "婴儿奶粉", "婴儿车"],
}


def _seed(db, copies: int = 6) -> None:
    """Weak labels (3 votes each) for English and Chinese queries, one search each."""
    ts = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [(f"{q} {i}", label) for label, qs in _QUERIES.items() for q in qs for i in range(copies)]
    rows += [("无线充电器", "electronics"), ("婴儿奶粉", "baby")]  # no digit: entirely [UNK]
    with db.session() as s:
        s.execute(
            insert(WeakLabel),
            [{"norm_text": q, "label": lab, "votes": 3.0, "events": 3, "last_ts": ts} for q, lab in rows],
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
                    "locale": "zh-CN",
                    "shown": [],
                }
                for q, _ in rows
            ],
        )


def test_run_records_coverage_and_input_format(db, tiny_encoder_dir, tmp_path, caplog):
    _seed(db)
    model = ModelSettings(
        base_dir=tiny_encoder_dir, input_template="query: {text}", pooling="cls", max_length=16
    )
    train = TrainSettings(min_steps=0, epochs=1, batch_size=16, init="base", checkpoint=False)
    outcome = run_training(
        db, ArtifactStore(tmp_path / "artifacts"), model, train, progress=False, champion=None
    )

    coverage = outcome.snapshot["tokenizer_coverage"]
    assert coverage["warned"] is True and coverage["unk_token"] == "[UNK]"
    assert coverage["queries_all_unknown"] > 0 and coverage["unk_token_share"] > 0.05
    assert "TOKENIZER COVERAGE" in caplog.text
    with db.session() as s:
        run = s.get(TrainingRun, outcome.run_id)
        assert run is not None and run.snapshot["tokenizer_coverage"] == coverage
    _, manifest = ArtifactStore(tmp_path / "artifacts").fetch(outcome.version)
    assert manifest["input_format"] == {"template": "query: {text}", "pooling": "cls", "max_length": 16}
