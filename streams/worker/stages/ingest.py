"""Ingest: raw bytes from the integrators' topics to validated events.

Nothing decodes before this stage sees the bytes (a decode error inside a framework
would be acked and lost): `streams.core.ingest` decodes and validates, and every
rejection becomes a dead letter. Bad input never raises here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from models.families import FAMILY_NAMES, Family
from streams.core import lineage
from streams.core.ingest import RecentIds, dead_letter, dead_letter_key, process_message
from streams.core.progress import NEVER, Frontier, Heartbeat, Progress, SourceClock
from streams.worker.metrics import Metrics
from streams.worker.outbox import Outbox
from streams.worker.settings import IngestSettings, Settings
from streams.worker.stages.base import BatchStage
from streams.worker.topics import DEADLETTER, SOURCE, VALIDATED

__all__ = ["IngestStage", "Ingestor"]

FAMILY_OF_SOURCE: dict[str, Family] = {topic: family for family, topic in SOURCE.items()}


class Record(Protocol):
    """What ingest reads of a Kafka record."""

    key: bytes | None
    value: bytes | None  # None for a tombstone, which a foreign producer can send
    offset: int


class Ingestor:
    """Validates one family's messages: accepted events go on to `ioc.<family>.validated`
    keyed by entity, rejections to `ioc.deadletter`, exact duplicates are dropped."""

    def __init__(
        self, family: Family, settings: IngestSettings, metrics: Metrics, outbox: Outbox
    ) -> None:
        self.family = family
        self.settings = settings
        self.outbox = outbox
        self.metrics = metrics
        self.validated_topic = VALIDATED[family]
        self.recent = RecentIds(settings.dedup_horizon_s, settings.dedup_max_ids)
        self._messages = metrics.messages.labels(family)
        self._accepted = metrics.accepted.labels(family)
        self._duplicates = metrics.duplicates.labels(family)

    async def ingest(self, topic: str, partition: int, record: Record, now: datetime) -> int:
        """Validate one message and send what it holds on; returns the newest event
        time sent (NEVER if none)."""
        result = process_message(self.family, record.value, self.settings, now)
        self._messages.inc()
        newest = NEVER
        for element, item in enumerate(result.accepted):
            if item.event_id is not None and self.recent.seen(item.event_id, time.monotonic()):
                self._duplicates.inc()
                continue
            await self.outbox.send(
                self.validated_topic, item.key, item.value,
                headers=lineage.header(partition, record.offset, element),
            )  # fmt: skip
            self._accepted.inc()
            if item.event_ms > newest:
                newest = item.event_ms
        for rejected in result.rejected:
            letter = dead_letter(
                rejected, stage=IngestStage.name, family=self.family, topic=topic,
                partition=partition, offset=record.offset, key=record.key, now=now,
            )  # fmt: skip
            await self.outbox.send(DEADLETTER, dead_letter_key(record.key), letter)
            self.metrics.rejected.labels(self.family, rejected.error).inc()
            # BatchStage.reject counts a stage's dead letters; the Ingestor sends
            # through its own outbox, so it counts them itself, as the ingest stage's.
            self.metrics.deadletters.labels(IngestStage.name, rejected.error).inc()
        return newest


class IngestStage(BatchStage):
    """One consumer group over the three source topics; one Ingestor per family.

    It keeps a `SourceClock` per source partition and sends their frontiers to every
    partition of the family's validated topic (streams.core.progress): when assigned,
    then about once a second when one moved, and every `HEARTBEAT_S` regardless."""

    name: ClassVar[str] = "ingest"
    interleave: ClassVar[bool] = True  # its output mixes its input partitions

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(settings, metrics, SOURCE.values(), **kwargs)
        self._ingestors: dict[str, Ingestor] = {}
        self.clocks: dict[TopicPartition, SourceClock] = {}
        self.idle_timeout_ms = int(settings.ingest.idle_timeout_s * 1000)
        self._heartbeat = Heartbeat()

    async def on_start(self) -> None:
        await super().on_start()
        self._ingestors = {
            SOURCE[family]: Ingestor(family, self.settings.ingest, self.metrics, self.outbox)
            for family in FAMILY_NAMES
        }

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        ingestor = self._ingestors[tp.topic]
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        clock = self.clocks.get(tp)
        if clock is not None and clock.idle(now_ms, self.idle_timeout_ms):
            # Woken: said busy downstream before its records, which then wait for it
            # there rather than being judged in arrival order.
            clock.busy(now_ms)
            self._wake_siblings(tp, now_ms)
            await self.send_progress(now_ms, force=False)
        newest = NEVER
        for record in records:
            async with self.isolated(record, ingestor.family):
                sent = await ingestor.ingest(tp.topic, tp.partition, record, now)
                if sent > newest:
                    newest = sent
        if clock is None:
            return
        if newest != NEVER:
            clock.saw(newest, now_ms)
        else:
            clock.busy(now_ms)  # read, if nothing accepted: not idle either

    def _wake_siblings(self, woken: TopicPartition, now_ms: int) -> None:
        """An idle source has records again: its idle siblings likely do too (one
        producer writes them all, and reconnects for all), but the consumer may not have
        fetched theirs yet. Each gets an idle timeout to show it, holding event time
        back, rather than letting the first one read run ahead and the others' records
        arrive late (Kafka Streams waits on empty partitions with `max.task.idle.ms`)."""
        for tp, clock in self.clocks.items():
            if tp.topic == woken.topic and tp != woken and clock.idle(now_ms, self.idle_timeout_ms):
                clock.busy(now_ms)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        now_ms = int(time.time() * 1000)
        last = await self._last_committed_event_ms(assigned)
        for tp in assigned:
            clock = self.clocks[tp] = SourceClock(now_ms)
            if tp in last:
                clock.saw(last[tp], now_ms)
        # Announced before any of their records: downstream waits for a new source
        # instead of running ahead on the others'.
        await self.send_progress(now_ms, force=True)

    async def _last_committed_event_ms(
        self, assigned: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Per source partition read before (by this worker before a restart, or by
        another before a handover), the newest event time of its last committed record:
        where its frontier stood. Without it a restarted worker's sources would say
        nothing until new input came, and a silent province's event time would stand
        still after every restart (no absence, no resolution)."""
        committed = {tp: await self.consumer.committed(tp) for tp in assigned}
        wanted = {tp: offset - 1 for tp, offset in committed.items() if offset}
        if not wanted:
            return {}
        reader = AIOKafkaConsumer(**self.options, enable_auto_commit=False, fetch_max_wait_ms=100)
        await reader.start()
        out: dict[TopicPartition, int] = {}
        try:
            reader.assign(list(wanted))
            for tp, offset in wanted.items():
                reader.seek(tp, offset)
            deadline = time.monotonic() + 5.0
            while len(out) < len(wanted) and time.monotonic() < deadline:
                for tp, records in (await reader.getmany(timeout_ms=200)).items():
                    record = next((r for r in records if r.offset == wanted[tp]), None)
                    if record is not None and tp not in out:
                        out[tp] = self._newest_event_ms(tp, record.value)
                        reader.pause(tp)
        finally:
            await reader.stop()
        return {tp: ms for tp, ms in out.items() if ms != NEVER}

    def _newest_event_ms(self, tp: TopicPartition, value: bytes | None) -> int:
        family = FAMILY_OF_SOURCE[tp.topic]
        now = datetime.now(UTC)
        accepted = process_message(family, value, self.settings.ingest, now).accepted
        return max((item.event_ms for item in accepted), default=NEVER)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.clocks.pop(tp, None)

    async def tick(self, now_ms: int) -> None:
        consumer = self.consumer
        for tp, clock in self.clocks.items():
            highwater = consumer.highwater(tp)  # None until the first fetch answered
            if highwater is None or await consumer.position(tp) < highwater:
                clock.busy(now_ms)  # records are waiting: catching up is not idle
        await self.send_progress(now_ms, force=self._heartbeat.due(time.monotonic()))

    def progress_views(self) -> list[Progress]:
        """Its own sources as it last sent them, for /metrics (WatermarkCollector)."""
        progress = Progress()
        progress.observe(
            [
                Frontier(
                    f"{tp.topic}:{tp.partition}", "events", FAMILY_OF_SOURCE[tp.topic], *c.sent
                )
                for tp, c in list(self.clocks.items())
                if c.sent is not None
            ]
        )
        return [progress]

    async def send_progress(self, now_ms: int, *, force: bool) -> None:
        """Each family's source frontiers to its validated topic, if one moved."""
        by_family: dict[Family, list[Frontier]] = {}
        moved: set[Family] = set()
        for tp, clock in sorted(self.clocks.items()):
            family = FAMILY_OF_SOURCE[tp.topic]
            frontier, idle = clock.frontier(now_ms, self.idle_timeout_ms)
            by_family.setdefault(family, []).append(
                Frontier(f"{tp.topic}:{tp.partition}", "events", family, frontier, idle)
            )
            if clock.sent != (frontier, idle):
                clock.sent = (frontier, idle)
                moved.add(family)
        for family, frontiers in by_family.items():
            if force or family in moved:
                await self.outbox.send_progress(VALIDATED[family], frontiers)
