import json

import pytest

from streams import topics
from streams.codec import write_jsonl
from streams.exceptions import StreamsError
from streams.replay import ReplayReport, read_csv, read_jsonl
from streams.simulator import SimConfig, simulate


def test_jsonl_written_by_simulate_reads_back_and_bad_lines_are_reported(tmp_path):
    sim = simulate(SimConfig(seed=1, n_searches=20, n_products=100))
    path = tmp_path / "t.jsonl"
    n = write_jsonl(path, sim.events())
    with path.open("a") as fh:
        fh.write("not json\n")
        fh.write(json.dumps({"topic": "elsewhere", "value": {}}) + "\n")
        fh.write(json.dumps({"topic": topics.FEEDBACK, "key": "q", "value": {"bad": 1}}) + "\n")
    report = ReplayReport()
    records = list(read_jsonl(path, report))
    assert len(records) == n + 1  # the schema-invalid one is forwarded: ingestion dead-letters it
    assert report.unreadable_lines == [n + 1, n + 2]
    assert records[0].topic == topics.QUERIES and records[0].timestamp is not None


def test_csv_with_a_column_mapping(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text(
        "eid,query_id,timestamp,type,product_id,position,dwell_ms\n"
        "e1,q1,2025-01-01T00:00:00Z,click,p1,3,1200\n"
        "e2,q1,2025-01-01T00:00:05Z,purchase,p1,3,\n"
    )
    recs = list(read_csv(path, topics.FEEDBACK, {"event_id": "eid"}))
    values = [json.loads(r.value) for r in recs]
    assert values[0] == {
        "event_id": "e1",
        "query_id": "q1",
        "timestamp": "2025-01-01T00:00:00Z",
        "type": "click",
        "product_id": "p1",
        "position": 3,
        "dwell_ms": 1200,
    }
    assert "dwell_ms" not in values[1] and recs[1].key == "q1"


@pytest.mark.parametrize(
    ("topic", "mapping", "message"),
    [
        ("other", {}, "must be one of"),
        (topics.FEEDBACK, {"nonsense": "x"}, "not fields"),
        (topics.FEEDBACK, {"event_id": "missing_col"}, "not in the header"),
    ],
)
def test_csv_mapping_errors_are_clear(tmp_path, topic, mapping, message):
    path = tmp_path / "x.csv"
    path.write_text("event_id\ne1\n")
    with pytest.raises(StreamsError, match=message):
        list(read_csv(path, topic, mapping))
