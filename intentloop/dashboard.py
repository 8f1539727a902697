"""`intentloop dashboard`: one self-contained web page of label drift and operational health.

Works with no internet access: the page is HTML with inline CSS and server-rendered SVG charts
(``intentloop.svg``), no script and nothing fetched from elsewhere; it reloads itself every
``refresh_s`` seconds. The same data is JSON at ``/api/overview`` and Prometheus text at
``/metrics`` (what ``deploy/grafana/`` charts). Served by the standard library's threading HTTP
server: a page for a handful of operators needs no ASGI stack.
"""

import json
import logging
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from intentloop import svg
from store.db import Database
from store.registry import RedisRegistry
from streams.drift.metrics import CONTENT_TYPE as PROM_CONTENT_TYPE
from streams.drift.metrics import render as render_metrics
from streams.drift.overview import build_overview, latest_per_pair
from streams.drift.settings import DriftSettings

log = logging.getLogger(__name__)

_PAIR_STYLE = {
    ("weak_labels", "previous_window"): ("labels/previous", svg.color(0), False),
    ("weak_labels", "training"): ("labels/training", svg.color(1), False),
    ("predictions", "previous_window"): ("served/previous", svg.color(2), True),
    ("predictions", "training"): ("served/training", svg.color(3), True),
}
_STAT_TITLES = {
    "js": "Jensen-Shannon distance (base 2)",
    "psi": "PSI (population stability index)",
    "hellinger": "Hellinger distance",
    "linf": "L-infinity (largest share move)",
}

_CSS = """
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#1f2933;color:#fff;padding:10px 18px;display:flex;gap:18px;
  align-items:baseline;flex-wrap:wrap}
header h1{font-size:17px;margin:0}
header .meta{color:#cbd2d9}
main{padding:12px 18px;display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
section{background:#fff;border-radius:6px;padding:8px 10px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section.wide{grid-column:1/-1}
h2{font-size:14px;margin:2px 0 6px}
.pill{display:inline-block;padding:2px 8px;border-radius:10px;margin:2px 4px 2px 0;font-size:12px;color:#fff}
.alert{background:#d62728}.warn{background:#e8a33d}.ok{background:#2ca02c}.insufficient{background:#888}
.cards{display:flex;gap:10px;flex-wrap:wrap}
.card{border:1px solid #e4e7eb;border-radius:6px;padding:6px 10px;min-width:120px}
.card b{display:block;font-size:20px}
svg.chart{display:block;max-width:100%;height:auto}
svg .ct{font-weight:600;font-size:12px}
svg .ax{font-size:10px;fill:#555}
svg .lg{font-size:11px;fill:#333}
svg .empty{font-size:12px;fill:#999}
svg .grid{stroke:#eee}
svg .axis{stroke:#999}
ul.alerts{margin:0;padding-left:18px;max-height:220px;overflow:auto}
"""


_NO_REPORT = "no drift report yet: run <code>intentloop drift check</code>"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def _pair_name(pair: tuple[str, str]) -> str:
    return _PAIR_STYLE.get(pair, (f"{pair[0]} vs {pair[1]}", "", False))[0]


