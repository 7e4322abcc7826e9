"""A sink stage: one sink's topic, read in batches, written out, committed after the
sink acknowledged (sinks/base.py has the calls and their order).

One consumer group per sink (`<app>-sink-<name>`), so a sink that is down holds back
only its own offsets: Kafka is its buffer, the other stages and sinks go on. While
the sink retries, the stage's checkpoint waits in `flush`; nothing is committed that
the server has not acknowledged, and a crash replays the unacknowledged batch, which
sinks write idempotently. A record the server refuses for good goes to
`ioc.deadletter` with the server's answer, as does a record that is not JSON.

A sink that keeps state across records (Alertmanager: the alerts it keeps alive) is
`Restorable`: before the first batch of newly assigned partitions, the stage reads
its topic back over the sink's look-back, up to the group's committed offsets (what
comes after is the stage's own to read), and hands the records to `restore`, one
fetch at a time: the stage never holds the whole look-back, and the sink bounds its
own state (Alertmanager: `max_alerts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, ClassVar, Protocol, runtime_checkable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from sinks.base import Sink, SinkRecord
from streams.core.progress import is_progress
from streams.worker.metrics import Metrics
from streams.worker.settings import Settings
from streams.worker.stages.base import BatchStage
from streams.worker.topics import ALERTS

__all__ = ["Restorable", "SinkStage", "read_back"]

log = logging.getLogger(__name__)

#: How long a stopping worker waits for a sink's last flush before it gives up on it
#: (the batch is then not committed, and is written again after the restart).
STOP_FLUSH_TIMEOUT_S = 10.0
#: Empty fetches in a row after which reading back a partition gives up short of its end.
READ_BACK_IDLE_ROUNDS = 25


@runtime_checkable
class Restorable(Protocol):
    """A sink that rebuilds its state from its topic's records before the committed
    offsets (an optional capability beside `Sink`)."""

    @property
    def lookback_ms(self) -> int:
        """How far back, by record timestamp, the records are read."""
        ...

    def restore(self, records: Iterable[tuple[SinkRecord, int]]) -> int:
        """Take `(record, record timestamp ms)` pairs in offset order per partition;
        called once per fetch of the read-back, consecutive parts in order. Returns
        how many states it took."""
        ...


#: Alerts a sink stage holds back while a console silence holds them (the latest per
#: alert); past it the oldest held is dropped, as Alertmanager drops a silenced alert.
MAX_HELD = 10_000

#: Whether a console silence holds an alert (fingerprint, wall clock ms) now.
Silenced = Callable[[str, int], bool]


class SinkStage(BatchStage):
    """Drives one sink over its topic. An alert sink given `silenced` (the console's
    board) holds back what the console silenced and writes the alert's latest record
    once the silence ends."""

    name: ClassVar[str] = "sink"

    def __init__(
        self, settings: Settings, metrics: Metrics, sink: Sink,
        silenced: Silenced | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(settings, metrics, [sink.topic], **kwargs)
        self.sink = sink
        self.silenced = silenced if sink.topic == ALERTS else None
        self.held: OrderedDict[str, SinkRecord] = OrderedDict()

    @property
    def title(self) -> str:
        return f"sink-{self.sink.name}"

    async def on_start(self) -> None:
        await self.sink.open()
        await super().on_start()

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        sink = self.sink
        if not isinstance(sink, Restorable) or not assigned:
            return
        ends: dict[TopicPartition, int] = {}
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            if committed:  # None: never committed, the stage reads it from the start
                ends[tp] = committed
        if not ends:
            return
        since_ms = int(time.time() * 1000) - sink.lookback_ms
        read = restored = 0
        # Part by part, so that memory holds one fetch and the sink's own bounded
        # state, not the whole look-back (a day of alerts in a flood is 100,000s).
        async with contextlib.aclosing(read_back(self.options, ends, since_ms)) as parts:
            async for part in parts:
                read += len(part)
                restored += sink.restore([
                    (SinkRecord(tp.topic, tp.partition, r.offset, r.key, r.value, decoded),
                     r.timestamp)
                    for tp, r in part
                    if not is_progress(r.headers) and (decoded := _decoded(r.value)[0]) is not None
                ])  # fmt: skip
        log.info(
            "sink %s: read back %d records of %d partitions, %d states restored",
            sink.name, read, len(ends), restored,
        )  # fmt: skip

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        # One record per write: a record the sink cannot encode is dead-lettered alone
        # (per-record isolation); the sink batches its requests itself.
        for record in records:
            if record.headers and is_progress(record.headers):
                continue  # the window stage's event-time progress, for the rule router
            async with self.isolated(record, self.title):
                decoded, reason = _decoded(record.value)
                if decoded is None:
                    await self.reject(record, "schema", reason, family=self.title)
                    continue
                item = SinkRecord(
                    tp.topic, tp.partition, record.offset, record.key, record.value, decoded
                )
                if self.silenced is not None and self._hold(item, now_ms):
                    continue
                await self.sink.write([item])

    def _hold(self, item: SinkRecord, now_ms: int) -> bool:
        """Hold an alert a console silence holds; True if held."""
        assert self.silenced is not None
        fingerprint = item.decoded.get("fingerprint")
        if type(fingerprint) is not str or not self.silenced(fingerprint, now_ms):
            return False
        self.held.pop(fingerprint, None)
        self.held[fingerprint] = item
        if len(self.held) > MAX_HELD:
            self.held.popitem(last=False)
        return True

    async def tick(self, now_ms: int) -> None:
        if self.held:
            assert self.silenced is not None
            ended = [f for f in self.held if not self.silenced(f, now_ms)]
            if ended:
                await self.sink.write([self.held.pop(f) for f in ended])
        await self.sink.tick(now_ms)

    async def before_commit(self) -> None:
        for rejection in await self.sink.flush():
            reason = f"{self.sink.name}: {rejection.reason}"
            await self.reject(rejection.record, "sink", reason, family=self.title)

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


def _decoded(value: bytes | None) -> tuple[dict[str, Any] | None, str]:
    """The record's JSON object, or None and why not."""
    try:
        decoded = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if type(decoded) is not dict:
        return None, "not a JSON object"
    return decoded, ""


