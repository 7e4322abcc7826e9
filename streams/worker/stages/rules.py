"""The rule stages: route events and window results to rules, then evaluate them.

Two hops, because a rule's group is rarely the key its events arrive by (brute force
groups by `source.ip`, malware spreading by file hash, an agency's backlog comes from
every partition of `case_backlog`):

    ioc.<family>.validated ─┐
    ioc.aggregates (finals) ┴► RuleRouter ─► <app>-rules-inputs ─► RuleStage ─► ioc.alerts
                               (stateless)   keyed rule|group    (state per partition)

The router keeps no state: its outputs are flushed before its input offsets are
committed, like ingest's. The rule stage checkpoints its detectors and lifecycles
with its input offsets, like the window stage (streams.worker.changelog); its alerts carry
deterministic identities, so what a crash replays overwrites what was sent.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from aiokafka import TopicPartition

from models.alerts import Alert
from models.derived import (
    AQI_AGGREGATE,
    AQI_SOURCE_AGGREGATE,
    BACKLOG_AGGREGATE,
    aggregate_outputs,
)
from models.errors import EventTimeError
from models.families import FAMILY_NAMES
from models.rules import Rule
from streams.core import lineage
from streams.core.lineage import Lineage
from streams.core.progress import NEVER, Frontier, Heartbeat, Progress, decode, is_progress
from streams.core.rules.engine import BadInput, LateInput, RuleEngine
from streams.core.rules.plan import RouteTable, RuleInput
from streams.core.windows import Aggregate
from streams.worker import topics
from streams.worker.metrics import Metrics
from streams.worker.settings import Settings
from streams.worker.stages.base import BatchStage, ChangelogStage
from streams.worker.topics import AGGREGATES, ALERTS, VALIDATED

__all__ = ["RuleRouter", "RuleStage"]

log = logging.getLogger(__name__)


#: The changelog key of a partition's lineage, beside the rules' own keys.
LINEAGE_KEY = "@lineage"


def route_table(rules: list[Rule], aggregates: list[Aggregate]) -> RouteTable:
    outputs = aggregate_outputs(aggregates)
    return RouteTable(rules, {name: output.group for name, output in outputs.items()})


def summing_rules(rules: list[Rule], aggregates: list[Aggregate]) -> set[str]:
    """Aggregate rules that group by fewer labels than their aggregate: they sum."""
    outputs = aggregate_outputs(aggregates)
    return {
        rule.name
        for rule in rules
        if rule.aggregate is not None and set(rule.group_by) != set(outputs[rule.aggregate].group)
    }


def start_lags(rules: list[Rule], aggregates: list[Aggregate]) -> dict[str, int]:
    """Rules that time an aggregate's finals by window start (baselines, by slot): how
    far behind its frontier, in window ends, their inputs' times are (the window size)."""
    sizes = {aggregate.name: aggregate.window.size for aggregate in aggregates}
    if AQI_SOURCE_AGGREGATE in sizes:
        sizes.setdefault(AQI_AGGREGATE, sizes[AQI_SOURCE_AGGREGATE])
    return {
        rule.name: sizes.get(rule.aggregate, 0)
        for rule in rules
        if rule.aggregate is not None and rule.kind == "baseline"
    }


