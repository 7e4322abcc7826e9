"""The processor's own Prometheus metrics, on an injected registry.

Names follow `ioc_<subsystem>_<name>_<unit>`; label values stay bounded (family,
error kind, stage, rule) — never ids, IPs or user names.

Nothing here is called per event on a hot path: the stages count per batch, and
what is state anyway (consumer lag, firing alerts, the latest window finals, the
sinks' status) is read at scrape time by the collectors below.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import orjson
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sinks.base import Sink
from sinks.lineprotocol import BOUNDED_LABELS, is_unbounded, safe_name
from streams.core.progress import NEVER

__all__ = [
    "LATEST_MAX_GROUPS",
    "AlertCollector",
    "LagCollector",
    "LatestCollector",
    "LatestFinals",
    "Metrics",
    "SinkCollector",
]

#: Groups per aggregate whose latest final `LatestFinals` keeps; the finals of further
#: groups are counted in `ioc_windows_latest_dropped_total` and not exposed.
LATEST_MAX_GROUPS = 10_000

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_CHECKPOINT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


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
        self.late_rule_inputs = Counter(
            "ioc_rules_late_inputs",
            "Rule inputs older than their rule's watermark (dead-lettered as late), by rule.",
            ["rule"], registry=self.registry,
        )  # fmt: skip
        self.rule_groups_forgotten = Counter(
            "ioc_rules_groups_forgotten",
            "Groups an absence rule dropped, by rule and reason: `forget_after` (no input "
            "for the rule's forget_after of event time), `max_groups` (evicted, least "
            "recently heard first, past IOC_RULES__MAX_GROUPS in a partition).",
            ["rule", "reason"], registry=self.registry,
        )  # fmt: skip
        self.rule_groups = Gauge(
            "ioc_rules_groups",
            "Groups a rule's detector holds in this worker's partitions, by rule.",
            ["rule"], registry=self.registry,
        )  # fmt: skip
        self.window_results = Counter(
            "ioc_windows_results", "Window results produced, by aggregate and final flag.",
            ["aggregate", "final"], registry=self.registry,
        )  # fmt: skip
        self.case_events = Counter(
            "ioc_cases_events", "Validated service events read by the case stage.",
            registry=self.registry,
        )  # fmt: skip
        self.pending_rule_inputs = Gauge(
            "ioc_rules_pending_inputs",
            "Rule inputs ahead of their rule's watermark, waiting for their turn in "
            "event-time order, in this worker's partitions.",
            registry=self.registry,
        )  # fmt: skip
        self.pending_overflow = Counter(
            "ioc_rules_pending_overflow",
            "Rule inputs applied ahead of their turn because a partition's pending limit "
            "(IOC_RULES__MAX_PENDING) was reached: their order is then the arrival order.",
            registry=self.registry,
        )  # fmt: skip
        self.replayed_events = Counter(
            "ioc_replayed_events",
            "Records a stage dropped as already applied: validated events or rule inputs "
            "produced again after a crash (their lineage header, streams.core.lineage), "
            "window finals reported again (behind their frontier).",
            ["stage"], registry=self.registry,
        )  # fmt: skip
        self.replayed_rule_inputs = Counter(
            "ioc_rules_replayed_inputs",
            "Rule inputs dropped as a copy of one waiting for its turn (an upstream stage "
            "replayed what it had sent before a crash).",
            registry=self.registry,
        )  # fmt: skip
        self.open_cases = Gauge(
            "ioc_cases_open", "Open cases in this worker's partitions at the last report.",
            registry=self.registry,
        )  # fmt: skip
        self.cases_evicted = Counter(
            "ioc_cases_evicted",
            "Open cases forgotten, by reason: `cap` (the agency had IOC_CASES__"
            "MAX_OPEN_PER_AGENCY in the partition), `expired` (no event for "
            "IOC_CASES__OPEN_TTL_S of event time).",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.window_panes = Gauge(
            "ioc_windows_panes",
            "Window accumulators held by this worker (one per group and pane of an open "
            "window, in RAM or the RocksDB store), by family.",
            ["family"], registry=self.registry,
        )  # fmt: skip
        self.window_values_skipped = Counter(
            "ioc_windows_values_skipped",
            "Values left out of an aggregate because adding them would have made a sum "
            "(and the mean) non-finite, by aggregate.",
            ["aggregate"], registry=self.registry,
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
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, 10, 15, 20, 30, 60),
            registry=self.registry,
        )
        self.duplicates = Counter(
            "ioc_ingest_duplicates_dropped",
            "Events dropped because their id was seen within the dedup horizon.",
            ["family"],
            registry=self.registry,
        )
        # -- every stage (BatchStage), labelled with the stage's title -------------------
        self.stage_records = Counter(
            "ioc_stage_records", "Kafka records handled by the stage (counted per batch).",
            ["stage"], registry=self.registry,
        )  # fmt: skip
        self.stage_batch_seconds = Histogram(
            "ioc_stage_batch_seconds",
            "Wall time to handle one batch read from Kafka (all its partitions' records).",
            ["stage"], buckets=_BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.checkpoint_seconds = Histogram(
            "ioc_stage_checkpoint_seconds",
            "Wall time of a checkpoint: save state, flush the producer (and a sink's "
            "writes), commit the offsets.",
            ["stage"], buckets=_CHECKPOINT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.deadletters = Counter(
            "ioc_deadletters", "Records sent to ioc.deadletter, by stage and error.",
            ["stage", "error"], registry=self.registry,
        )  # fmt: skip


class LagSource(Protocol):
    """A stage, as the lag collector reads it (streams/worker/stages/base.py `BatchStage`)."""

    @property
    def title(self) -> str: ...

    def lag(self) -> Mapping[TopicPartition, int]: ...


class LagCollector(Collector):
    """Consumer lag per stage and partition (high watermark − next offset to read), from
    what each stage's consumer already knows: read at scrape time, no request to Kafka."""

    def __init__(self, stages: Callable[[], Iterable[LagSource]]) -> None:
        self._stages = stages

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "ioc_consumer_lag_records",
            "Records in the partition not yet read by the stage (high watermark − position), "
            "for partitions assigned to this worker with both known.",
            labels=["stage", "topic", "partition"],
        )
        for stage in self._stages():
            title = stage.title
            for tp, records in stage.lag().items():
                lag.add_metric([title, tp.topic, str(tp.partition)], records)
        yield lag


