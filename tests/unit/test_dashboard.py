"""The dashboard page, its routes and Prometheus text from an overview dict (no servers): every
chart draws its points, thresholds are ruled, an empty installation renders placeholders, not
errors, and the page is escaped and fetches nothing."""

import json
import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from intentloop.dashboard import create_app, render_page
from store.explanations import ExampleExplanation, GlobalView, WordPush
from streams.drift.metrics import render as render_metrics


def _report(i: int, stream: str, reference: str, alert: bool) -> dict:
    start = f"2025-01-06T09:{i:02d}:00+00:00"
    return {
        "id": i,
        "stream": stream,
        "reference": reference,
        "window_start": start,
        "window_end": f"2025-01-06T09:{i + 1:02d}:00+00:00",
        "version": "v1",
        "n": 500,
        "n_reference": 480,
        "js": 0.05 + (0.3 if alert else 0),
        "psi": 0.02 + (0.5 if alert else 0),
        "hellinger": 0.04,
        "linf": 0.03,
        "p_value": 0.5,
        "status": "alert" if alert else "ok",
        "alert": alert,
        "alerted_at": None,
        "new_labels": ["pets"] if alert else [],
        "vanished_labels": [],
        "reasons": ["new label(s): pets"] if alert else [],
        "moves": [{"label": "garden", "share": 0.2, "reference_share": 0.06, "delta": 0.14}],
        "psi_band": "major" if alert else "stable",
    }


def overview(reports: list[dict]) -> dict:
    return {
        "window_s": 60,
        "thresholds": {"js": 0.2, "psi": 0.25, "psi_warn": 0.1, "hellinger": None, "linf": None},
        "reports": reports,
        "alerts_total": [{"stream": "weak_labels", "reference": "previous_window", "count": 1}],
        "volume": {"2025-01-06T09:00:00+00:00": {"searches": 50, "feedback": 300}},
        "label_volume": {
            "2025-01-06T09:00:00+00:00": {"garden": 10, "pets": 4},
            "2025-01-06T09:01:00+00:00": {"garden": 12},
        },
        "labeling": {
            "report_id": 1,
            "computed_at": None,
            "functions": [{"name": "purchase", "coverage": 0.2, "conflict": 0.01}],
            "coverage": 0.7,
        },
        "abstentions": {"queries": 100, "abstained": 20, "share": 0.2, "by_reason": {"min_evidence": 20}},
        "timeline": {
            "versions": [
                {
                    "version": "v1aaaaaaaa",
                    "created_at": "2025-01-06T08:00:00+00:00",
                    "val_macro_f1": 0.9,
                    "gate": "blessed",
                    "gate_reasons": [],
                }
            ],
            "alias_events": [
                {
                    "alias": "champion",
                    "version": "v1aaaaaaaa",
                    "previous": None,
                    "action": "promote",
                    "actor": "t",
                    "reason": "r",
                    "at": "2025-01-06T08:05:00+00:00",
                }
            ],
        },
        "health": {
            "minutes": 15,
            "feedback_per_minute": 12.5,
            "dead_letters_per_minute": 0,
            "events_total": 1000,
            "dead_letters_total": 3,
            "dead_letter_rate": 0.003,
        },
        "champion": "v1aaaaaaaa",
        "workers": {"available": True, "workers": [{"worker": "w1", "version": "v1aaaaaaaa", "aliases": {}}]},
    }


def _reports() -> list[dict]:
    reports = [_report(i, "weak_labels", "previous_window", alert=(i == 4)) for i in range(5)]
    return reports + [_report(i, "weak_labels", "training", alert=False) for i in range(5)]


def _chart(html: str, css: str) -> str:
    found = re.search(rf'<svg [^>]*class="chart {css}".*?</svg>', html, re.S)
    assert found is not None, css
    return found.group(0)


