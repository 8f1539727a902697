"""The "your own logs" CLI surface without servers: gold merging, one-line errors, status and
export rendering, replay of nothing, and the dependency warnings the CLI silences."""

import csv
import io
import json
import logging
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from intentloop.cli import EXIT_UNAVAILABLE, cli, main
from intentloop.cli.main import exit_code
from intentloop.gold_eval import merge_note, read_gold
from intentloop.labels_export import format_for, write_rows
from intentloop.status import Status
from store.status import StoreCounts
from streams.exceptions import KafkaUnavailableError, StreamsError
from streams.gold import merge_gold, unknown_labels_message
from streams.lag import PartitionLag
from streams.replay import ReplayReport, require_sent


@pytest.mark.parametrize(
    "args", [["status"], ["worker", "ingest"], ["labels", "export"], ["replay"], ["eval"]]
)
def test_new_commands_and_options_have_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_worker_ingest_offers_until_caught_up():
    assert "--until-caught-up" in CliRunner().invoke(cli, ["worker", "ingest", "--help"]).output


# ------------------------------------------------------------------ gold files
def test_duplicate_gold_queries_are_merged_and_reported(tmp_path):
    path = tmp_path / "gold.csv"
    path.write_text(
        "query,label\nRed Shoes,fashion\nred  shoes,fashion\n"
        "lego,toys\nLEGO,books\nlego ,toys\nusb,electronics\n"
    )
    gold = read_gold(path)
    assert gold.rows == [("lego", "toys"), ("red shoes", "fashion"), ("usb", "electronics")]
    summary = gold.summary()
    assert (summary["rows"], summary["distinct_queries"]) == (6, 3)
    merged = summary["merged"]
    assert (merged["rows"], merged["queries"], merged["disagreeing_queries"]) == (3, 2, 1)
    assert merged["examples"] == [{"query": "lego", "labels": ["toys", "books", "toys"], "used": "toys"}]
    note = merge_note(gold)
    assert note is not None and "6 gold rows -> 3 distinct queries" in note and "\n" not in note


def test_a_gold_file_without_repeats_merges_nothing():
    gold = merge_gold([("a", "x"), ("b", "y")])
    assert gold.summary()["merged"]["rows"] == 0 and merge_note(gold) is None


def test_unknown_gold_labels_are_one_short_line():
    known = ["fashion", *(f"c{i:03d}" for i in range(312))]
    message = unknown_labels_message(Path("g.csv"), ["fashon", "zzz"], known)
    assert "\n" not in message and len(message) < 300
    assert message.startswith("g.csv: 2 unknown label(s): 'fashon' (did you mean 'fashion'?), 'zzz';")
    assert "313 known: c000, c001" in message and "c009 and 303 more" in message


# ------------------------------------------------------------------ replay
def test_replaying_nothing_is_an_error_naming_the_lines(tmp_path):
    require_sent(ReplayReport(sent=1), tmp_path / "f.jsonl")  # something sent: fine
    with pytest.raises(
        StreamsError, match=r"nothing replayed: none of its 7 line\(s\).*lines 1, 2, 3, 4, 5, \.\.\."
    ):
        require_sent(ReplayReport(unreadable_lines=list(range(1, 8))), tmp_path / "f.jsonl")
    with pytest.raises(StreamsError, match="it holds no records"):
        require_sent(ReplayReport(), tmp_path / "f.csv")


# ------------------------------------------------------------------ status rendering
def _counts(**changes) -> StoreCounts:
    values = {
        "queries": 50,
        "newest_search": datetime(2025, 1, 6, 9, 0, 1, 500, tzinfo=UTC),
        "feedback_by_status": {"voted": 300, "no_vote": 40, "unknown_product": 5},
        "dead_letters_by_reason": {"invalid_json": 7, "schema: timestamp: missing": 5},
        "weak_label_queries": 30,
        "labelled": 25,
        "abstained_by_reason": {"min_evidence": 4, "no_evidence": 1},
        "gold_by_purpose": {"eval": 10},
        "catalog_products": 400,
        "catalog_labels": 12,
        "adapter_versions": 2,
        "champion": "abc123",
    }
    return StoreCounts(**{**values, **changes})


def test_partition_lag_counts_from_the_log_start_until_a_commit():
    assert PartitionLag("t", 0, None, 0, 10).lag == 10
    assert PartitionLag("t", 0, None, 4, 10).lag == 6  # retention dropped 4 records: they are not lag
    assert PartitionLag("t", 0, 7, 0, 10).lag == 3
    assert PartitionLag("t", 0, 12, 0, 10).lag == 0