async def read_back(
    options: dict[str, Any], ends: dict[TopicPartition, int], since_ms: int
) -> AsyncGenerator[list[tuple[TopicPartition, Any]], None]:
    """The records of each partition from the first with a timestamp at or after
    `since_ms` (`offsets_for_times`; from the beginning if the broker cannot answer)
    up to, not including, its end offset in `ends`, one fetch at a time (in offset
    order per partition; close it with `contextlib.aclosing`). A partition also ends
    at the high watermark of the fetch responses (not ListOffsets, which Tansu
    answers wrongly: docs/BROKERS.md), e.g. when the log was lost under a committed
    offset."""
    consumer = AIOKafkaConsumer(
        **options,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        isolation_level="read_uncommitted",
    )
    await consumer.start()
    try:
        consumer.assign(list(ends))
        remaining = set(ends)
        try:
            starts = await consumer.offsets_for_times(dict.fromkeys(ends, since_ms))
        except (KafkaError, TimeoutError) as exc:
            log.warning("offsets_for_times failed (%r): reading back from the beginning", exc)
            await consumer.seek_to_beginning(*ends)
        else:
            for tp in ends:
                found = starts.get(tp)
                if found is None:  # no record at or after `since_ms`: nothing to read
                    remaining.discard(tp)
                else:
                    consumer.seek(tp, found.offset)
        idle = dict.fromkeys(remaining, 0)
        while remaining:
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not remaining:
                break
            batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=10_000)
            part: list[tuple[TopicPartition, Any]] = []
            for tp in list(remaining):
                fetched = batches.get(tp, [])
                part += [(tp, r) for r in fetched if r.offset < ends[tp]]
                idle[tp] = 0 if fetched else idle[tp] + 1
                highwater = consumer.highwater(tp)
                position = await consumer.position(tp)
                if position >= ends[tp] or (highwater is not None and position >= highwater):
                    remaining.discard(tp)
                elif idle[tp] >= READ_BACK_IDLE_ROUNDS:
                    log.warning(
                        "reading back %s stopped at %d, short of %d", tp, position, ends[tp]
                    )
                    remaining.discard(tp)
            if part:
                yield part
    finally:
        await consumer.stop()