class WatermarkCollector(Collector):
    """For the stages with `progress_views()` (what each input partition knows of its
    sources, streams.core.progress): how far behind the wall clock each source's event
    time is, as the stage last heard of it, and which sources are idle. The feed that
    holds event time back is the one with the largest lag that is not idle. One series
    per (stage, source): bounded by the partitions (× aggregates) upstream."""

    def __init__(self, stages: Callable[[], Iterable[object]]) -> None:
        self._stages = stages

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "ioc_watermark_lag_seconds",
            "Wall clock − the source's event-time frontier, as the stage last heard it "
            "(the furthest behind over its partitions); sources without an event yet "
            "are left out.",
            labels=["stage", "source"],
        )
        idle = GaugeMetricFamily(
            "ioc_source_idle",
            "1 while the source is caught up and silent (it holds nothing back).",
            labels=["stage", "source"],
        )
        now_ms = time.time() * 1000
        for stage in self._stages():
            views = getattr(stage, "progress_views", None)
            if views is None:
                continue
            behind: dict[str, tuple[int, bool]] = {}
            for progress in list(views()):
                for name, f in list(progress.sources.items()):
                    known = behind.get(name)
                    if known is None or f.frontier_ms < known[0]:
                        behind[name] = (f.frontier_ms, f.idle)
            title = stage.title  # type: ignore[attr-defined]
            for name, (frontier, is_idle) in sorted(behind.items()):
                idle.add_metric([title, name], 1.0 if is_idle else 0.0)
                if frontier != NEVER:
                    lag.add_metric([title, name], max(now_ms - frontier, 0.0) / 1000)
        yield lag
        yield idle


class AlertSource(Protocol):
    """A rule stage, as the alert collector reads it (streams/worker/stages/rules.py)."""

    def firing(self) -> Mapping[tuple[str, str, str], int]:
        """(rule, family, severity) → groups firing; every rule at least at its own
        severity, with 0 when none fires."""
        ...


class AlertCollector(Collector):
    """Alerts firing now in this worker's partitions, read from the rule lifecycles."""

    def __init__(self, stages: Callable[[], Iterable[AlertSource]]) -> None:
        self._stages = stages

    def collect(self) -> Iterator[Metric]:
        firing = GaugeMetricFamily(
            "ioc_alerts_firing",
            "Alerts firing in this worker's partitions, by rule, the family the rule reads "
            "(an aggregate rule: its aggregate's) and severity.",
            labels=["rule", "family", "severity"],
        )
        totals: dict[tuple[str, str, str], int] = {}
        for stage in self._stages():
            for key, count in stage.firing().items():
                totals[key] = totals.get(key, 0) + count
        for (rule, family, severity), count in sorted(totals.items()):
            firing.add_metric([rule, family, severity], count)
        yield firing


