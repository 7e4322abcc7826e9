"""The window stage: validated events → `ioc.aggregates`, state in a changelog.

Not a Faust agent: Faust's stream hands events over one at a time through several
asyncio tasks (a few thousand events/s here), while windowing wants batches. This
service reads batches with aiokafka's `getmany`, runs them through the pure
`WindowEngine`, and checkpoints (streams.changelog) once per commit interval:

    changed state → changelog, then results and dead letters are flushed,
    then the input offsets are committed.

On assignment it rebuilds each partition's state from the changelog and resumes
from the offset stored with that state, so state and position always agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service
from models.aggregates import Aggregate

from streams.changelog import Checkpointer, read_to_end, replay
from streams.ingest import Rejected, dead_letter
from streams.kafka import client_options
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import AGGREGATES, DEADLETTER, FAMILIES, VALIDATED
from streams.windows import LateEvent, WindowEngine, WindowResult

__all__ = ["WindowStage", "changelog_topic"]

log = logging.getLogger(__name__)


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-windows-changelog"


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: WindowStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._stage.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._stage.recover(assigned)


class WindowStage(Service):
    """Runs the window engines of every family inside the worker."""

    def __init__(
        self, settings: Settings, aggregates: list[Aggregate], metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        windows = settings.windows
        by_family: dict[str, list[Aggregate]] = defaultdict(list)
        for aggregate in aggregates:
            by_family[aggregate.family].append(aggregate)
        self.engines = {
            VALIDATED[family]: WindowEngine(
                by_family[family],
                allowed_lateness_ms=int(windows.allowed_lateness_s * 1000),
                idle_timeout_ms=int(windows.idle_timeout_s * 1000),
            )
            for family in FAMILIES
            if by_family[family]
        }
        self._family = {VALIDATED[family]: family for family in FAMILIES}
        self.changelog = changelog_topic(settings.app_id)
        self._options = client_options(settings.kafka)
        self._positions: dict[TopicPartition, int] = {}
        self._checkpointed: dict[TopicPartition, int] = {}
        self._checkpointers: dict[TopicPartition, Checkpointer] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()  # checkpoints vs. rebalance callbacks

    async def on_start(self) -> None:
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(
            **self._options, acks="all", linger_ms=kafka.linger_ms,
            max_batch_size=kafka.max_batch_bytes,
        )  # fmt: skip
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **self._options,
            group_id=f"{self.settings.app_id}-windows",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            session_timeout_ms=int(kafka.session_timeout_s * 1000),
            heartbeat_interval_ms=int(kafka.heartbeat_interval_s * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer.subscribe(list(self.engines), listener=_Rebalance(self))
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self.checkpoint()
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    @Service.task
    async def _run(self) -> None:
        assert self._consumer is not None and self._producer is not None
        consumer = self._consumer
        interval = self.settings.kafka.commit_interval_s
        next_checkpoint = next_tick = time.monotonic()
        max_batch = self.settings.windows.max_batch
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=200, max_records=max_batch)
            now_ms = int(time.time() * 1000)
            for tp, records in batches.items():
                if records:
                    await self._process(tp, records, now_ms)
            now = time.monotonic()
            if now >= next_tick:
                for engine in self.engines.values():
                    await self._emit(engine.advance(now_ms))
                next_tick = now + 1.0
            if now >= next_checkpoint:
                await self.checkpoint()
                next_checkpoint = now + interval

    async def _process(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        engine = self.engines[tp.topic]
        partition = _name(tp)
        results: list[WindowResult] = []
        for record in records:
            for output in engine.process(partition, orjson.loads(record.value), now_ms):
                if isinstance(output, LateEvent):
                    await self._dead_letter_late(tp, record, output)
                else:
                    results.append(output)
        self._positions[tp] = records[-1].offset + 1
        self.metrics.window_events.labels(self._family[tp.topic]).inc(len(records))
        await self._emit(results)

    async def _dead_letter_late(self, tp: TopicPartition, record: Any, late: LateEvent) -> None:
        assert self._producer is not None
        reason = (
            f"late: the {late.aggregate} window starting at "
            f"{datetime.fromtimestamp(late.window_start / 1000, UTC).isoformat()} had closed"
        )
        letter = dead_letter(
            Rejected(None, record.value, "late", reason), family=self._family[tp.topic],
            topic=tp.topic, partition=tp.partition, offset=record.offset, key=record.key,
            now=datetime.now(UTC),
        )  # fmt: skip
        await self._producer.send(DEADLETTER, letter, key=record.key)
        self.metrics.late_events.labels(late.aggregate).inc()

    async def _emit(self, results: list[WindowResult]) -> None:
        assert self._producer is not None
        for result in results:
            await self._producer.send(AGGREGATES, result.to_json(), key=result.identity.encode())
            self.metrics.window_results.labels(result.aggregate, str(result.final)).inc()

    async def checkpoint(self) -> None:
        """Changed state to the changelog, flush everything, then commit input offsets."""
        assert self._consumer is not None and self._producer is not None
        async with self._lock:
            offsets = {}
            for tp, position in list(self._positions.items()):
                dirty = self.engines[tp.topic].take_dirty(_name(tp))
                if not dirty and self._checkpointed.get(tp) == position:
                    continue
                for key, value in self._checkpointers[tp].records(dirty, position):
                    await self._producer.send(
                        self.changelog, value, key=key, partition=tp.partition
                    )
                offsets[tp] = position
            if not offsets:
                return
            await self._producer.flush()
            await self._consumer.commit(offsets)
            self._checkpointed.update(offsets)

    async def release(self, revoked: list[TopicPartition]) -> None:
        await self.checkpoint()
        for tp in revoked:
            self.engines[tp.topic].drop(_name(tp))
            for table in (self._positions, self._checkpointed, self._checkpointers):
                table.pop(tp, None)

    async def recover(self, assigned: list[TopicPartition]) -> None:
        assert self._consumer is not None
        by_partition: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in assigned:
            by_partition[tp.partition].append(tp)
        for partition, tps in by_partition.items():
            records = await read_to_end(self._options, self.changelog, partition)
            for tp in tps:
                recovered = replay(tp.topic, records)
                self.engines[tp.topic].restore(_name(tp), recovered.items.items())
                self._checkpointers[tp] = Checkpointer(tp.topic, recovered.seq)
                if recovered.offset is not None:
                    # The offset stored with the state, not the group's: they agree
                    # unless a crash fell between a changelog flush and the commit.
                    self._consumer.seek(tp, recovered.offset)
                    self._positions[tp] = self._checkpointed[tp] = recovered.offset
        log.info("windows: recovered %d partitions from %s", len(assigned), self.changelog)