def test_page_draws_every_chart_with_points_and_thresholds():
    html = render_page(overview(_reports()))
    assert html.count("<svg") == 11  # 4 statistics, 2 moves, volume, events, LFs, abstentions, timeline
    psi_chart = _chart(html, "line drift-psi")
    assert psi_chart.count("<circle") == 10
    assert psi_chart.count('class="dot reactive alert"') == 1
    assert re.findall(r">threshold (\w+) ([\d.]+)<", psi_chart) == [("moderate", "0.1"), ("major", "0.25")]
    assert "<title>labels/previous 2025-01-06T09:05:00+00:00: 0.52 (ALERT)</title>" in psi_chart
    # a bar with a tooltip per count (pygal also draws an empty stack as a zero-height bar)
    assert _chart(html, "stack volume").count('<g class="bar"><title>') == 3  # garden twice, pets once
    assert _chart(html, "lfs").count('<g class="bar"><title>') == 2
    assert ">+14.0 pt<" in _chart(html, "moves")
    assert _chart(html, "timeline").count("<circle") == 2  # the version and its promotion
    assert 'class="pill alert"' in html
    assert "new label(s): pets" in html
    assert "v1aaaaaaaa" in html
    assert "1,000" in html and "0.30%" in html and "12.5" in html  # the health cards
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from anywhere
    assert "<script" not in html


def test_empty_installation_renders_placeholders():
    data = overview([])
    data |= {
        "volume": {},
        "label_volume": {},
        "timeline": {"versions": [], "alias_events": []},
        "champion": None,
    }
    data["workers"] = {"available": False, "workers": []}
    html = render_page(data)
    assert "no drift report yet" in html
    assert "no data yet" in html
    assert "Redis unreachable" in html


def test_html_is_escaped():
    reports = [_report(0, "weak_labels", "previous_window", alert=True)]
    reports[0]["reasons"] = ["<script>alert(1)</script>"]
    reports[0]["moves"][0]["label"] = "<b>garden</b>"
    html = render_page(overview(reports))
    assert "<script" not in html and "<b>garden" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_routes_serve_page_json_metrics_and_plain_errors():
    data = overview(_reports())
    client = TestClient(create_app(lambda: data, refresh_s=7))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="7">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/api/overview").json()["champion"] == "v1aaaaaaaa"
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "intentloop_abstention_share 0.2" in metrics.text
    assert client.get("/healthz").text == "ok"
    missing = client.get("/docs")  # no generated API docs: they load their script from a CDN
    assert (missing.status_code, missing.text) == (404, "not found")


def test_a_failing_overview_answers_500_with_its_reason():
    def broken() -> dict:
        raise RuntimeError("postgres is down")

    response = TestClient(create_app(broken)).get("/api/overview")
    assert (response.status_code, response.text) == (500, "RuntimeError: postgres is down")


def test_metrics_expose_drift_and_health():
    reports = [_report(i, "weak_labels", "previous_window", alert=(i == 4)) for i in range(5)]
    text = render_metrics(lambda: overview(reports)).decode()
    assert (
        'intentloop_drift_statistic{reference="previous_window",statistic="psi",stream="weak_labels"} 0.52'
        in text
    )
    assert 'intentloop_drift_alerting{reference="previous_window",stream="weak_labels"} 1.0' in text
    assert 'intentloop_drift_alerts_total{reference="previous_window",stream="weak_labels"} 1.0' in text
    assert 'intentloop_drift_threshold{statistic="psi"} 0.25' in text
    assert "intentloop_ingest_dead_letter_rate 0.003" in text
    assert 'intentloop_labeling_function_coverage{function="purchase"} 0.2' in text
    assert "intentloop_abstention_share 0.2" in text
    assert 'intentloop_worker_version{version="v1aaaaaaaa",worker="w1"} 1.0' in text


def test_grafana_dashboard_queries_only_metrics_we_expose():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "deploy/grafana/dashboards/intentloop-drift.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_total$", "", m) for e in exprs for m in re.findall(r"intentloop_[a-z_]+", e)}
    reports = [_report(0, "weak_labels", "previous_window", alert=True)]
    text = render_metrics(lambda: overview(reports)).decode()
    exposed = {re.sub(r"_total$", "", m) for m in re.findall(r"^# TYPE (\S+)", text, re.M)}
    exposed.add("intentloop_served_version")  # every inference worker's /metrics (serving/metrics.py)
    assert used, "the dashboard queries something"
    assert used <= exposed, used - exposed
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_pygal_leaves_no_legacy_import_finder_behind():
    import sys

    import intentloop.dashboard  # noqa: F401  (imports pygal)

    assert all(hasattr(finder, "find_spec") for finder in sys.meta_path)