def drift_charts(data: dict[str, Any]) -> list[str]:
    """One line chart per statistic: a line per (stream, reference), threshold rules, red alerts."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in data["reports"]:
        by_pair.setdefault((r["stream"], r["reference"]), []).append(r)
    th = data["thresholds"]
    charts = []
    for stat, title in _STAT_TITLES.items():
        series = []
        for pair, rows in sorted(by_pair.items()):
            name, col, dashed = _PAIR_STYLE.get(pair, (f"{pair[0]} vs {pair[1]}", svg.MUTED, False))
            series.append(
                svg.Series(
                    name,
                    # windows too small to judge are left out: their noise would drown the signal
                    [
                        (
                            _epoch(r["window_end"]),
                            math.nan if r["status"] == "insufficient" else _nan(r[stat]),
                        )
                        for r in rows
                    ],
                    col,
                    [bool(r["alert"]) for r in rows],
                    dashed,
                )
            )
        rules: list[tuple[float, str, str]] = []
        if stat == "psi":
            rules = [(th["psi_warn"], "moderate", "#e8a33d"), (th["psi"], "major", svg.ALERT)]
        elif th.get(stat) is not None:
            rules = [(th[stat], "alert", svg.ALERT)]
        charts.append(svg.line_chart(title, series, thresholds=rules, cls=f"line drift-{stat}"))
    return charts


def moves_charts(data: dict[str, Any]) -> list[str]:
    """The labels that moved most in the newest window of weak labels, against each reference."""
    latest = latest_per_pair(data["reports"])
    out = []
    for reference, title in (("previous_window", "previous window"), ("training", "the training snapshot")):
        r = latest.get(("weak_labels", reference))
        items = []
        if r is not None:
            for m in r["moves"][:8]:
                tip = (
                    f"{m['label']}: {m['reference_share']:.1%} -> {m['share']:.1%} "
                    f"(window ending {r['window_end']})"
                )
                items.append((m["label"], float(m["delta"]), tip))
        when = f" (window ending {r['window_end'][11:19]})" if r else ""
        out.append(svg.diverging_bars(f"Labels that moved most vs {title}{when}", items, cls="moves"))
    return out


def volume_charts(data: dict[str, Any]) -> list[str]:
    """Labelled searches per window by label (top 11 + other), and events per minute."""
    lab = data["label_volume"]
    xs = [_epoch(k) for k in lab]
    totals: dict[str, int] = {}
    for counts in lab.values():
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    top = [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:11]]
    stacks = [(k, [float(c.get(k, 0)) for c in lab.values()]) for k in top]
    rest = [float(sum(v for k, v in c.items() if k not in top)) for c in lab.values()]
    if any(rest):
        stacks.append(("other", rest))
    per_min = 60.0 / data["window_s"]
    vol = data["volume"]
    ev = [
        svg.Series(
            "searches/min",
            [(_epoch(k), v.get("searches", 0) * per_min) for k, v in vol.items()],
            svg.color(0),
        ),
        svg.Series(
            "feedback/min",
            [(_epoch(k), v.get("feedback", 0) * per_min) for k, v in vol.items()],
            svg.color(1),
        ),
    ]
    return [
        svg.stacked_bars("Label volume: labelled searches per window", xs, stacks, cls="stack volume"),
        svg.line_chart("Events per minute (event time)", ev, cls="line events"),
    ]


def labeling_charts(data: dict[str, Any]) -> list[str]:
    lab = data["labeling"]
    rows = [(str(r["name"]), [r.get("coverage"), r.get("conflict")]) for r in lab["functions"]]
    ab = data["abstentions"]
    ab_rows: list[tuple[str, list[float | None]]] = []
    if ab["queries"]:
        ab_rows.append(("all reasons", [ab["share"]]))
        ab_rows += [(k, [v / ab["queries"]]) for k, v in ab["by_reason"].items()]
    return [
        svg.grouped_hbars(
            "Labeling functions: coverage and conflict", rows, ["coverage", "conflict"], cls="lfs"
        ),
        svg.grouped_hbars("Abstentions (share of aggregated queries)", ab_rows, ["share"], cls="abstain"),
    ]


def timeline_chart(data: dict[str, Any]) -> str:
    tl = data["timeline"]
    marks = []
    for v in tl["versions"]:
        gate = v["gate"]
        col = svg.OK if gate == "blessed" else (svg.ALERT if gate == "rejected" else svg.MUTED)
        f1 = v["val_macro_f1"]
        tip = f"{v['version']} trained {v['created_at']}; gate: {gate or 'not recorded'}"
        if f1 is not None:
            tip += f"; val macro-F1 {f1:.3f}"
        if v["gate_reasons"]:
            tip += "; " + "; ".join(v["gate_reasons"][:3])
        marks.append(svg.Mark(_epoch(v["created_at"]), "versions", v["version"][:8], tip, col))
    for e in tl["alias_events"]:
        shape = {"promote": "up", "rollback": "down", "retire": "cross"}.get(e["action"], "circle")
        col = {"promote": svg.OK, "rollback": svg.ALERT}.get(e["action"], svg.MUTED)
        tip = (
            f"{e['action']} {e['alias']} -> {e['version']} (was {e['previous']}) "
            f"by {e['actor']}: {e['reason']}"
        )
        marks.append(
            svg.Mark(_epoch(e["at"]), "aliases", f"{e['alias']}:{e['version'][:6]}", tip, col, shape)
        )
    return svg.timeline("Adapter timeline: versions (gate verdict) and alias moves", marks)


def render_page(data: dict[str, Any], *, refresh_s: int = 30) -> str:
    """The whole dashboard as one HTML document."""
    latest = latest_per_pair(data["reports"])
    pills = "".join(
        f'<span class="pill {escape(r["status"])}" title="{escape("; ".join(r["reasons"]))}">'
        f"{escape(_pair_name(pair))}: {escape(r['status'])}</span>"
        for pair, r in sorted(latest.items())
    )
    health = data["health"]
    workers = data["workers"]
    worker_cards = "".join(
        f'<div class="card worker"><span>{escape(str(w["worker"]))}</span>'
        f"<b>{escape(str(w['version'] or '-'))}</b>"
        f"{escape(', '.join(f'{a}={v}' for a, v in sorted(w['aliases'].items())) or '')}</div>"
        for w in workers["workers"]
    ) or (
        '<div class="card">no live worker'
        + ("" if workers["available"] else " (Redis unreachable)")
        + "</div>"
    )
    alerts = [r for r in reversed(data["reports"]) if r["alert"]][:20]
    alert_items = "".join(
        f"<li><b>{escape(r['window_end'])}</b> {escape(r['stream'])} vs {escape(r['reference'])}: "
        f"{escape('; '.join(r['reasons']))}</li>"
        for r in alerts
    )
    ab = data["abstentions"]
    cards = [
        ("feedback / min (last 15 min)", f"{health['feedback_per_minute']:g}"),
        ("dead-letter rate", f"{health['dead_letter_rate']:.2%}"),
        ("events stored", f"{health['events_total']:,}"),
        ("dead letters", f"{health['dead_letters_total']:,}"),
        ("abstentions", "-" if ab["share"] is None else f"{ab['share']:.1%}"),
        (
            "LF coverage (labelled)",
            "-" if data["labeling"]["coverage"] is None else f"{data['labeling']['coverage']:.1%}",
        ),
    ]
    card_html = "".join(
        f'<div class="card"><span>{escape(k)}</span><b>{escape(v)}</b></div>' for k, v in cards
    )
    drift = "".join(drift_charts(data))
    moves = "".join(moves_charts(data))
    volume = "".join(volume_charts(data))
    labeling = "".join(labeling_charts(data))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_s}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>intentloop — label drift</title><style>{_CSS}</style></head>
<body>
<header><h1>intentloop — label drift and health</h1>
<span class="meta">champion <b>{escape(str(data["champion"] or "none"))}</b></span>
<span class="meta">window {data["window_s"]} s</span><span class="meta">rendered {now}</span></header>
<main>
<section class="wide" id="status"><h2>Newest window</h2>{pills or _NO_REPORT}</section>
<section class="wide" id="drift"><h2>Drift over time</h2><div class="cards">{drift}</div></section>
<section id="moves"><h2>Labels that moved most</h2>{moves}</section>
<section id="volume"><h2>Label volume and traffic</h2>{volume}</section>
<section id="labeling"><h2>Labeling functions</h2>{labeling}</section>
<section id="health"><h2>Operational health</h2><div class="cards">{card_html}</div>
<h2 style="margin-top:10px">Live workers</h2><div class="cards">{worker_cards}</div></section>
<section class="wide" id="timeline"><h2>Adapters</h2>{timeline_chart(data)}</section>
<section class="wide" id="alerts"><h2>Recent alerts</h2>
<ul class="alerts">{alert_items or "<li>none</li>"}</ul></section>
</main></body></html>"""


class DashboardServer:
    """The dashboard's HTTP server on a background thread (``serve_forever`` for the CLI)."""

    def __init__(
        self,
        db: Database,
        registry: RedisRegistry | None,
        settings: DriftSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 8090,
        refresh_s: int = 30,
    ) -> None:
        source: Callable[[], dict[str, Any]] = lambda: build_overview(db, registry, settings)  # noqa: E731
        self._httpd = ThreadingHTTPServer((host, port), _handler(source, refresh_s))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> "DashboardServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _handler(source: Callable[[], dict[str, Any]], refresh_s: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/":
                    self._send(
                        200, "text/html; charset=utf-8", render_page(source(), refresh_s=refresh_s).encode()
                    )
                elif path == "/api/overview":
                    self._send(200, "application/json", json.dumps(source(), default=str).encode())
                elif path == "/metrics":
                    self._send(200, PROM_CONTENT_TYPE, render_metrics(source))
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok")
                else:
                    self._send(404, "text/plain", b"not found")
            except Exception as exc:  # one bad scrape must not kill the server; say why
                log.exception("dashboard request %s failed", path)
                self._send(500, "text/plain", f"{type(exc).__name__}: {exc}".encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("dashboard: " + format, *args)

    return Handler
