"""`intentloop status`, `worker ingest --until-caught-up` and `replay` on a real broker and Postgres.

The backfill story of a shop's own logs: the stream is produced, `status` shows the whole of it as
consumer lag, a worker started with --until-caught-up exits by itself, and `status` then shows lag
zero on every partition and stored counts equal to exactly what was sent.
"""

import json

import pytest
from ingest_harness import make_stream

from intentloop.cli import EXIT_ERROR, EXIT_UNAVAILABLE, main
from intentloop.stack import Endpoints
from intentloop.worker_processes import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_PINNED = (
    "INTENTLOOP_KAFKA__BOOTSTRAP",
    "INTENTLOOP_POSTGRES__URL",
    "INTENTLOOP_REDIS__URL",
    "INTENTLOOP_STATE_DIR",
)


def _status(capsys) -> dict:
    capsys.readouterr()
    main(["status", "--json"])
    return json.loads(capsys.readouterr().out)


def test_ingest_until_caught_up_exits_with_lag_zero_and_exact_counts(
    db, pg_url, redis_url, kafka_bootstrap, tmp_path, monkeypatch, capsys
):
    stream = make_stream(
        db=db,
        endpoints=Endpoints(kafka_bootstrap, pg_url, redis_url),
        tmp_path=tmp_path,
        searches=400,
        seed=21,
    )
    for key in _PINNED:
        monkeypatch.setenv(key, stream.env[key])
    sent = stream.sent

    before = _status(capsys)
    assert before["errors"] == [] and before["store"]["queries"] == 0
    assert before["kafka"]["lag"] == sent.total and before["kafka"]["caught_up"] is False
    assert len(before["kafka"]["partitions"]) == 8  # two input topics, four partitions each
    assert all(p["committed"] is None for p in before["kafka"]["partitions"])

    worker = WorkerProcess(
        ["worker", "ingest", "--until-caught-up"], stream.env, stream.logs / "backfill.log"
    )
    try:
        returncode = worker.proc.wait(timeout=180)  # the condition waited on: the process exits
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert returncode == 0, log
    summary = json.loads(next(line for line in reversed(log.splitlines()) if line.startswith("{")))
    assert summary["caught_up"] is True
    assert summary["records"] == sum(summary["end_offsets"].values()) == sent.total
    assert (summary["queries"], summary["feedback"], summary["dead_letters"]) == (
        sent.queries,
        sent.feedback,
        sent.malformed,
    )
    assert "Warning" not in log and " WARNING " not in log, log  # no dependency noise either
    stream.assert_exact()

    after = _status(capsys)
    assert after["kafka"]["lag"] == 0 and after["kafka"]["caught_up"] is True
    assert all(p["committed"] == p["end"] for p in after["kafka"]["partitions"])
    assert sum(p["end"] for p in after["kafka"]["partitions"]) == sent.total
    store = after["store"]
    assert (store["queries"], store["feedback"], store["dead_letters"]) == (
        sent.queries,
        sent.feedback,
        sent.malformed,
    )
    assert store["feedback_by_status"].get("unknown_product") == sent.unknown_product
    assert "pending" not in store["feedback_by_status"]
    # 400 products, a guide per leaf (92) and the 8 help pages (issue 14's catalogue kinds)
    assert store["catalog_products"] == 500 and store["labelled"] == store["abstained"] == 0

    main(["status"])
    text = capsys.readouterr().out
    assert "group intentloop-ingest: lag 0 (caught up)" in text
    assert f"  searches            {sent.queries:>9}" in text


def test_status_with_kafka_down_shows_the_store_then_one_error_line(
    db, pg_url, redis_url, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", pg_url)
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", redis_url)
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["status"])
    assert exc.value.code == EXIT_UNAVAILABLE
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("store  postgresql+psycopg://") and "  searches" in out
    assert "kafka" not in out
    assert err.startswith("error: Kafka is unreachable at 127.0.0.1:1") and len(err.strip().splitlines()) == 1


def test_replay_of_a_file_with_nothing_replayable_fails_after_its_summary(
    pg_url, redis_url, kafka_bootstrap, tmp_path, monkeypatch, capsys
):
    for key, value in zip(_PINNED, (kafka_bootstrap, pg_url, redis_url, str(tmp_path)), strict=True):
        monkeypatch.setenv(key, value)
    path = tmp_path / "history.jsonl"
    path.write_text('{"topic": "orders", "value": {}}\nnot json\n\n')
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(path)])
    assert exc.value.code == EXIT_ERROR
    out, err = capsys.readouterr()
    assert json.loads(out) == {"sent": 0, "by_topic": {}, "unreadable_lines": [1, 2], "unreadable": 2}
    assert err.startswith(f"error: {path}: nothing replayed: none of its 2 line(s)")
    assert len(err.strip().splitlines()) == 1