def _explanations() -> dict:
    from streams.drift.overview import explanations_dict

    words = [
        # as latest_global_view reads them: by label, then total push
        WordPush("garden", "acme", 0.2, 20.0, 5, 100, 1.0),  # a brand only ever seen with garden
        WordPush("garden", "hose", 0.4, 12.0, 3, 30, 0.8),
        WordPush("garden", "green", -0.1, -1.0, 1, 10, 0.5),
        WordPush("electronics", "charger", 0.5, 8.0, 2, 16, 0.9),
        *[WordPush("pets", f"w{i}", 0.1, 10.0 - i, 1, 5, 0.5) for i in range(10)],
    ]
    examples = [
        ExampleExplanation(
            "acme garden hose", "garden", 0.92, 20, [("acme", 0.6), ("garden", 0.3), ("hose", -0.15)]
        ),
        ExampleExplanation(
            "<script>alert(1)</script> charger",
            "electronics",
            0.61,
            3,
            [("<script>alert(1)</script>", 0.0), ("charger", 0.5)],
        ),
    ]
    at = datetime(2026, 12, 4, 9, tzinfo=UTC)
    view = GlobalView("v1aaaaaaaa", "category", "partition", at, words, examples)
    data = explanations_dict(view)
    assert data is not None
    return json.loads(json.dumps(data))  # what /api/overview serves, and the page reads the same


def test_explanations_dict_keeps_the_top_words_per_label():
    from streams.drift.overview import explanations_dict

    data = _explanations()
    assert explanations_dict(None) is None
    assert data["computed_at"] == "2026-12-04T09:00:00+00:00" and data["method"] == "partition"
    assert [w["word"] for w in data["labels"]["garden"]] == ["acme", "hose", "green"]
    assert len(data["labels"]["pets"]) == 8
    assert data["examples"][0]["words"] == [["acme", 0.6], ["garden", 0.3], ["hose", -0.15]]


def test_page_shows_the_global_view_per_label_and_explained_queries():
    data = overview(_reports()) | {"explanations": _explanations()}
    html = render_page(data)
    section = re.search(r'<section class="wide" id="explanations">.*?</section>', html, re.S)
    assert section is not None
    panel = section.group(0)
    assert "Why the model says what it says" in panel and "partition" in panel and "v1aaaaaaaa" in panel
    assert panel.count("<svg") == 3  # one chart per label
    assert html.count("<svg") == 11 + 3
    garden = _chart(panel, "explain")  # the label with most traffic comes first
    assert ">garden<" in garden
    bars = re.findall(r'<g class="bar" style="fill: (#\w+)[^"]*"><title>(\w+) -&gt; garden', garden)
    assert bars == [("#d62728", "green"), ("#2ca02c", "hose"), ("#2ca02c", "acme")]  # lowest first
    assert "acme *" in garden  # the spurious-cue marker on its axis label
    assert "only ever with this label: acme" in panel
    # each word highlighted by its share of the query's largest attribution, green toward, red away
    assert 'style="background: rgba(44, 160, 44, 0.85)" title="+0.600">acme<' in panel
    assert 'style="background: rgba(214, 39, 40, 0.21)" title="-0.150">hose<' in panel
    assert "<b>garden</b> 92%" in panel
    # a query is data: escaped like everything else, and the page still holds no script
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</span>" in panel


def test_page_without_a_per_label_view_says_how_to_compute_one():
    for data in (overview(_reports()), overview(_reports()) | {"explanations": None}):
        html = render_page(data)
        assert "run <code>intentloop explain</code>, or let the training job promote" in html
        assert html.count("<svg") == 11
