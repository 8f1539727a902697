"""Monitoring: the ``drift`` command group (``streams.drift``) and the ``dashboard``."""

import json
import time
from datetime import datetime
from typing import Any

import click

from intentloop.cli.common import runtime
from store.exceptions import IntentloopError


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO timestamp: {value!r}") from exc
    if ts.tzinfo is None:
        raise click.BadParameter(f"give a time zone (e.g. {value}+00:00)")
    return ts


@click.group("drift")
def drift() -> None:
    """Label drift: compare windows of weak labels and predictions with the champion's training
    snapshot and with the previous window (INTENTLOOP_DRIFT__*)."""


@drift.command("check")
@click.option("--since", default=None, help="First window (ISO time) [default: LOOKBACK_WINDOWS back].")
@click.option("--until", default=None, help="End of the last window (ISO time) [default: the clock].")
@click.option("--window-s", type=int, default=None, help="Overrides INTENTLOOP_DRIFT__WINDOW_S.")
@click.option("--clock", type=click.Choice(["wall", "events"]), default=None, help="Overrides __CLOCK.")
@click.option("--every", type=float, default=None, help="Repeat every this many seconds (Ctrl-C stops).")
@click.option("--no-kafka", is_flag=True, help="Do not publish alerts to the ops.alerts topic.")
def drift_check(
    since: str | None,
    until: str | None,
    window_s: int | None,
    clock: str | None,
    every: float | None,
    no_kafka: bool,
) -> None:
    """Compute every complete window in range, store the reports, raise first-time alerts.

    Alerts go to the ops.alerts topic (JSON), the log (WARNING) and, with
    INTENTLOOP_DRIFT__REFRESH_ON_ALERT=true, a refresh request in Redis. Prints one line per alert,
    then a JSON summary.
    """
    from streams.drift.job import KafkaAlertSink, run_drift_check

    rt = runtime()
    db = rt.ready_db()
    updates: dict[str, Any] = {k: v for k, v in (("window_s", window_s), ("clock", clock)) if v is not None}
    settings = rt.settings.drift.model_copy(update=updates)
    sink = None if no_kafka else KafkaAlertSink(rt.endpoints.kafka_bootstrap)
    try:
        while True:
            result = run_drift_check(
                db,
                settings,
                since=_parse_ts(since),
                until=_parse_ts(until),
                sinks=[sink] if sink else [],
                registry=rt.registry,
                dimensions=rt.settings.taxonomy.dimensions,
            )
            for alert in result.alerts:
                click.echo(
                    f"ALERT {alert['stream']} vs {alert['reference']} "
                    f"{alert['window_start']}..{alert['window_end']}: {'; '.join(alert['reasons'])}"
                )
            click.echo(json.dumps(result.summary(), default=str))
            if every is None:
                break
            time.sleep(every)
    finally:
        if sink is not None:
            sink.close()
        rt.close()


@drift.command("report")
@click.option("--json", "as_json", is_flag=True, help="The newest reports as one JSON object.")
def drift_report(as_json: bool) -> None:
    """The newest window of each stream against each reference: statistics, verdict, top moves."""
    from streams.drift.overview import build_overview, latest_per_pair

    rt = runtime()
    db = rt.ready_db()
    data = build_overview(db, None, rt.settings.drift, windows=2)
    latest = latest_per_pair(data["reports"])
    if not latest:
        raise IntentloopError("no drift report yet: run `intentloop drift check` first")
    if as_json:
        click.echo(json.dumps({f"{s}/{r}": rep for (s, r), rep in sorted(latest.items())}, default=str))
        return
    click.echo(f"champion {data['champion'] or 'none'}; window {data['window_s']} s")
    for (stream, reference), r in sorted(latest.items()):
        stats = " ".join(f"{k}={r[k]:.3f}" for k in ("js", "psi", "hellinger", "linf") if r[k] is not None)
        click.echo(
            f"{stream:<12} vs {reference:<16} {r['window_start']}..{r['window_end'][11:]} "
            f"n={r['n']:<6} {r['status'].upper():<12} {stats}"
        )
        moves = ", ".join(f"{m['label']} {m['delta'] * 100:+.1f}pt" for m in r["moves"][:4])
        click.echo(f"    moved most: {moves}")
        for reason in r["reasons"]:
            click.echo(f"    - {reason}")


@click.command("dashboard")
@click.option("--port", type=int, default=None, help="Overrides INTENTLOOP_DRIFT__DASHBOARD_PORT.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--refresh", default=30, show_default=True, help="Seconds between page reloads.")
def dashboard(port: int | None, host: str, refresh: int) -> None:
    """Serve the drift and health dashboard (HTML at /, JSON at /api/overview, Prometheus at /metrics)
    and the review page (/review: reviewers log in with a token from `intentloop review token add`).

    Self-contained: no CDN; charts are SVG rendered by the server, and the only script is the
    review page's keyboard handler, served by the dashboard itself.
    """
    from intentloop.dashboard import DashboardServer

    rt = runtime()
    db = rt.ready_db()
    server = DashboardServer(
        db,
        rt.registry,
        rt.settings.drift,
        host=host,
        port=port or rt.settings.drift.dashboard_port,
        refresh_s=refresh,
        review=rt.settings.review,
        category_labels=rt.settings.taxonomy.labels,
    )
    click.echo(
        f"dashboard on http://{host}:{server.port}/ (metrics at /metrics, review page at /review); "
        "Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        rt.close()