def test_status_renders_counts_and_lag_per_partition():
    lag = [PartitionLag("search.feedback", 0, 345, 0, 345), PartitionLag("search.queries", 0, None, 0, 50)]
    status = Status("postgresql://db", "k:9092", "intentloop-ingest", _counts(), lag)
    data = status.as_dict()
    assert data["store"]["feedback"] == 345 and data["store"]["dead_letters"] == 12
    assert (
        data["store"]["abstained"] == 5
        and data["store"]["newest_search"] == "2025-01-06T09:00:01.000500+00:00"
    )
    assert data["kafka"]["lag"] == 50 and data["kafka"]["caught_up"] is False
    assert data["kafka"]["partitions"][1] == {
        "topic": "search.queries",
        "partition": 0,
        "committed": None,
        "start": 0,
        "end": 50,
        "lag": 50,
    }
    lines = status.lines()
    assert any(line.startswith("  dead letters") and "invalid_json 7" in line for line in lines)
    assert "kafka  k:9092  group intentloop-ingest: lag 50 (behind)" in lines
    assert lines[-1].split() == ["search.queries/0", "committed", "-", "end", "50", "lag", "50"]
    assert all(line == line.rstrip() for line in lines)


def test_status_raises_what_it_could_not_read_as_one_error():
    kafka_down = KafkaUnavailableError("Kafka is unreachable at k:1")
    status = Status("postgresql://db", "k:1", "g", _counts(), None, [kafka_down])
    assert [line for line in status.lines() if line.startswith("kafka")] == []
    assert status.as_dict()["kafka"] == {"bootstrap": "k:1", "group": "g"}
    with pytest.raises(KafkaUnavailableError):
        status.raise_unavailable()
    assert exit_code(kafka_down) == EXIT_UNAVAILABLE


# ------------------------------------------------------------------ label export
_ROWS = [
    {
        "norm_text": "lego",
        "label": "toys",
        "confidence": 0.9,
        "distribution": {"toys": 0.9},
        "abstained": False,
    },
    {"norm_text": "zz", "label": None, "confidence": 0.0, "distribution": {}, "abstained": True},
]


def test_labels_export_writes_jsonl_and_csv():
    out = io.StringIO()
    assert write_rows(_ROWS, out, "jsonl", list(_ROWS[0])) == 2
    assert [json.loads(line) for line in out.getvalue().splitlines()] == _ROWS
    out = io.StringIO()
    assert write_rows(_ROWS, out, "csv", list(_ROWS[0])) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0] == {
        "norm_text": "lego",
        "label": "toys",
        "confidence": "0.9",
        "distribution": '{"toys": 0.9}',
        "abstained": "false",
    }
    assert rows[1]["label"] == "" and rows[1]["abstained"] == "true"


def test_export_format_follows_the_file_suffix_unless_given():
    assert format_for(Path("l.CSV"), None) == "csv"
    assert format_for(Path("l.jsonl"), None) == format_for(None, None) == "jsonl"
    assert format_for(Path("l.csv"), "jsonl") == "jsonl"


# ------------------------------------------------------------------ dependency noise
def test_the_cli_silences_exactly_the_known_dependency_noise(caplog):
    from intentloop.cli.app import quiet_dependencies

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_dependencies()
        warnings.warn_explicit(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6.",
            FutureWarning,
            "modeling_utils.py",
            1,
            module="transformers.modeling_utils",
        )
        warnings.warn_explicit(
            "something else", FutureWarning, "modeling_utils.py", 2, module="transformers.x"
        )
    assert [str(w.message) for w in seen] == ["something else"]
    selector = logging.getLogger("kafka.net.selector")
    with caplog.at_level(logging.WARNING, logger="kafka.net.selector"):
        selector.warning("Task %r ran for 0.3s (>0.1s threshold). It is blocking the event loop -- likely", 1)
        selector.warning("Wakeup socket returned empty. Rebuilding.")
    assert [r.getMessage() for r in caplog.records] == ["Wakeup socket returned empty. Rebuilding."]


@pytest.mark.slow  # kafka-python's bootstrap timeout (10 s) runs out
def test_kafka_down_is_one_line_and_exit_code_3(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    path = tmp_path / "history.jsonl"
    path.write_text('{"topic": "search.queries", "key": "q", "value": {}}\n')
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(path)])
    assert exc.value.code == EXIT_UNAVAILABLE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: Kafka is unreachable at 127.0.0.1:1 (")
    assert len(captured.err.splitlines()) == 1
    assert [r.getMessage() for r in caplog.records if r.name.startswith("kafka")] == []  # no retry chatter