def _label_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class LatestFinals:
    """The latest final of each (aggregate, group) that the window stage emitted, for
    `LatestCollector`. Updated once per final result (not per event).

    Bounded like the time-series sink (sinks/lineprotocol.py): an aggregate with any
    group label not on `allowed` or that `is_unbounded` is not kept at all, and each
    aggregate keeps at most `max_groups` groups (the finals of others are counted in
    `dropped`). A final older than the one kept for its group (a replay) is ignored.
    Each entry remembers its input partition, so a revoked partition's are dropped
    (`drop`) and only the worker that owns a group exposes it.
    """

    def __init__(
        self, max_groups: int = LATEST_MAX_GROUPS, allowed: frozenset[str] = BOUNDED_LABELS
    ) -> None:
        self.max_groups = max_groups
        self.allowed = allowed
        #: aggregate → its group labels (as in the record), or None if one is unbounded
        self.labels: dict[str, tuple[str, ...] | None] = {}
        #: aggregate → group values → (window start, partition, result)
        self.groups: dict[str, dict[tuple[Any, ...], tuple[int, str, Any]]] = {}
        self.dropped: dict[str, int] = {}

    def update(self, partition: str, result: Any) -> None:
        """`result`: a final `WindowResult` (aggregate, group, window_start, statistics, count)."""
        aggregate = result.aggregate
        if aggregate in self.labels:
            labels = self.labels[aggregate]
        else:  # the first final of the aggregate: its group labels are fixed
            names = tuple(result.group)
            bounded = all(n in self.allowed and not is_unbounded(n) for n in names)
            labels = self.labels[aggregate] = names if bounded else None
            if bounded:
                self.groups[aggregate] = {}
        if labels is None:
            return
        groups = self.groups[aggregate]
        key = tuple(result.group.get(name) for name in labels)
        kept = groups.get(key)
        if kept is None:
            if len(groups) >= self.max_groups:
                self.dropped[aggregate] = self.dropped.get(aggregate, 0) + 1
                return
        elif kept[0] > result.window_start:
            return
        groups[key] = (result.window_start, partition, result)

    def drop(self, partition: str) -> None:
        """Forget what came from a partition this worker no longer owns."""
        for groups in self.groups.values():
            for key in [k for k, (_, p, _) in groups.items() if p == partition]:
                del groups[key]


class LatestCollector(Collector):
    """`ioc_aggregate_latest_<statistic>{aggregate, <group labels>}`: the latest final
    of each bounded group, per numeric statistic — the time-series sink's layout
    (`ioc_aggregate_<statistic>`) with `_latest`, so one metric is one quantity across
    aggregates. Its labels are the union of the group labels of the aggregates that
    have the statistic, empty (absent, to Prometheus) where an aggregate lacks one.
    Text, null and non-finite statistics are left out."""

    def __init__(self, latest: LatestFinals) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        latest = self._latest
        # statistic → [(aggregate, {label: value}, number)], and its labels in order
        samples: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        names: dict[str, dict[str, None]] = {}
        held = GaugeMetricFamily(
            "ioc_windows_latest_groups",
            "Groups whose latest final is exposed as ioc_aggregate_latest_*, by aggregate.",
            labels=["aggregate"],
        )
        dropped = CounterMetricFamily(
            "ioc_windows_latest_dropped",
            f"Finals not exposed: their aggregate had {latest.max_groups} groups already.",
            labels=["aggregate"],
        )
        for aggregate, groups in sorted(latest.groups.items()):
            labels = latest.labels[aggregate] or ()
            safe = [safe_name(label) for label in labels]
            held.add_metric([aggregate], len(groups))
            for key, (_, _, result) in groups.items():
                values = {s: _label_value(v) for s, v in zip(safe, key, strict=True)}
                statistics = result.statistics
                if "count" not in statistics:
                    statistics = {"count": result.count, **statistics}
                for statistic, value in statistics.items():
                    number = _number(value)
                    if number is None:
                        continue
                    name = safe_name(statistic)
                    if name not in samples:
                        samples[name], names[name] = [], {}
                    samples[name].append((aggregate, values, number))
                    names[name].update(dict.fromkeys(safe))
        for aggregate, count in sorted(latest.dropped.items()):
            dropped.add_metric([aggregate], count)
        for statistic in sorted(samples):
            label_names = ["aggregate", *(n for n in names[statistic] if n != "aggregate")]
            family = GaugeMetricFamily(
                f"ioc_aggregate_latest_{statistic}",
                f"The latest final {statistic} of each group (window stage, this worker's "
                "partitions).",
                labels=label_names,
            )
            for aggregate, values, number in samples[statistic]:
                family.add_metric(
                    [aggregate, *(values.get(n, "") for n in label_names[1:])], number
                )
            yield family
        yield held
        yield dropped


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
        evicted = CounterMetricFamily(
            "ioc_sink_alerts_evicted", "Remembered alert states a sink forgot at its bound "
            "(max_alerts), least recently updated first.", labels=["sink"],
        )  # fmt: skip
        for sink in self._sinks():
            status, labels = sink.status, [sink.name]
            up.add_metric(labels, 1.0 if status.state == "up" else 0.0)
            queued.add_metric(labels, status.queued)
            written.add_metric(labels, status.written)
            retries.add_metric(labels, status.retries)
            rejected.add_metric(labels, status.rejected)
            if status.evicted is not None:  # only sinks that remember alerts
                evicted.add_metric(labels, status.evicted)
        yield from (up, queued, written, retries, rejected, evicted)
