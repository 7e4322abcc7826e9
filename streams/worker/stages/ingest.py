"""Ingest: raw bytes from the integrators' topics to validated events.

Nothing decodes before this stage sees the bytes (a decode error inside a framework
would be acked and lost): `streams.core.ingest` decodes and validates, and every
rejection becomes a dead letter. Bad input never raises here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from aiokafka import TopicPartition

from models.families import FAMILY_NAMES, Family
from streams.core.ingest import RecentIds, dead_letter, process_message
from streams.worker.metrics import Metrics
from streams.worker.outbox import Outbox
from streams.worker.settings import IngestSettings, Settings
from streams.worker.stages.base import BatchStage
from streams.worker.topics import DEADLETTER, SOURCE, VALIDATED

__all__ = ["IngestStage", "Ingestor"]


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

    async def ingest(self, topic: str, partition: int, record: Record, now: datetime) -> None:
        result = process_message(self.family, record.value, self.settings, now)
        self._messages.inc()
        for item in result.accepted:
            if item.event_id is not None and self.recent.seen(item.event_id, time.monotonic()):
                self._duplicates.inc()
                continue
            await self.outbox.send(self.validated_topic, item.key, item.value)
            self._accepted.inc()
        for rejected in result.rejected:
            letter = dead_letter(
                rejected, stage=IngestStage.name, family=self.family, topic=topic,
                partition=partition, offset=record.offset, key=record.key, now=now,
            )  # fmt: skip
            await self.outbox.send(DEADLETTER, record.key, letter)
            self.metrics.rejected.labels(self.family, rejected.error).inc()
            # BatchStage.reject counts a stage's dead letters; the Ingestor sends
            # through its own outbox, so it counts them itself, as the ingest stage's.
            self.metrics.deadletters.labels(IngestStage.name, rejected.error).inc()


class IngestStage(BatchStage):
    """One consumer group over the three source topics; one Ingestor per family."""

    name: ClassVar[str] = "ingest"
    interleave: ClassVar[bool] = True  # its output mixes its input partitions

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(settings, metrics, SOURCE.values(), **kwargs)
        self._ingestors: dict[str, Ingestor] = {}

    async def on_start(self) -> None:
        await super().on_start()
        self._ingestors = {
            SOURCE[family]: Ingestor(family, self.settings.ingest, self.metrics, self.outbox)
            for family in FAMILY_NAMES
        }

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        ingestor = self._ingestors[tp.topic]
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        for record in records:
            await ingestor.ingest(tp.topic, tp.partition, record, now)
