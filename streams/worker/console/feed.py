"""The board's feed: every partition of `ioc.alerts` and `ioc.alert-actions`, read from
the beginning by every worker, folded into one `Board` (streams.core.board).

No consumer group: each worker reads everything, so any worker serves the whole
picture (a console's action reaches the others within a fetch wait). This is what a
Faust `GlobalTable` would give, without its changelog recovery, which stops at the
end offset ListOffsets reports and loses the tail on brokers that report it wrongly
(docs/BROKERS.md): here reading goes on for as long as the worker runs, and the board
is ready once every partition has been read to the high watermark of its fetches.

Both topics are low volume (an alert per incident change, an action per click); the
board bounds what it keeps (docs/LIMITS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from mode import Service
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.actions import AlertAction
from models.alerts import Alert
from streams.core.board import Board
from streams.core.progress import is_progress
from streams.worker.kafka import client_options
from streams.worker.settings import Settings
from streams.worker.stages.base import CrashHandler
from streams.worker.topics import ALERT_ACTIONS, ALERTS

__all__ = ["BoardCollector", "BoardFeed"]

log = logging.getLogger(__name__)


class BoardFeed(Service):
    """Keeps `board` up to date; `changed` wakes the live streams after each change."""

    def __init__(
        self, settings: Settings, board: Board, on_crash: CrashHandler | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._on_crash = on_crash
        self.settings = settings
        self.board = board
        self.options = client_options(settings.kafka)
        #: Notified (all waiters) whenever the board's `seq` moved.
        self.changed = asyncio.Condition()
        #: Names this process's board in event ids: a cursor of another worker (or of
        #: this one before a restart) means nothing here.
        self.epoch = f"{int(time.time() * 1000):x}"
        self.caught_up = False
        self.unreadable = 0  # records of either topic that are not what they should be
        self._logged_at = -10.0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(**self.options, acks="all", linger_ms=0)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **self.options,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        )
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in (ALERTS, ALERT_ACTIONS)
            for p in sorted(await self._partitions(topic))
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)

    async def _partitions(self, topic: str) -> set[int]:
        assert self._consumer is not None
        for _ in range(300):  # the metadata of a topic created a moment ago
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return found
            # `topics()` would fetch the metadata without updating the consumer's own.
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"topic {topic} has no partitions: create the topics first")

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, action: AlertAction) -> None:
        """Make an operator's action durable in `ioc.alert-actions`, and show it here at
        once (reading it back later changes nothing: it is known by its id)."""
        assert self._producer is not None, "the console feed has not started"
        await self._producer.send_and_wait(
            ALERT_ACTIONS, action.to_json(), key=action.fingerprint.encode()
        )
        if self.board.apply_action(action, int(time.time() * 1000)):
            await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    @Service.task
    async def _read(self) -> None:
        try:
            await self._fold_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not one record's fault (those are counted and skipped): the broker, or a
            # bug. A console that silently stops changing is worse than a stopped worker.
            log.exception("the console's board feed crashed")
            if self._on_crash is not None:
                await self._on_crash(exc)
            raise

    async def _fold_forever(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        board = self.board
        next_tick = 0.0
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
            now_ms = int(time.time() * 1000)
            seq = board.seq
            for tp, records in batches.items():
                for record in records:
                    self._fold(tp.topic, record, now_ms)
            if time.monotonic() >= next_tick:
                board.tick(now_ms)
                next_tick = time.monotonic() + 1.0
                if not self.caught_up:
                    self.caught_up = await self._at_end(consumer)
            if board.seq != seq:
                await self._notify()

    def _fold(self, topic: str, record: Any, now_ms: int) -> None:
        # One bad record is counted and skipped: it is not this worker's to reject
        # (the rule stage and the console wrote these topics), and the board goes on.
        if record.headers and is_progress(record.headers):
            return
        try:
            if topic == ALERTS:
                self.board.apply_alert(Alert.from_json(record.value), record.timestamp, now_ms)
            else:
                action = AlertAction.model_validate_json(record.value)
                self.board.apply_action(action, now_ms)
        except (ValueError, TypeError):
            self.unreadable += 1
        except Exception:  # a bug on one record: counted, logged, skipped
            self.unreadable += 1
            now = time.monotonic()
            if now - self._logged_at >= 10.0:  # a flood of them logs once in 10 s
                self._logged_at = now
                log.exception("console board: a record of %s could not be folded", topic)

    async def _at_end(self, consumer: AIOKafkaConsumer) -> bool:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                return False
        return True


class BoardCollector(Collector):
    """The board's size and bounds, read at scrape time (docs/LIMITS.md)."""

    def __init__(self, feed: BoardFeed, streams: Any) -> None:
        self._feed = feed
        self._streams = streams  # () -> live streams served now

    def collect(self) -> Iterator[Metric]:
        board = self._feed.board
        yield GaugeMetricFamily(
            "ioc_console_alerts", "Alerts on this worker's console board.", value=len(board.entries)
        )
        yield CounterMetricFamily(
            "ioc_console_evicted", "Alerts the board dropped at IOC_CONSOLE__MAX_ALERTS, "
            "oldest resolved first.", value=board.evicted,
        )  # fmt: skip
        yield CounterMetricFamily(
            "ioc_console_orphans_dropped", "Alerts whose actions, read before the alert, "
            "were dropped waiting for it (past 10,000 such alerts).", value=board.orphans_dropped,
        )  # fmt: skip
        yield CounterMetricFamily(
            "ioc_console_unreadable", "Records of ioc.alerts or ioc.alert-actions the board "
            "could not read (skipped).", value=self._feed.unreadable,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "ioc_console_streams", "Live streams (SSE) this worker serves.", value=self._streams()
        )