class _Refused:
    """Where a refused pending input was read, for its dead letter."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, tp: TopicPartition, refused: BadInput) -> None:
        self.topic, self.partition = tp.topic, tp.partition
        self.offset = -1 if refused.offset is None else refused.offset
        self.key, self.value = refused.item.key, refused.item.to_json()


class RuleRouter(BatchStage):
    """Validated events and window finals → the inputs of the rules they feed."""

    name: ClassVar[str] = "rules-route"
    interleave: ClassVar[bool] = True  # its output mixes its input partitions

    def __init__(
        self, settings: Settings, metrics: Metrics, rules: list[Rule],
        aggregates: list[Aggregate], **kwargs: Any,
    ) -> None:  # fmt: skip
        self.table = route_table(rules, aggregates)
        self.family = {VALIDATED[family]: family for family in FAMILY_NAMES}
        sources = [VALIDATED[family] for family in FAMILY_NAMES if family in self.table.by_family]
        if self.table.by_aggregate:
            sources.append(AGGREGATES)
        super().__init__(settings, metrics, sources, **kwargs)
        self.inputs_topic = topics.rule_inputs(settings.app_id)
        self._routed = {rule.name: metrics.rule_inputs.labels(rule.name) for rule in rules}
        #: The sources of each input partition, from the progress records read on it.
        self.progress: dict[TopicPartition, Progress] = {}
        self._sent: dict[TopicPartition, list[Frontier]] = {}
        self._assigned_at: dict[TopicPartition, float] = {}  # monotonic
        self._heartbeat = Heartbeat()

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        family = self.family.get(tp.topic)
        what = family or "aggregates"
        send, inputs_topic = self.outbox.send, self.inputs_topic
        for record in records:
            async with self.isolated(record, what):
                if record.headers and is_progress(record.headers):
                    try:
                        frontiers = decode(record.value)
                    except ValueError as exc:
                        await self.reject(record, "schema", str(exc), family=what)
                        continue
                    progress = self.progress.setdefault(tp, Progress())
                    woke = progress.wakes(frontiers)
                    progress.observe(frontiers)
                    if woke:  # passed on before the inputs routed after it
                        await self.send_progress()
                    continue
                if record.value is None:
                    await self.reject(
                        record, "schema", "not a validated record: null value", family=what
                    )
                    continue
                try:
                    value = orjson.loads(record.value)
                    if type(value) is not dict:
                        raise EventTimeError(f"expected a JSON object, got {type(value).__name__}")
                    if family is not None:
                        inputs = self.table.event_inputs(family, value)
                    else:
                        inputs = self.table.aggregate_inputs(value)
                except (orjson.JSONDecodeError, EventTimeError, KeyError) as exc:
                    # Ingest and the window stage wrote these topics, so only a foreign
                    # producer gets here: reject the record, keep routing the rest.
                    await self.reject(
                        record, "schema", f"not a validated record: {exc}", family=what
                    )
                    continue
                # The ingest lineage, extended by this hop: replays of either count once.
                mark = lineage.read(record.headers) if family is not None else None
                path = None if mark is None else f"{family}/{mark[0]}>{tp.partition}"
                for index, item in enumerate(inputs):
                    headers = None
                    if mark is not None:
                        headers = lineage.header(path, *mark[1], index)  # type: ignore[arg-type]
                    await send(inputs_topic, item.key, item.to_json(), headers=headers)
                    self._routed[item.rule].inc()

    def progress_views(self) -> list[Progress]:
        return list(self.progress.values())

    async def tick(self, now_ms: int) -> None:
        await self.send_progress()

    async def send_progress(self) -> None:
        """What each input partition's sources have reached, to every partition of the
        rule inputs, after the inputs routed from what came before: per family for
        events, per aggregate for finals (streams.core.progress)."""
        beat = self._heartbeat.due(time.monotonic())
        for tp in sorted(set(self.progress) | set(self._assigned_at)):
            name = f"{tp.topic}:{tp.partition}"
            family = self.family.get(tp.topic)
            progress = self.progress.get(tp)
            frontiers: list[Frontier] = []
            if progress is None:
                frontiers = self._unheard(tp, name, family)
            elif family is not None:
                # None: every source idle without an event (NEVER, idle: holds nothing).
                frontier = progress.frontier()
                frontier = NEVER if frontier is None else frontier
                frontiers = [Frontier(name, "events", family, frontier, progress.idle())]
            else:
                for feed in sorted({f.feed for f in progress.sources.values()}):
                    frontier = progress.frontier("aggregates", feed)
                    frontier = NEVER if frontier is None else frontier
                    idle = progress.idle("aggregates", feed)
                    frontiers.append(Frontier(f"{name}/{feed}", "aggregates", feed, frontier, idle))
            if not frontiers or (not beat and self._sent.get(tp) == frontiers):
                continue
            self._sent[tp] = frontiers
            await self.outbox.send_progress(self.inputs_topic, frontiers)

    def _unheard(self, tp: TopicPartition, name: str, family: str | None) -> list[Frontier]:
        """An input partition no progress has come from yet: it exists (NEVER), so the
        rules wait for it rather than judge the first inputs routed in arrival order;
        after the ingest idle timeout without progress (a foreign producer) it is idle,
        and holds nothing back."""
        waited = time.monotonic() - self._assigned_at[tp]
        idle = waited > self.settings.ingest.idle_timeout_s
        if family is not None:
            return [Frontier(name, "events", family, NEVER, idle)]
        return [
            Frontier(f"{name}/{aggregate}", "aggregates", aggregate, NEVER, idle)
            for aggregate in sorted(self.table.by_aggregate)
            if aggregate != BACKLOG_AGGREGATE  # the case stage sends no progress
        ]

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        now = time.monotonic()
        for tp in assigned:
            self._assigned_at[tp] = now
        await self.send_progress()  # before the first inputs routed from them

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.progress.pop(tp, None)
            self._sent.pop(tp, None)
            self._assigned_at.pop(tp, None)


class RuleStage(ChangelogStage):
    """Rule inputs → detectors → alert lifecycles → `ioc.alerts`, per partition."""

    name: ClassVar[str] = "rules"
    linger_ms: ClassVar[int | None] = 0  # alerts are few and urgent: no batching delay

    def __init__(
        self, settings: Settings, metrics: Metrics, rules: list[Rule],
        aggregates: list[Aggregate], **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(settings, metrics, [topics.rule_inputs(settings.app_id)], **kwargs)
        self.rules = rules
        self.summing = summing_rules(rules, aggregates)
        self.start_lags = start_lags(rules, aggregates)
        outputs = aggregate_outputs(aggregates)
        #: rule → the family it reads (an aggregate rule: its aggregate's), for /metrics
        self.families = {
            rule.name: rule.family or (outputs[rule.aggregate].family if rule.aggregate else "")
            for rule in rules
        }
        self.engines: dict[TopicPartition, RuleEngine] = {}
        #: Per input partition, the lineage received (streams.core.lineage).
        self.lineage: dict[TopicPartition, Lineage] = {}
        self._stale: dict[TopicPartition, list[str]] = {}
        self._late = {rule.name: metrics.late_rule_inputs.labels(rule.name) for rule in rules}

    def _engine(self) -> RuleEngine:
        config = self.settings.rules
        return RuleEngine(
            self.rules, self.summing,
            allowed_lateness_ms=int(config.allowed_lateness_s * 1000),
            idle_timeout_ms=int(config.idle_timeout_s * 1000),
            max_pending=config.max_pending, start_lags=self.start_lags,
            max_groups=config.max_groups,
        )  # fmt: skip

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        engine = self.engines[tp]
        seen = self.lineage.setdefault(tp, Lineage())
        replayed = 0
        for record in records:
            if engine.skip(record.offset):
                continue  # applied before the checkpoint; read again for an older one
            async with self.isolated(record, "rules"):
                try:
                    if record.headers and is_progress(record.headers):
                        engine.observe_progress(decode(record.value))
                        continue
                    mark = lineage.read(record.headers)
                    # (Inputs pending at the checkpoint and read again are not replays.)
                    if (
                        mark is not None
                        and not seen.fresh(mark)
                        and not engine.rereading(record.offset)
                    ):
                        replayed += 1  # ingest or the router produced it again after a crash
                        continue
                    item = RuleInput.from_json(record.value)
                    alerts = engine.process(item, now_ms, record.offset, record.timestamp)
                except (ValueError, TypeError, KeyError) as exc:
                    # The router wrote this topic: only a foreign producer or a rule
                    # removed since the input was routed gets here.
                    await self.reject(
                        record, "schema", f"not a rule input: {exc!r}", family="rules"
                    )
                    continue
                if type(alerts) is LateInput:
                    if alerts.replay:
                        replayed += 1
                        continue
                    self._late[alerts.rule].inc()
                    passed = datetime.fromtimestamp(alerts.watermark_ms / 1000, UTC).isoformat()
                    reason = f"late: rule {alerts.rule}'s event time had passed {passed}"
                    await self.reject(record, "late", reason, family="rules")
                elif alerts:
                    await self._emit(alerts, record.timestamp)  # type: ignore[arg-type]
        if replayed:
            self.metrics.replayed_events.labels(self.title).inc(replayed)

    async def tick(self, now_ms: int) -> None:
        consumer = self.consumer
        for tp, engine in self.engines.items():
            highwater = consumer.highwater(tp)
            position = self.positions.get(tp, -1)
            if highwater is None or position < highwater:
                engine.keep_alive(now_ms)  # still reading: not idle
            if engine.restoring(position):
                continue  # time waits for the inputs pending at the checkpoint
            overflowed, replayed = engine.overflowed, engine.replayed
            alerts = engine.advance(now_ms)
            if alerts:
                await self._emit(alerts, None)
            await self._drain(tp, engine)
            self.metrics.pending_overflow.inc(engine.overflowed - overflowed)
            self.metrics.replayed_rule_inputs.inc(engine.replayed - replayed)
        self.metrics.pending_rule_inputs.set(sum(e.pending for e in self.engines.values()))
        self._count_groups()

    def _count_groups(self) -> None:
        """Groups held per rule, and those absence rules dropped since the last tick."""
        held = dict.fromkeys(self.families, 0)
        for engine in self.engines.values():
            for (rule, reason), count in engine.take_forgotten().items():
                self.metrics.rule_groups_forgotten.labels(rule, reason).inc(count)
            for rule, count in engine.group_counts().items():
                held[rule] = held.get(rule, 0) + count
        for rule, count in held.items():
            self.metrics.rule_groups.labels(rule).set(count)

    async def _drain(self, tp: TopicPartition, engine: RuleEngine) -> None:
        """Dead-letter the pending inputs their detectors refused; time the alerts that
        inputs raised when their turn came."""
        bad, engine.bad = engine.bad, []
        for refused in bad:
            await self.reject(_Refused(tp, refused), refused.error, refused.reason, family="rules")
        now = time.time()
        for stamp in engine.fired_stamps:
            self.metrics.alert_latency.observe(max(now - stamp / 1000, 0.0))
        engine.fired_stamps.clear()

    def progress_views(self) -> list[Progress]:
        return [engine.progress for engine in list(self.engines.values())]

    def firing(self) -> dict[tuple[str, str, str], int]:
        """(rule, family, severity) → groups firing in this worker's partitions, read
        from the lifecycles at scrape time; each rule at its own severity is there with
        0 when nothing fires (streams.worker.metrics.AlertCollector)."""
        counts: dict[tuple[str, str, str], int] = {
            (rule.name, self.families[rule.name], rule.severity): 0 for rule in self.rules
        }
        for engine in list(self.engines.values()):
            for name, evaluator in engine.evaluators.items():
                family = self.families.get(name, "")
                for severity, n in evaluator.lifecycle.firing_by_severity().items():
                    key = (name, family, severity)
                    counts[key] = counts.get(key, 0) + n
        return counts

    async def _emit(self, alerts: list[Alert], input_timestamp_ms: int | None) -> None:
        for alert in alerts:
            await self.outbox.send(ALERTS, alert.fingerprint.encode(), alert.to_json())
            self.metrics.alerts.labels(alert.rule, alert.state).inc()
            if input_timestamp_ms is not None and alert.state == "firing":
                latency = time.time() - input_timestamp_ms / 1000
                self.metrics.alert_latency.observe(max(latency, 0.0))

    def state_records(
        self, tp: TopicPartition, position: int
    ) -> list[tuple[str, int, bytes, bytes | None]]:
        engine = self.engines.get(tp)
        if engine is None:
            return []
        changed = engine.take_dirty(position)
        # A stale key the engine writes again (a group back in a rule that started
        # afresh) is not deleted: its tombstone would follow it at the next checkpoint.
        written = {key for key, _ in changed}
        stale = self._stale.pop(tp, [])
        dirty: list[tuple[str, bytes | None]] = [(k, None) for k in stale if k not in written]
        dirty += changed
        seen = self.lineage.get(tp)
        if dirty and seen is not None and seen.dirty:
            dirty.append((LINEAGE_KEY, seen.dump()))
        return self.changelog_records(tp, dirty, position)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            recovered = (await self.recover(tp.partition, [tp.topic]))[tp.topic]
            seen = self.lineage[tp] = Lineage()
            if (applied := recovered.items.pop(LINEAGE_KEY, None)) is not None:
                seen.load(applied)
            engine = self.engines[tp] = self._engine()
            self._stale[tp] = engine.restore(recovered.items.items())
            engine.keep_alive(int(time.time() * 1000))
            self.resume(tp, recovered)
            if engine.resume_from is not None:
                # Inputs still pending at the checkpoint: read again from the oldest.
                self.consumer.seek(tp, engine.resume_from)
                self.positions[tp] = engine.resume_from
        log.info("rules: recovered %d partitions from %s", len(assigned), self.changelog)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        for tp in revoked:
            self.engines.pop(tp, None)
            self._stale.pop(tp, None)
            self.lineage.pop(tp, None)
