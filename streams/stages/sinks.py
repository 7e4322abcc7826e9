"""A sink stage: one sink's topic, read in batches, written out, committed after the
sink acknowledged (sinks/base.py has the calls and their order).

One consumer group per sink (`<app>-sink-<name>`), so a sink that is down holds back
only its own offsets: Kafka is its buffer, the other stages and sinks go on. While
the sink retries, the stage's checkpoint waits in `flush`; nothing is committed that
the server has not acknowledged, and a crash replays the unacknowledged batch, which
sinks write idempotently. A record the server refuses for good goes to
`ioc.deadletter` with the server's answer, as does a record that is not JSON.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from aiokafka import TopicPartition

from sinks.base import Sink, SinkRecord
from streams.ingest import Rejected, dead_letter
from streams.metrics import Metrics
from streams.settings import Settings
from streams.stages.base import BatchStage
from streams.topics import DEADLETTER

__all__ = ["SinkStage"]

log = logging.getLogger(__name__)

#: How long a stopping worker waits for a sink's last flush before it gives up on it
#: (the batch is then not committed, and is written again after the restart).
STOP_FLUSH_TIMEOUT_S = 10.0


class SinkStage(BatchStage):
    """Drives one sink over its topic."""

    name: ClassVar[str] = "sink"

    def __init__(self, settings: Settings, metrics: Metrics, sink: Sink, **kwargs: Any) -> None:
        super().__init__(settings, metrics, [sink.topic], **kwargs)
        self.sink = sink

    @property
    def title(self) -> str:
        return f"sink-{self.sink.name}"

    async def on_start(self) -> None:
        await self.sink.open()
        await super().on_start()

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        batch: list[SinkRecord] = []
        for record in records:
            try:
                decoded = orjson.loads(record.value) if record.value is not None else None
            except orjson.JSONDecodeError as exc:
                decoded, reason = None, f"not JSON: {exc}"
            else:
                reason = "not a JSON object"
            if type(decoded) is not dict:
                await self._dead_letter(record, tp, reason)
                continue
            batch.append(
                SinkRecord(tp.topic, tp.partition, record.offset, record.key, record.value, decoded)
            )
        if batch:
            await self.sink.write(batch)

    async def tick(self, now_ms: int) -> None:
        await self.sink.tick(now_ms)

    async def before_commit(self) -> None:
        for rejection in await self.sink.flush():
            record = rejection.record
            letter = dead_letter(
                Rejected(None, record.value, "sink", f"{self.sink.name}: {rejection.reason}"),
                family=self.title, topic=record.topic, partition=record.partition,
                offset=record.offset, key=record.key, now=datetime.now(UTC),
            )  # fmt: skip
            await self.outbox.send(DEADLETTER, record.key, letter)

    async def on_stop(self) -> None:
        try:
            await asyncio.wait_for(super().on_stop(), STOP_FLUSH_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "sink %s: not acknowledged within %.0f s of stopping; the last batch is "
                "not committed and will be written again", self.sink.name, STOP_FLUSH_TIMEOUT_S,
            )  # fmt: skip
        finally:
            self.sink.status.state = "stopped"
            await self.sink.close()

    async def _dead_letter(self, record: Any, tp: TopicPartition, reason: str) -> None:
        letter = dead_letter(
            Rejected(None, record.value or b"", "schema", reason), family=self.title,
            topic=tp.topic, partition=tp.partition, offset=record.offset, key=record.key,
            now=datetime.now(UTC),
        )  # fmt: skip
        await self.outbox.send(DEADLETTER, record.key, letter)
