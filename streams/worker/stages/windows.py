"""The window stage: validated events → `ioc.aggregates`, state in a changelog.

Per input partition the pure `WindowEngine` keeps open windows and the watermark;
at each checkpoint the windows that changed go to the changelog together with the
input offset (streams.worker.changelog), before the offsets are committed. On assignment
a partition's state is rebuilt from the changelog and reading resumes at the offset
stored with it, so state and position always agree.

When the pack has `air_station_1h`, the hourly VN_AQI per station (`aqi_station_1h`)
is derived from its finals by `HourlyAqi` (streams.core.windows.hourly_aqi), per input partition
like the engine; its history is checkpointed in the same changelog records (keys
`aqi|…`), so it always matches the engine state it was derived with.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import orjson
from aiokafka import TopicPartition

from models.aggregates import Aggregate
from models.errors import EventTimeError, GroupFieldMissing
from models.families import FAMILY_NAMES
from streams.core import lineage
from streams.core.lineage import Lineage
from streams.core.progress import Frontier, Heartbeat, Progress, decode, is_progress
from streams.core.windows import HourlyAqi, LateEvent, WindowEngine, WindowResult
from streams.core.windows.store import RocksStores
from streams.worker.metrics import LatestFinals, Metrics
from streams.worker.settings import Settings
from streams.worker.stages.base import ChangelogStage
from streams.worker.topics import AGGREGATES, VALIDATED

__all__ = ["WindowStage"]


log = logging.getLogger(__name__)


class FinalsListener(Protocol):
    """Takes each final a stage makes, with the input partition it came from."""

    def add(self, partition: str, result: WindowResult) -> None: ...

    def drop(self, partition: str) -> None: ...


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def pane_stores(settings: Settings) -> RocksStores | None:
    """The stores `IOC_WINDOWS__STORE` asks for: None for memory (plain dicts)."""
    windows = settings.windows
    if windows.store == "memory":
        return None
    return RocksStores(settings.data_dir / "windows", cache_panes=windows.store_cache_panes)


#: The changelog key of a partition's lineage, beside the engine's own keys.
LINEAGE_KEY = "@lineage"


class WindowStage(ChangelogStage):
    """Runs one window engine per family over `ioc.<family>.validated`."""

    name: ClassVar[str] = "windows"

    def __init__(
        self, settings: Settings, metrics: Metrics, aggregates: list[Aggregate], **kwargs: Any
    ) -> None:
        windows = settings.windows
        by_family: dict[str, list[Aggregate]] = defaultdict(list)
        for aggregate in aggregates:
            by_family[aggregate.family].append(aggregate)
        store = self.store = pane_stores(settings)  # None: accumulators in RAM
        self.engines = {
            VALIDATED[family]: WindowEngine(
                by_family[family],
                allowed_lateness_ms=int(windows.allowed_lateness_s * 1000),
                idle_timeout_ms=int(windows.idle_timeout_s * 1000),
                store=store,
                max_distinct_exact=windows.max_distinct_exact,
            )
            for family in FAMILY_NAMES
            if by_family[family]
        }
        # Derived per validated topic, from finals of that family's engine only.
        self.derived: dict[str, HourlyAqi] = {}
        aqi = HourlyAqi.for_pack(aggregates)
        if aqi is not None:
            self.derived[VALIDATED[aqi.family]] = aqi
        super().__init__(settings, metrics, self.engines, **kwargs)
        self.family = {VALIDATED[family]: family for family in FAMILY_NAMES}
        #: The latest final per bounded group, for /metrics (`metrics.LatestCollector`).
        self.latest = LatestFinals()
        #: Who else wants each final as it is made (the console's figures), if anyone.
        self.finals_to: FinalsListener | None = None
        #: Per input partition, the lineage applied (streams.core.lineage).
        self.lineage: dict[TopicPartition, Lineage] = {}
        self._sent: dict[TopicPartition, tuple[list[tuple[str, int]], bool]] = {}
        self._heartbeat = Heartbeat()
        self._skipped: dict[str, int] = {}  # per aggregate, as last counted in /metrics

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        engine = self.engines[tp.topic]
        partition = _name(tp)
        family = self.family[tp.topic]
        results: list[WindowResult] = []
        seen = self.lineage.setdefault(tp, Lineage())
        replayed = 0
        for record in records:
            async with self.isolated(record, family):
                if record.headers and is_progress(record.headers):
                    try:
                        frontiers = decode(record.value)
                    except ValueError as exc:
                        await self.reject(record, "schema", str(exc), family=family)
                        continue
                    woke = engine.wakes(partition, frontiers)
                    results += engine.observe_progress(partition, frontiers)
                    if woke:
                        # Passed on at once, after the finals before it, so that the rules
                        # over aggregates wait for this partition's next finals.
                        await self._emit_results(tp.topic, partition, results)
                        results = []
                        await self.send_progress()
                    continue
                mark = lineage.read(record.headers)
                if mark is not None and not seen.fresh(mark):
                    replayed += 1  # ingest produced it again after a crash: counted once
                    continue
                if record.value is None:
                    reason = "not a validated event: null value"
                    await self.reject(record, "schema", reason, family=family)
                    continue
                try:
                    event = orjson.loads(record.value)
                    if type(event) is not dict:
                        raise EventTimeError(f"expected a JSON object, got {type(event).__name__}")
                    outputs = engine.process(partition, event, now_ms)
                except GroupFieldMissing as exc:  # an aggregate's own rule: a valid event
                    await self.reject(record, "schema", str(exc), family=family)
                    continue
                except (orjson.JSONDecodeError, EventTimeError) as exc:
                    # Ingest wrote this topic, so only a foreign producer gets here: reject
                    # the record rather than stop every window of the partition.
                    await self.reject(
                        record, "schema", f"not a validated event: {exc}", family=family
                    )
                    continue
                late: LateEvent | None = None
                for output in outputs:
                    if type(output) is LateEvent:
                        late = late or output
                        self.metrics.late_events.labels(output.aggregate).inc()
                    else:
                        results.append(output)  # type: ignore[arg-type]
                if late is not None:  # one dead letter per record, however many windows
                    start = datetime.fromtimestamp(late.window_start / 1000, UTC).isoformat()
                    reason = f"late: the {late.aggregate} window starting at {start} had closed"
                    await self.reject(record, "late", reason, family=family)
        self.metrics.window_events.labels(family).inc(len(records))
        if replayed:
            self.metrics.replayed_events.labels(self.title).inc(replayed)
        await self._emit_results(tp.topic, partition, results)

    async def _emit_results(self, topic: str, partition: str, results: list[WindowResult]) -> None:
        """Results of one partition, and what is derived from them (it belongs to the
        partition's state)."""
        await self._emit(partition, results)
        derived = self.derived.get(topic)
        if derived is not None and results:
            await self._emit(partition, derived.derive(partition, results))

    def progress_views(self) -> list[Progress]:
        """Each assigned partition's sources, for /metrics (WatermarkCollector)."""
        views = []
        for tp in list(self.assigned):
            engine = self.engines.get(tp.topic)
            if engine is not None and (progress := engine.progress(_name(tp))) is not None:
                views.append(progress)
        return views

    async def send_progress(self) -> None:
        """Each partition's aggregate frontiers to `ioc.aggregates`, after the finals they
        cover, when they moved (or at a heartbeat), so the rules over aggregates keep
        their own event time (streams.core.progress)."""
        beat = self._heartbeat.due(time.monotonic())
        for tp in sorted(self.assigned):
            engine = self.engines.get(tp.topic)
            if engine is None:
                continue
            name = _name(tp)
            progress = engine.progress(name)
            if progress is None and not engine.heard(name):
                continue  # no progress upstream (a foreign producer): none to pass on
            # Before its first watermark, a partition still says it exists (NEVER): the
            # rules over aggregates wait for it, and its first finals are not late.
            frontiers = engine.aggregate_frontiers(name)
            derived = self.derived.get(tp.topic)
            if derived is not None:
                frontiers += derived.frontiers(frontiers)
            # Sources all idle since they started say nothing: neither does it, then.
            idle = True if progress is None else progress.idle()
            if not beat and self._sent.get(tp) == (frontiers, idle):
                continue
            self._sent[tp] = (frontiers, idle)
            await self.outbox.send_progress(
                AGGREGATES,
                [Frontier(f"{name}/{a}", "aggregates", a, f, idle) for a, f in frontiers],
            )

    async def tick(self, now_ms: int) -> None:
        # A partition with records still to read is catching up, not idle: its
        # watermark must not run on with the wall clock past events it has not seen.
        consumer = self.consumer
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or self.positions.get(tp, -1) < highwater:
                self.engines[tp.topic].keep_alive(_name(tp), now_ms)
        for topic, engine in self.engines.items():
            for partition, results in engine.advance_partitions(now_ms).items():
                await self._emit_results(topic, partition, results)
            self.metrics.window_panes.labels(self.family[topic]).set(engine.state_entries())
            for aggregate, skipped in engine.skipped_values().items():
                if skipped > (before := self._skipped.get(aggregate, 0)):
                    self.metrics.window_values_skipped.labels(aggregate).inc(skipped - before)
                    self._skipped[aggregate] = skipped
        await self.send_progress()

    def state_records(
        self, tp: TopicPartition, position: int
    ) -> list[tuple[str, int, bytes, bytes | None]]:
        dirty = self.engines[tp.topic].take_dirty(_name(tp))
        derived = self.derived.get(tp.topic)
        if derived is not None:
            dirty += derived.take_dirty(_name(tp))
        seen = self.lineage.get(tp)
        if dirty and seen is not None and seen.dirty:
            dirty.append((LINEAGE_KEY, seen.dump()))
        return self.changelog_records(tp, dirty, position)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        by_partition: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in assigned:
            by_partition[tp.partition].append(tp)
        for partition, tps in by_partition.items():
            # Every validated topic's partition p checkpoints to changelog partition p.
            states = await self.recover(partition, [tp.topic for tp in tps])
            for tp in tps:
                recovered = states[tp.topic]
                seen = self.lineage[tp] = Lineage()
                if (applied := recovered.items.pop(LINEAGE_KEY, None)) is not None:
                    seen.load(applied)
                items = list(recovered.items.items())
                derived = self.derived.get(tp.topic)
                if derived is not None:
                    # The engine would tombstone keys it does not own as stale.
                    derived.restore(_name(tp), [i for i in items if derived.owns(i[0])])
                    items = [i for i in items if not derived.owns(i[0])]
                self.engines[tp.topic].restore(_name(tp), items)
                # The idle clock starts again now, not when the last event came in
                # before a crash or a handover.
                self.engines[tp.topic].keep_alive(_name(tp), int(time.time() * 1000))
                self.resume(tp, recovered)
        log.info("windows: recovered %d partitions from %s", len(assigned), self.changelog)

    async def on_stop(self) -> None:
        try:
            await super().on_stop()  # the last checkpoint still reads the engines
        finally:
            # RocksDB spills are scratch (the changelog is the state): leave no disk behind.
            for engine in self.engines.values():
                engine.close()
            if self.store is not None:
                self.store.close()

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        for tp in revoked:
            self.engines[tp.topic].drop(_name(tp))
            if (derived := self.derived.get(tp.topic)) is not None:
                derived.drop(_name(tp))
            self.latest.drop(_name(tp))
            if self.finals_to is not None:
                self.finals_to.drop(_name(tp))
            self._sent.pop(tp, None)
            self.lineage.pop(tp, None)

    async def _emit(self, partition: str, results: list[WindowResult]) -> None:
        for result in results:
            await self.outbox.send(AGGREGATES, result.identity.encode(), result.to_json())
            self.metrics.window_results.labels(result.aggregate, str(result.final)).inc()
            if result.final:
                self.latest.update(partition, result)
                if self.finals_to is not None:
                    self.finals_to.add(partition, result)
