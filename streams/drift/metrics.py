"""Prometheus exposition of drift and operational health (scraped from ``intentloop dashboard``).

Values are computed at scrape time from the overview dict (Postgres + Redis), not kept in process
memory: ``drift check`` is a batch job whose counters would die with it, while the reports it
stores outlive it, so ``intentloop_drift_alerts_total`` counts stored first-time alerts and can
never go backwards. ``deploy/grafana/`` charts these series.
"""

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.drift.overview import latest_per_pair
from streams.drift.stats import STATISTICS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DriftCollector(Collector):
    """Turns one overview dict (fetched per scrape by ``source``) into metric families."""

    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        data = self._source()
        yield from _drift_families(data["reports"])
        yield _alerts_family(data["alerts_total"])
        yield _thresholds_family(data["thresholds"])
        yield from _ingest_families(data["health"])
        yield from _labeling_families(data["labeling"]["functions"])
        yield _abstention_family(data["abstentions"]["share"])
        yield _workers_family(data["workers"]["workers"])


def _drift_families(reports: list[dict[str, Any]]) -> Iterator[Metric]:
    """Statistics, alerting flag and sample count of each (stream, reference) pair's newest window."""
    stat = GaugeMetricFamily(
        "intentloop_drift_statistic",
        "drift statistic of the newest window, per stream and reference",
        labels=["stream", "reference", "statistic"],
    )
    alerting = GaugeMetricFamily(
        "intentloop_drift_alerting",
        "1 if the newest window of the stream alerts against the reference",
        labels=["stream", "reference"],
    )
    samples = GaugeMetricFamily(
        "intentloop_drift_window_samples",
        "labelled searches (or predictions) in the newest window",
        labels=["stream", "reference"],
    )
    for (stream, reference), r in sorted(latest_per_pair(reports).items()):
        for name in STATISTICS:
            if r.get(name) is not None:
                stat.add_metric([stream, reference, name], float(r[name]))
        alerting.add_metric([stream, reference], 1.0 if r["alert"] else 0.0)
        samples.add_metric([stream, reference], float(r["n"]))
    yield stat
    yield alerting
    yield samples


def _alerts_family(alerts_total: list[dict[str, Any]]) -> Metric:
    alerts = CounterMetricFamily(
        "intentloop_drift_alerts",
        "drift alerts raised (first time per window)",
        labels=["stream", "reference"],
    )
    for a in alerts_total:
        alerts.add_metric([a["stream"], a["reference"]], float(a["count"]))
    return alerts


def _thresholds_family(configured: dict[str, float | None]) -> Metric:
    thresholds = GaugeMetricFamily(
        "intentloop_drift_threshold", "configured alert threshold per statistic", labels=["statistic"]
    )
    for name, value in sorted(configured.items()):
        if value is not None:
            thresholds.add_metric([name], float(value))
    return thresholds


def _ingest_families(health: dict[str, Any]) -> Iterator[Metric]:
    """Ingestion health: feedback rate, events stored, dead letters."""
    yield GaugeMetricFamily(
        "intentloop_ingest_feedback_per_minute",
        f"feedback events stored per minute over the last {health['minutes']:g} minutes",
        value=float(health["feedback_per_minute"]),
    )
    yield CounterMetricFamily(
        "intentloop_ingest_events",
        "events stored (searches and feedback)",
        value=float(health["events_total"]),
    )
    yield CounterMetricFamily(
        "intentloop_ingest_dead_letters",
        "events dead-lettered",
        value=float(health["dead_letters_total"]),
    )
    yield GaugeMetricFamily(
        "intentloop_ingest_dead_letter_rate",
        "dead letters over everything that arrived",
        value=float(health["dead_letter_rate"]),
    )


def _labeling_families(functions: list[dict[str, Any]]) -> Iterator[Metric]:
    """Coverage and conflict of each labeling function in the latest labeling report."""
    lf_cov = GaugeMetricFamily(
        "intentloop_labeling_function_coverage",
        "share of queries a labeling function answers (latest labeling report)",
        labels=["function"],
    )
    lf_conf = GaugeMetricFamily(
        "intentloop_labeling_function_conflict",
        "share of queries where another function disagrees (latest labeling report)",
        labels=["function"],
    )
    for row in functions:
        if row.get("coverage") is not None:
            lf_cov.add_metric([str(row["name"])], float(row["coverage"]))
        if row.get("conflict") is not None:
            lf_conf.add_metric([str(row["name"])], float(row["conflict"]))
    yield lf_cov
    yield lf_conf


def _abstention_family(share: float | None) -> Metric:
    abst = GaugeMetricFamily(
        "intentloop_abstention_share", "share of aggregated queries that abstained (latest aggregation)"
    )
    if share is not None:
        abst.add_metric([], float(share))
    return abst


def _workers_family(workers: list[dict[str, Any]]) -> Metric:
    served = GaugeMetricFamily(
        "intentloop_worker_version",
        "1 for the adapter version each live inference worker serves (Redis heartbeats)",
        labels=["worker", "version"],
    )
    for w in workers:
        served.add_metric([str(w["worker"]), str(w["version"] or "none")], 1.0)
    return served


def render(source: Callable[[], dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of one overview (a registry per call: nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftCollector(source))
    return generate_latest(registry)
