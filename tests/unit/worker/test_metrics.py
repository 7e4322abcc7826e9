"""The worker's own metrics: per-batch stage meters, dead letters, and the collectors
that read state at scrape time (lag, firing alerts, latest finals). No broker."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from models.derived import aggregate_outputs
from models.results import WindowResult
from models.rulefile import default_rules
from streams.core.rules.lifecycle import Lifecycle, Observation
from streams.core.windows import default_aggregates
from streams.worker.app import create_app
from streams.worker.metrics import (
    AlertCollector,
    LagCollector,
    LatestCollector,
    LatestFinals,
    Metrics,
)
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import Settings
from streams.worker.stages.base import BatchStage
from streams.worker.stages.rules import RuleStage
from streams.worker.stages.windows import WindowStage
from streams.worker.topics import DEADLETTER, VALIDATED
from tests.unit.core.windows.events import T0, M, air

TP = TopicPartition(VALIDATED["city"], 0)
TP1 = TopicPartition(VALIDATED["city"], 1)
WALL = 2_000_000_000_000


@dataclass
class Record:
    value: bytes | None
    offset: int
    key: bytes | None = b"k"
    timestamp: int = WALL
    topic: str = TP.topic  # where aiokafka's ConsumerRecord says it was read
    partition: int = TP.partition
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- consumer lag ----------------------------------------------------------------------


@dataclass
class LagConsumer:
    assigned: set[TopicPartition]
    highwaters: dict[TopicPartition, int | None]
    batches: list[dict[TopicPartition, list[Record]]] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    stage: BatchStage | None = None

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, tp: TopicPartition) -> int | None:
        assert tp in self.assigned, "aiokafka asserts this too"
        return self.highwaters.get(tp)

    async def getmany(self, *tps: TopicPartition, **kwargs: Any) -> dict:
        if self.batches:
            return self.batches.pop(0)
        assert self.stage is not None
        self.stage._stopped.set()  # the loop ends after this (empty) batch
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)


class Echo(BatchStage):
    name: ClassVar[str] = "echo"
    handled: list[int]

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        self.handled = [*getattr(self, "handled", []), len(records)]
        for record in records:
            if record.value is None:
                await self.reject(record, "schema", "null value", family="city")


def echo(metrics: Metrics, consumer: LagConsumer) -> Echo:
    made = Echo(Settings(_env_file=None), metrics, [TP.topic])
    made._outbox = MemoryOutbox()  # type: ignore[assignment]
    made._consumer = consumer  # type: ignore[assignment]
    consumer.stage = made
    return made


def test_lag_is_highwater_minus_position_for_assigned_partitions_with_both_known():
    gone = TopicPartition(VALIDATED["city"], 2)
    consumer = LagConsumer({TP, TP1}, {TP: 120, TP1: None})
    made = echo(Metrics(), consumer)
    assert made.lag() == {}  # nothing read yet: no position
    made.positions.update({TP: 100, TP1: 5, gone: 7})  # TP1: no highwater yet; gone: revoked
    assert made.lag() == {TP: 20}

    metrics = Metrics()
    metrics.registry.register(LagCollector(lambda: [made]))
    reg = metrics.registry
    labels = {"stage": "echo", "topic": TP.topic}
    assert sample(reg, "ioc_consumer_lag_records", **labels, partition="0") == 20
    assert sample(reg, "ioc_consumer_lag_records", **labels, partition="1") is None


def test_a_stage_not_started_has_no_lag():
    made = Echo(Settings(_env_file=None), Metrics(), [TP.topic])
    assert made.lag() == {}


# -- per batch: records, latency, checkpoint; dead letters ------------------------------


async def test_batch_latency_and_records_are_observed_once_per_batch():
    metrics = Metrics()
    batch = {TP: [Record(b"{}", n) for n in range(5)], TP1: [Record(None, 0)]}
    consumer = LagConsumer({TP, TP1}, {TP: 5, TP1: 1}, batches=[batch])
    made = echo(metrics, consumer)
    made.assigned.update({TP, TP1})
    await made._consume()
    reg = metrics.registry
    assert made.handled == [5, 1]
    assert sample(reg, "ioc_stage_records_total", stage="echo") == 6
    # One batch of two partitions, one observation; the closing empty batch none.
    assert sample(reg, "ioc_stage_batch_seconds_count", stage="echo") == 1
    assert sample(reg, "ioc_stage_checkpoint_seconds_count", stage="echo") == 1
    assert consumer.committed == {TP: 5, TP1: 1}
    assert sample(reg, "ioc_deadletters_total", stage="echo", error="schema") == 1
    assert [topic for topic, _, _ in made.outbox.sent] == [DEADLETTER]  # type: ignore[attr-defined]


async def test_window_stage_dead_letters_are_counted_by_stage_and_error():
    metrics = Metrics()
    made = WindowStage(Settings(_env_file=None), metrics, default_aggregates())
    made._outbox = MemoryOutbox()  # type: ignore[assignment]
    await made.handle(TP, [Record(None, 0), Record(b"[1]", 1)], WALL)
    reg = metrics.registry
    assert sample(reg, "ioc_deadletters_total", stage="windows", error="schema") == 2
    assert len(made.outbox.on(DEADLETTER)) == 2  # type: ignore[attr-defined]


# -- alerts firing ---------------------------------------------------------------------


def test_lifecycle_counts_firing_groups_by_severity():
    life = Lifecycle(rule="r", kind="threshold", group_by=["g"], severity="warning", for_ms=60_000)
    life.update(Observation(("a",), True, 0))
    assert life.firing_by_severity() == {}  # pending is not firing
    life.update(Observation(("b",), True, 0, severity="critical"))
    life.update(Observation(("c",), True, 0))
    life.advance(60_000)
    assert life.firing_by_severity() == {"warning": 2, "critical": 1}
    life.update(Observation(("a",), False, 61_000))
    assert life.firing_by_severity() == {"warning": 1, "critical": 1}


def test_alerts_firing_by_rule_family_and_severity_from_the_rule_stage():
    aggregates = default_aggregates()
    rules = default_rules(aggregates)
    made = RuleStage(Settings(_env_file=None), Metrics(), rules, aggregates)
    by_aggregate = next(rule for rule in rules if rule.aggregate is not None)
    by_family = next(rule for rule in rules if rule.family is not None)
    family_of_aggregate = aggregate_outputs(aggregates)[by_aggregate.aggregate or ""].family
    metrics = Metrics()
    metrics.registry.register(AlertCollector(lambda: [made]))
    reg = metrics.registry

    # Every rule at its own severity, 0 while nothing fires (no partition even).
    labels = {"rule": by_family.name, "family": by_family.family, "severity": by_family.severity}
    assert sample(reg, "ioc_alerts_firing", **labels) == 0

    for tp in (TP, TP1):  # two partitions of this worker: summed
        engine = made.engines[tp] = made._engine()
        life = engine.evaluators[by_aggregate.name].lifecycle
        group = tuple(f"g{n}" for n in range(len(life.group_by)))
        life.update(Observation(group, True, T0, severity="critical"))
        life.advance(T0 + life.for_ms)
    labels = {"rule": by_aggregate.name, "family": family_of_aggregate}
    assert sample(reg, "ioc_alerts_firing", **labels, severity="critical") == 2
    assert sample(reg, "ioc_alerts_firing", **labels, severity=by_aggregate.severity) == (
        2 if by_aggregate.severity == "critical" else 0
    )


# -- latest finals ---------------------------------------------------------------------


def result(
    aggregate: str, group: dict[str, Any], start: int, final: bool = True, **stats: Any
) -> WindowResult:
    return WindowResult(aggregate, "city", group, start, start + 5 * M, stats, 3, final)


def test_latest_final_per_bounded_group_as_gauges():
    latest = LatestFinals()
    station = {"refDevice": "HD-AQ-1", "areaServed": "TP Hải Dương"}
    latest.update("p:0", result("air_5m", station, T0, pm25_mean=40.0, band="good"))
    latest.update("p:0", result("air_5m", station, T0 + 5 * M, pm25_mean=42.5, pm25_max=None))
    latest.update("p:0", result("air_5m", station, T0, pm25_mean=1.0))  # older: a replay
    latest.update("p:1", result("air_city", {}, T0, pm25_mean=30.0, count=9))
    latest.update("p:1", result("by_ip", {"source.ip": "10.0.0.1"}, T0, count=1))  # unbounded
    latest.update("p:1", result("by_name", {"organization.name": "SO"}, T0, count=2))
    registry = CollectorRegistry()
    registry.register(LatestCollector(latest))

    labels = {"aggregate": "air_5m", **station}
    assert sample(registry, "ioc_aggregate_latest_pm25_mean", **labels) == 42.5
    # `count`, the record's, is a statistic of by_name too: its label is there, empty.
    counted = {**labels, "organization_name": ""}
    assert sample(registry, "ioc_aggregate_latest_count", **counted) == 3
    assert sample(registry, "ioc_aggregate_latest_pm25_max", **labels) is None  # null
    # The global group: the statistic's other labels empty (absent, to Prometheus).
    empty = {"refDevice": "", "areaServed": ""}
    assert sample(registry, "ioc_aggregate_latest_pm25_mean", aggregate="air_city", **empty) == 30
    assert (
        sample(
            registry,
            "ioc_aggregate_latest_count",
            aggregate="air_city",
            **empty,
            organization_name="",
        )
        == 9
    )
    # Group label names made Prometheus-safe; an unbounded aggregate not at all.
    text = generate_latest(registry).decode()
    assert 'organization_name="SO"' in text
    assert "by_ip" not in text and "10.0.0.1" not in text
    assert "ioc_aggregate_latest_band" not in text  # text statistics left out
    assert sample(registry, "ioc_windows_latest_groups", aggregate="air_5m") == 1

    latest.drop("p:0")  # partition revoked: its groups go
    assert sample(registry, "ioc_aggregate_latest_pm25_mean", **labels) is None
    # Labels are those of the groups held (empty or absent: the same series to Prometheus).
    assert sample(registry, "ioc_aggregate_latest_pm25_mean", aggregate="air_city") == 30


def test_latest_finals_are_capped_per_aggregate():
    latest = LatestFinals(max_groups=2)
    for n in range(5):
        latest.update("p:0", result("air_5m", {"refDevice": f"D{n}"}, T0, pm25_mean=float(n)))
    latest.update("p:0", result("air_5m", {"refDevice": "D1"}, T0 + 5 * M, pm25_mean=9.0))
    registry = CollectorRegistry()
    registry.register(LatestCollector(latest))
    values = {
        device: sample(registry, "ioc_aggregate_latest_pm25_mean", aggregate="air_5m",
                       refDevice=device)
        for device in ("D0", "D1", "D2")
    }  # fmt: skip
    assert values == {"D0": 0.0, "D1": 9.0, "D2": None}  # kept groups still update
    assert sample(registry, "ioc_windows_latest_dropped_total", aggregate="air_5m") == 3


async def test_window_stage_keeps_the_latest_finals_and_forgets_revoked_partitions():
    made = WindowStage(Settings(_env_file=None), Metrics(), default_aggregates())
    made._outbox = MemoryOutbox()  # type: ignore[assignment]
    times = [T0 + m * 10 * M for m in range(13)]  # two hours of one station
    records = [
        Record(orjson.dumps(air(t, device="HD-AQ-001", pm25=40.0)), n) for n, t in enumerate(times)
    ]
    await made.handle(TP, records, WALL)
    registry = CollectorRegistry()
    registry.register(LatestCollector(made.latest))
    text = generate_latest(registry).decode()
    assert "ioc_aggregate_latest_pm25_mean{" in text
    assert 'refDevice="HD-AQ-001"' in text
    kept = {aggregate for aggregate, groups in made.latest.groups.items() if groups}
    assert kept  # some finals closed by later events
    await made.on_revoked([TP])
    assert not any(made.latest.groups.values())


def test_the_app_registers_the_collectors_and_scrapes_before_the_stages_start():
    app = create_app(Settings(_env_file=None))
    text = generate_latest(app.metrics.registry).decode()
    assert "# TYPE ioc_consumer_lag_records gauge" in text
    assert "# TYPE ioc_alerts_firing gauge" in text
    assert 'ioc_alerts_firing{family="security"' in text
    assert "# TYPE ioc_windows_latest_groups gauge" in text


# -- event-time progress ---------------------------------------------------------------


def test_watermark_lag_and_idleness_per_stage_and_source():
    from streams.core.progress import NEVER, Frontier, Progress
    from streams.worker.metrics import WatermarkCollector

    now_ms = int(time.time() * 1000)
    first, second = Progress(), Progress()
    first.observe([Frontier("src:0", "events", "city", now_ms - 60_000, False)])
    second.observe([
        Frontier("src:0", "events", "city", now_ms - 7_200_000, False),  # furthest behind
        Frontier("src:1", "events", "city", NEVER, True),
    ])  # fmt: skip

    class Stage:
        title = "windows"

        def progress_views(self) -> list[Progress]:
            return [first, second]

    registry = CollectorRegistry()
    registry.register(WatermarkCollector(lambda: [Stage(), object()]))
    lag = registry.get_sample_value(
        "ioc_watermark_lag_seconds", {"stage": "windows", "source": "src:0"}
    )
    assert lag is not None and 7199 <= lag <= 7300
    assert (
        registry.get_sample_value(
            "ioc_watermark_lag_seconds", {"stage": "windows", "source": "src:1"}
        )
        is None
    )
    assert (
        registry.get_sample_value("ioc_source_idle", {"stage": "windows", "source": "src:1"}) == 1.0
    )
    assert (
        registry.get_sample_value("ioc_source_idle", {"stage": "windows", "source": "src:0"}) == 0.0
    )
