"""Prometheus metrics of one inference worker, in a registry of its own.

A registry per worker (not the process-global default) keeps tests that build several apps in one
process from colliding, and lets the served-version gauge be computed at scrape time from the host's
routing, so it can never disagree with what answers requests.
"""

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
_EXPLAIN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _ServedVersions(Collector):
    """``intentloop_served_version{alias,version} 1`` for every alias the host routes to right now."""

    def __init__(self, source: Callable[[], Mapping[str, str]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "intentloop_served_version",
            "1 for the adapter version each alias serves",
            labels=["alias", "version"],
        )
        for alias, version in sorted(self._source().items()):
            gauge.add_metric([alias, version], 1.0)
        yield gauge


class ServingMetrics:
    """Requests, latency, micro-batch sizes, swaps, refusals, explanations and the served versions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "intentloop_http_requests", "HTTP requests by path and status", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "intentloop_http_request_seconds",
            "HTTP request latency by path",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "intentloop_predictions", "queries answered, by alias", ["alias"], registry=r
        )
        self.batch_queries = Histogram(
            "intentloop_batch_queries",
            "queries per model call (micro-batch size)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "intentloop_batch_requests",
            "requests grouped into one micro-batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.swaps = Counter(
            "intentloop_swaps",
            "alias flips by kind: loaded (new version), warm (kept loaded, no reload), cleared",
            ["alias", "kind"],
            registry=r,
        )
        self.refusals = Counter(
            "intentloop_adapter_refusals", "adapters refused, by reason", ["reason"], registry=r
        )
        self.explain_seconds = Histogram(
            "intentloop_explain_seconds",
            "time to compute one explanation, by method (queueing for a slot excluded)",
            ["method"],
            buckets=_EXPLAIN_BUCKETS,
            registry=r,
        )
        self.explanations = Counter(
            "intentloop_explanations",
            "explanation requests by outcome: ok, busy (429: every slot taken), invalid (4xx)",
            ["outcome"],
            registry=r,
        )
        self.explain_running = Gauge(
            "intentloop_explanations_running", "explanations being computed now", registry=r
        )
        self._served: Callable[[], Mapping[str, str]] = dict

    def watch_served(self, source: Callable[[], Mapping[str, str]]) -> None:
        """Report ``source()`` (alias -> version) as the served-version gauge at every scrape."""
        if self._served is dict:
            self.registry.register(_ServedVersions(lambda: self._served()))
        self._served = source

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
