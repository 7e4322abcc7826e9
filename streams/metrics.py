"""The processor's own Prometheus metrics, on an injected registry.

Names follow `ioc_<subsystem>_<name>_<unit>`; label values stay bounded (family,
error kind) — never ids, IPs or user names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sinks.base import Sink

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.messages = Counter(
            "ioc_ingest_messages",
            "Kafka messages read by ingest, by family.",
            ["family"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "ioc_ingest_events_accepted",
            "Events validated and passed on, by family.",
            ["family"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "ioc_ingest_events_rejected",
            "Messages or array elements dead-lettered, by family and error.",
            ["family", "error"],
            registry=self.registry,
        )
        self.window_events = Counter(
            "ioc_windows_events", "Validated events read by the window stage, by family.",
            ["family"], registry=self.registry,
        )  # fmt: skip
        self.late_events = Counter(
            "ioc_windows_late_events",
            "Events for windows that had already closed (dead-lettered as late), by aggregate.",
            ["aggregate"], registry=self.registry,
        )  # fmt: skip
        self.window_results = Counter(
            "ioc_windows_results", "Window results produced, by aggregate and final flag.",
            ["aggregate", "final"], registry=self.registry,
        )  # fmt: skip
        self.case_events = Counter(
            "ioc_cases_events", "Validated service events read by the case stage.",
            registry=self.registry,
        )  # fmt: skip
        self.open_cases = Gauge(
            "ioc_cases_open", "Open cases in this worker's partitions at the last report.",
            registry=self.registry,
        )  # fmt: skip
        self.rule_inputs = Counter(
            "ioc_rules_inputs", "Rule inputs routed to <app>-rules-inputs, by rule.",
            ["rule"], registry=self.registry,
        )  # fmt: skip
        self.alerts = Counter(
            "ioc_rules_alerts", "Alert state changes written to ioc.alerts, by rule and state.",
            ["rule", "state"], registry=self.registry,
        )  # fmt: skip
        self.alert_latency = Histogram(
            "ioc_rules_alert_latency_seconds",
            "Wall clock from a rule input's Kafka timestamp to its firing alert being sent.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, 10),
            registry=self.registry,
        )
        self.duplicates = Counter(
            "ioc_ingest_duplicates_dropped",
            "Events dropped because their id was seen within the dedup horizon.",
            ["family"],
            registry=self.registry,
        )


class SinkCollector(Collector):
    """Each sink's status (sinks/base.py `SinkStatus`), read at scrape time: the sinks
    count for themselves, nothing is updated per record here."""

    def __init__(self, sinks: Callable[[], Iterable[Sink]]) -> None:
        self._sinks = sinks

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ioc_sink_up", "1 while the sink's writes are acknowledged; 0 while it retries "
            "or has not written yet.", labels=["sink"],
        )  # fmt: skip
        queued = GaugeMetricFamily(
            "ioc_sink_queued_records", "Records taken by the sink, not yet acknowledged.",
            labels=["sink"],
        )  # fmt: skip
        written = CounterMetricFamily(
            "ioc_sink_written_records", "Records the sink's server acknowledged.", labels=["sink"]
        )
        retries = CounterMetricFamily(
            "ioc_sink_retries", "Write attempts retried after a transient failure.",
            labels=["sink"],
        )  # fmt: skip
        rejected = CounterMetricFamily(
            "ioc_sink_rejected_records", "Records refused for good (dead-lettered).",
            labels=["sink"],
        )  # fmt: skip
        for sink in self._sinks():
            status, labels = sink.status, [sink.name]
            up.add_metric(labels, 1.0 if status.state == "up" else 0.0)
            queued.add_metric(labels, status.queued)
            written.add_metric(labels, status.written)
            retries.add_metric(labels, status.retries)
            rejected.add_metric(labels, status.rejected)
        yield from (up, queued, written, retries, rejected)
