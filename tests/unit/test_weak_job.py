"""The pure parts of the aggregation job: store rows -> records, the report, its text, gold files."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from intentloop.labels_report import decision_line, report_lines, summary_lines
from intentloop.settings import Settings
from store.taxonomy import normalise_query
from streams.events import Feedback, FeedbackType, SearchQuery
from streams.exceptions import GoldFileError
from streams.gold import read_gold_file
from streams.labels_job import build_report
from streams.weak import label_model
from streams.weak.analysis import analyse, report
from streams.weak.functions import DEFAULT_LFS
from streams.weak.policies import LabelDistribution, majority
from streams.weak.records import records_from_events, records_from_search_rows
from streams.weak.settings import LabelSettings
from streams.weak.vote_table import VoteTable

T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)


def _q(qid, session, seconds, text, shown=("a", "b", "c")):
    return SearchQuery(
        query_id=qid,
        session_id=session,
        timestamp=T0 + timedelta(seconds=seconds),
        query=text,
        shown=list(shown),
    )


def _f(eid, qid, kind, position, seconds, dwell=None):
    return Feedback(
        event_id=eid,
        query_id=qid,
        timestamp=T0 + timedelta(seconds=seconds),
        type=kind,
        product_id="abc"[position],
        position=position,
        dwell_ms=dwell,
    )


def _rows(queries, feedback):
    """What ``store.labels.iter_search_rows`` yields for these events (same order, same columns)."""
    by_query = {}
    for f in feedback:
        by_query.setdefault(f.query_id, []).append(f)
    rows = []
    for q in sorted(queries, key=lambda q: (q.session_id, q.timestamp, q.query_id)):
        head = (q.query_id, q.session_id, q.timestamp, normalise_query(q.query), list(q.shown))
        fbs = sorted(by_query.get(q.query_id, []), key=lambda f: f.timestamp)
        if not fbs:
            rows.append((*head, None, None, None, None, None))
        for f in fbs:
            rows.append((*head, f.type.value, f.product_id, f.position, f.dwell_ms, f.timestamp))
    return rows


def test_records_from_store_rows_equal_records_from_events():
    queries = [
        _q("q1", "s1", 0, "Running  Shoes"),
        _q("q2", "s1", 30, "trail shoes"),
        _q("q4", "s1", 31, "trail shoes", shown=()),
        _q("q3", "s2", 10, "usb cable"),
        _q("q5", "s0", 5, "lamp"),
    ]
    feedback = [
        _f("e1", "q1", FeedbackType.click, 1, 4, dwell=20_000),
        _f("e2", "q1", FeedbackType.add_to_cart, 1, 9),
        _f("e3", "q3", FeedbackType.impression, 0, 11),
        _f("e4", "q3", FeedbackType.click, 2, 11, dwell=3_000),
        _f("e5", "q2", FeedbackType.purchase, 0, 40),
    ]
    from_rows = records_from_search_rows(_rows(queries, feedback))
    assert from_rows == records_from_events(queries, feedback)
    assert [r.query_id for r in from_rows] == ["q1", "q5", "q3", "q2", "q4"]
    assert (from_rows[0].next_norm_text, from_rows[0].next_gap_s) == ("trail shoes", 30.0)
    assert from_rows[-1].shown == () and from_rows[-1].next_norm_text is None


def test_records_from_no_rows():
    assert records_from_search_rows([]) == []


def _table() -> VoteTable:
    net = {
        "red shoes": {"purchase": {"fashion": 3.0}, "click_dwell": {"fashion": 1.0, "sports": 1.0}},
        "usb": {"click_dwell": {"electronics": 1.0}},
        "nothing": {},
    }
    return VoteTable(
        net=net,
        support={"red shoes": 5.0, "usb": 1.0},
        searches={"red shoes": 3, "usb": 1, "nothing": 2},
        lf_searches={lf.name: 0 for lf in DEFAULT_LFS} | {"purchase": 1, "click_dwell": 4},
        lf_votes={lf.name: 0 for lf in DEFAULT_LFS} | {"purchase": 1, "click_dwell": 3},
    )


def test_label_model_distributions_abstain_by_the_majority_rules():
    posteriors = {
        "red shoes": {"fashion": 0.9, "sports": 0.0999, "toys": 0.0001},
        "usb": {"electronics": 0.95, "fashion": 0.05},
    }
    dists = label_model.distributions(posteriors, _table(), min_evidence=2.0, min_confidence=0.6)
    shoes, usb = dists["red shoes"], dists["usb"]
    assert (shoes.label, shoes.abstained, shoes.evidence) == ("fashion", False, 5.0)
    assert set(shoes.distribution) == {"fashion", "sports"}  # negligible mass is not stored
    assert shoes.confidence == pytest.approx(0.9 / 0.9999)
    assert (usb.label, usb.abstained, usb.reason) == ("electronics", True, "min_evidence")


def _report(gold=None, method="majority"):
    table = _table()
    settings = LabelSettings(policy="threshold", min_evidence=2.0, min_confidence=0.6)
    dists = majority(table, settings.min_evidence, settings.min_confidence)
    gold = gold or {}
    comparison = label_model.compare(gold, dists, {}, margin=settings.label_model_margin)
    return build_report(
        settings=settings,
        window=(T0 - timedelta(days=90), T0),
        n_searches=table.n_searches,
        distributions=dists,
        method=method,
        theta=(1.0, 0.61234, 0.4),
        lf_rows=report(analyse(table, DEFAULT_LFS, gold)),
        comparison=comparison,
        model_info={},
        gold=gold,
    )


def test_report_counts_labelled_and_abstained_queries():
    rep = _report(gold={"red shoes": "fashion", "usb": "electronics"})
    assert (rep["searches"], rep["queries"], rep["labelled"]) == (6, 3, 1)
    assert rep["abstained"] == {"total": 2, "by_reason": {"min_evidence": 1, "no_evidence": 1}}
    assert rep["coverage"] == pytest.approx(1 / 3, abs=1e-4)
    assert rep["gold_accuracy"] == 1.0  # only "red shoes" is labelled, and right
    assert rep["propensity"] == {"method": "harvest", "theta": [1.0, 0.6123, 0.4]}
    assert [row["name"] for row in rep["labeling_functions"]] == [lf.name for lf in DEFAULT_LFS]
    assert rep["settings"]["min_evidence"] == 2.0
    json.dumps(rep)  # stored as JSONB: must be plain JSON


def test_report_renders_a_row_per_function_and_the_decision():
    rep = _report()
    assert "no gold labels" in decision_line(rep) and decision_line(rep).startswith("majority")
    lines = report_lines(7, T0, rep)
    assert lines[0] == "labeling report 7, computed 2025-01-06T09:00:00+00:00"
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("  ") and "%" in line}
    assert rows["purchase"][:3] == ["purchase", "+", "1"]
    assert rows["return"][1] == "-"
    summary = summary_lines(7, rep)
    assert summary[0] == "aggregated 6 searches into 3 queries: 1 labelled (33.3%), 2 abstained " + (
        "(min_evidence 1, no_evidence 1)"
    )
    assert summary[-1].startswith("report 7 stored")


def test_gold_files_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "g.csv"
    csv_file.write_text('label,query\nfashion,"  Red  SHOES "\ntoys,lego\n', encoding="utf-8")
    assert read_gold_file(csv_file) == [("red shoes", "fashion"), ("lego", "toys")]
    jsonl = tmp_path / "g.jsonl"
    jsonl.write_text('{"query": "USB", "label": " electronics "}\n\n{"query": "x", "label": "toys"}\n')
    assert read_gold_file(jsonl) == [("usb", "electronics"), ("x", "toys")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "q,label\nx,toys\n", "needs 'query' and 'label' columns (missing query)"),
        ("a.csv", "query,label\n", "no gold labels"),
        ("a.csv", "query,label\nx,\n", "a.csv:2: 'label' must be non-empty"),
        ("a.jsonl", '["x", "toys"]\n', "a.jsonl:1: expected an object"),
        ("a.jsonl", '{"query": 3, "label": "toys"}\n', "a.jsonl:1: 'query' must be non-empty text"),
        ("a.jsonl", '{"query": "x", "label": "toys"}\n{nope\n', "a.jsonl:2: not JSON"),
        ("a.xlsx", "", "unknown format '.xlsx'"),
    ],
)
def test_bad_gold_files_name_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GoldFileError, match=re.escape(message)):
        read_gold_file(path)


def test_gold_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "g.csv"
    path.write_bytes(b"query,label\n\xff\xfe,toys\n")
    with pytest.raises(GoldFileError, match="not UTF-8"):
        read_gold_file(path)


def test_label_settings_from_environment(monkeypatch):
    monkeypatch.setenv("INTENTLOOP_LABELS__HALF_LIFE_DAYS", "7")
    monkeypatch.setenv("INTENTLOOP_LABELS__PROPENSITY_METHOD", "pbm")
    monkeypatch.setenv("INTENTLOOP_LABELS__LABEL_MODEL_MARGIN", "0.05")
    labels = Settings().labels
    assert (labels.half_life_s, labels.propensity_method, labels.label_model_margin) == (
        7 * 86400.0,
        "pbm",
        0.05,
    )
    monkeypatch.setenv("INTENTLOOP_LABELS__WINDOW_DAYS", "null")
    assert Settings().labels.window_s is None  # "null" switches the window off
    assert LabelSettings(window_days=None, half_life_days=None).half_life_s is None
    assert LabelSettings().half_life_s == 14 * 86400.0


def test_label_distribution_rows_match_the_table_columns():
    from store.models import LabelDistribution as Row

    d = LabelDistribution("q", "toys", 1.0, 3.0, {"toys": 1.0}, False)
    # the job adds the method, the store the dimension (replace_label_distributions) and the time
    assert set(d.to_dict()) | {"method", "dimension", "computed_at"} == set(Row.__table__.columns.keys())
