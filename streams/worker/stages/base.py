"""The shell every stage runs in: batches from Kafka in, records out, checkpoints.

Faust's agents hand messages over one at a time through several asyncio tasks:
measured here, a plain agent reads ~5.8k messages/s and ingest as an agent ~2k/s,
while the same ingest on aiokafka batches does ~16.7k/s (bench/ingest.py). So a stage
is a mode Service inside the Faust worker (which still provides the process,
signals, the web server and /metrics) that consumes with its own consumer group:

    getmany() → handle(batch) → … → checkpoint: save state (if any) → flush the
    producer (raising if any record failed) → commit the input offsets.

Nothing is committed before everything it produced is durable: at-least-once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from mode import Service

from models.errors import DeliveryFailed, RecordTooLarge
from streams.core import progress
from streams.core.ingest import Rejected, dead_letter, dead_letter_key, internal_reason
from streams.core.progress import Frontier
from streams.worker.changelog import Checkpointer, Recovered, Replay, stream
from streams.worker.kafka import client_options
from streams.worker.metrics import Metrics
from streams.worker.settings import Settings
from streams.worker.topics import DEADLETTER
from streams.worker.topics import changelog as changelog_topic

__all__ = ["BatchStage", "ChangelogStage", "ProducerOutbox", "merge_by_timestamp"]

log = logging.getLogger(__name__)

CrashHandler = Callable[[BaseException], Awaitable[None]]


class Located(Protocol):
    """Where a record came from and what it held: an aiokafka ConsumerRecord or a
    sinks.base.SinkRecord."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def merge_by_timestamp(
    batches: dict[TopicPartition, list[Any]],
) -> list[tuple[TopicPartition, list[Any]]]:
    """Records of several partitions in timestamp order (each partition's own order
    kept), as runs of consecutive records of one partition."""
    batches = {tp: records for tp, records in batches.items() if records}
    if len(batches) <= 1:
        return list(batches.items())
    streams = [
        [(record.timestamp, index, n, record) for n, record in enumerate(records)]
        for index, records in enumerate(batches.values())
    ]
    partitions = list(batches)
    runs: list[tuple[TopicPartition, list[Any]]] = []
    current = -1
    for _, index, _, record in heapq.merge(*streams):
        if index != current:
            runs.append((partitions[index], []))
            current = index
        runs[-1][1].append(record)
    return runs


class ProducerOutbox:
    """An outbox on an aiokafka producer: sends are buffered, `flush` proves delivery.

    A record over `max_record_bytes` is refused here (`RecordTooLarge`), before it is
    buffered: the broker would refuse it anyway, and fail every record batched with it."""

    #: What a record costs beyond its key, value and headers (Kafka's record framing).
    OVERHEAD_BYTES = 128

    def __init__(self, producer: AIOKafkaProducer, max_record_bytes: int = 1_000_000) -> None:
        self._producer = producer
        self._limit = max_record_bytes - self.OVERHEAD_BYTES
        self._failure: BaseException | None = None

    def _check(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._failure = future.exception()

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        size = (len(value) if value else 0) + (len(key) if key else 0)
        if headers:
            size += sum(len(name) + len(data) for name, data in headers)
        if size > self._limit:
            raise RecordTooLarge(
                f"a record for {topic} would be {size} bytes; the limit is {self._limit} "
                "(IOC_KAFKA__MAX_RECORD_BYTES)"
            )
        pending = await self._producer.send(
            topic, value, key=key, partition=partition, headers=headers
        )
        pending.add_done_callback(self._check)

    async def send_progress(self, topic: str, frontiers: list[Frontier]) -> None:
        value = progress.encode(frontiers)
        for partition in sorted(await self._producer.partitions_for(topic)):
            await self.send(topic, None, value, partition, progress.HEADERS)

    async def flush(self) -> None:
        await self._producer.flush()
        if self._failure is not None:
            raise DeliveryFailed(f"a record could not be produced: {self._failure!r}")


#: Failures that are not one record's: Kafka, the disk, the outbox. They stop the stage.
NOT_THE_RECORD: tuple[type[BaseException], ...] = (KafkaError, DeliveryFailed, OSError)
#: Seconds between two logged tracebacks of one stage's internal errors.
LOG_EVERY_S = 10.0
#: A stage whose every record has failed for this long is unhealthy in /health.
FAILING_AFTER_S = 30.0
#: Longest a stage handles records without letting the event loop's other tasks run.
YIELD_EVERY_S = 0.05


class Isolation:
    """Per-record isolation: `async with stage.isolated(record, family): …` around the
    handling of one record. An exception from it dead-letters that record (`internal`,
    or `too_large` for an output over the record limit) and the stage goes on; only
    failures not tied to the record (`NOT_THE_RECORD`, cancellation) pass through and
    stop the worker. One object per stage, re-armed per record: no allocation on the
    hot path."""

    __slots__ = (
        "_family", "_logged_at", "_record", "_stage", "_suppressed", "_yielded_at",
        "failing_since",
    )  # fmt: skip

    def __init__(self, stage: BatchStage) -> None:
        self._stage = stage
        self._record: Located | None = None
        self._family = ""
        self._logged_at = -LOG_EVERY_S
        self._suppressed = 0
        self._yielded_at = 0.0
        #: Monotonic time of the first failure since the last record handled well.
        self.failing_since: float | None = None

    def __call__(self, record: Located, family: str) -> Isolation:
        self._record, self._family = record, family
        return self

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> bool:
        if exc is None:
            self.failing_since = None
            now = time.perf_counter()
            if now - self._yielded_at > YIELD_EVERY_S:
                # A batch of flood messages is seconds of work: let /health, /metrics
                # and the consumer's heartbeats through between records.
                self._yielded_at = now
                await asyncio.sleep(0)
            return False
        too_large = isinstance(exc, RecordTooLarge | MessageSizeTooLargeError)
        if not isinstance(exc, Exception) or (isinstance(exc, NOT_THE_RECORD) and not too_large):
            return False
        record, stage = self._record, self._stage
        assert record is not None
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        if too_large:
            reason = f"{stage.title}: an output of this record is too large: {exc}"
            await stage.reject(record, "too_large", reason, family=self._family)
            return True
        self._log(exc)
        await stage.reject(
            record, "internal", internal_reason(exc, stage.title), family=self._family
        )
        return True

    def _log(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_S:
            self._suppressed += 1
            return
        record = self._record
        assert record is not None
        log.error(
            "stage %s: internal error on %s[%d]@%d (dead-lettered; %d more since the last "
            "report)", self._stage.title, record.topic, record.partition, record.offset,
            self._suppressed, exc_info=exc,
        )  # fmt: skip
        self._logged_at, self._suppressed = now, 0

    @property
    def failing(self) -> bool:
        """Every record has failed for `FAILING_AFTER_S`: busy, and achieving nothing."""
        since = self.failing_since
        return since is not None and time.monotonic() - since > FAILING_AFTER_S


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka calls these from its coordinator task, concurrently with the stage's
    loop: they take the stage's processing lock, so a batch is never half applied
    when state is saved or replaced."""

    def __init__(self, stage: BatchStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        stage = self._stage
        async with stage.processing:
            await stage.checkpoint()
            await stage.on_revoked(revoked)
            for tp in revoked:
                stage.positions.pop(tp, None)
                stage.assigned.discard(tp)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        stage = self._stage
        # Paused before the first await: the fetcher may start as soon as the committed
        # offsets are known, and no record may be handled before the state it updates
        # is recovered and the position it belongs to is set.
        stage.consumer.pause(*assigned)
        async with stage.processing:
            await stage.on_assigned(assigned)
            stage.assigned.update(assigned)
        stage.consumer.resume(*assigned)
        stage.joined = True


class BatchStage(Service):
    """Subclasses set `name` and `topics`, implement `handle`, and may override
    `tick` (about once a second), `state_records` (changelog records to save at a
    checkpoint), `on_assigned` and `on_revoked`."""

    name: ClassVar[str]
    #: Read partitions in fair shares merged by record timestamp (`_fetch_interleaved`),
    #: for stages whose output mixes their input partitions.
    interleave: ClassVar[bool] = False
    #: Producer linger for this stage; None: `IOC_KAFKA__LINGER_MS`. A stage whose
    #: output is sparse and urgent (alerts) sends at once instead of batching.
    linger_ms: ClassVar[int | None] = None

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        topics: Iterable[str],
        on_crash: CrashHandler | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.topics = list(topics)
        self.options = client_options(settings.kafka)
        self.positions: dict[TopicPartition, int] = {}  # next offset to read
        self.assigned: set[TopicPartition] = set()  # recovered and ready for records
        self.processing = asyncio.Lock()  # held while a batch or a rebalance is applied
        self.joined = False
        self._committed: dict[TopicPartition, int] = {}
        self._on_crash = on_crash
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._outbox: ProducerOutbox | None = None
        self._checkpointing = asyncio.Lock()
        self.isolated = Isolation(self)

    @property
    def group(self) -> str:
        return f"{self.settings.app_id}-{self.title}"

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "the stage has not started"
        return self._consumer

    @property
    def outbox(self) -> ProducerOutbox:
        assert self._outbox is not None, "the stage has not started"
        return self._outbox

    # -- for subclasses -------------------------------------------------------------

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        raise NotImplementedError

    async def tick(self, now_ms: int) -> None:
        """Called about once a second, between batches."""

    def state_records(
        self, tp: TopicPartition, position: int
    ) -> list[tuple[str, int, bytes, bytes | None]]:
        """(topic, partition, key, value) records that save this partition's state."""
        return []

    async def before_commit(self) -> None:
        """At each checkpoint, before the outbox is flushed and the offsets committed:
        a stage that writes outside Kafka waits for its acknowledgements here."""

    @property
    def title(self) -> str:
        """The stage's name in `/health` (unique within a worker)."""
        return self.name

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Before the first batch of newly assigned partitions (recover state here)."""

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """After the last checkpoint of partitions taken away (forget state here)."""

    # -- the loop -----------------------------------------------------------------

    async def on_start(self) -> None:
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(
            **self.options, acks="all",
            linger_ms=kafka.linger_ms if self.linger_ms is None else self.linger_ms,
            max_batch_size=kafka.max_batch_bytes, max_request_size=kafka.max_record_bytes + 4096,
        )  # fmt: skip
        await self._producer.start()
        self._outbox = ProducerOutbox(self._producer, kafka.max_record_bytes)
        self._consumer = AIOKafkaConsumer(
            **self.options,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            session_timeout_ms=int(kafka.session_timeout_s * 1000),
            heartbeat_interval_ms=int(kafka.heartbeat_interval_s * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self._consumer.start()

    async def on_stop(self) -> None:
        try:
            if self._consumer is not None and self.positions:
                async with self.processing:  # after the batch in hand, if any
                    await self.checkpoint()
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()

    @Service.task
    async def _run(self) -> None:
        try:
            await self._consume()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug, or Kafka refusing our records: stop the worker loudly rather than
            # leave it alive and idle. Bad input never gets here.
            log.exception("stage %s crashed", self.name)
            if self._on_crash is not None:
                await self._on_crash(exc)
            raise

    async def _consume(self) -> None:
        consumer = self.consumer
        interval = self.settings.kafka.commit_interval_s
        max_records = self.settings.kafka.max_poll_records
        next_checkpoint = next_tick = time.monotonic()
        while not self.should_stop:
            if self.interleave:
                runs = await self._fetch_interleaved(max_records)
            else:
                batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
                runs = list(batches.items())
            async with self.processing:
                now_ms = int(time.time() * 1000)
                started, handled = time.perf_counter(), 0
                for tp, records in runs:
                    # A batch fetched before a rebalance took its partition away.
                    if records and tp in self.assigned:
                        await self.handle(tp, records, now_ms)
                        self.positions[tp] = records[-1].offset + 1
                        handled += len(records)
                if handled:  # metrics per batch, never per record
                    self.metrics.stage_batch_seconds.labels(self.title).observe(
                        time.perf_counter() - started
                    )
                    self.metrics.stage_records.labels(self.title).inc(handled)
                now = time.monotonic()
                if now >= next_tick:
                    await self.tick(now_ms)
                    next_tick = now + 1.0
                if now >= next_checkpoint:
                    await self.checkpoint()
                    next_checkpoint = now + interval

    async def _fetch_interleaved(self, max_records: int) -> list[tuple[TopicPartition, list[Any]]]:
        """A fair share of every partition with records buffered, merged by record
        timestamp. aiokafka hands out one partition's whole fetch (megabytes: hours of
        a replayed history) before the next; a stage whose output mixes partitions
        (ingest, the rule router) would then run one partition's event time far ahead
        of the others', and what comes after looks late or silent downstream."""
        consumer = self.consumer
        share = max(100, max_records // max(1, len(self.assigned)))
        batches = dict(await consumer.getmany(timeout_ms=200, max_records=share))
        if not batches:
            return []
        for tp in self.assigned:
            if tp not in batches:
                batches.update(await consumer.getmany(tp, timeout_ms=0, max_records=share))
        return merge_by_timestamp(batches)

    async def checkpoint(self) -> None:
        """Make every produced record durable, then save the state they came from, then
        commit the offsets.

        Outputs first: a checkpoint (its `@checkpoint` record) is durable only once every
        output it covers is, so a crash between the two flushes restores the previous
        checkpoint and produces those outputs again (their identities are deterministic)
        rather than adopt a state whose outputs were lost."""
        async with self._checkpointing:
            started = time.perf_counter()
            offsets = {
                tp: position
                for tp, position in self.positions.items()
                if self._committed.get(tp) != position
            }
            await self.before_commit()
            await self.outbox.flush()
            saved = False
            for tp, position in self.positions.items():
                for topic, partition, key, value in self.state_records(tp, position):
                    await self.outbox.send(topic, key, value, partition)
                    saved = True
            if saved:
                await self.outbox.flush()
            if offsets:
                await self.consumer.commit(offsets)
                self._committed.update(offsets)
            self.metrics.checkpoint_seconds.labels(self.title).observe(
                time.perf_counter() - started
            )

    async def reject(self, record: Located, error: str, reason: str, *, family: str) -> None:
        """The one way a stage dead-letters a record it cannot use: an `ioc.deadletter`
        record naming this stage (models.deadletter), counted in
        `ioc_deadletters_total{stage, error}`. `family` is what the record was: an event
        family, `aggregates`, `rules`, or the sink stage's title."""
        letter = dead_letter(
            Rejected(None, record.value or b"", error, reason), stage=self.title, family=family,
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, now=datetime.now(UTC),
        )  # fmt: skip
        await self.outbox.send(DEADLETTER, dead_letter_key(record.key), letter)
        self.metrics.deadletters.labels(self.title, error).inc()

    def lag(self) -> dict[TopicPartition, int]:
        """Records left to read per partition (high watermark − next offset to read),
        from what the consumer already knows: partitions assigned with a position
        (read from, or recovered) and a high watermark (fetched from) only."""
        consumer = self._consumer
        if consumer is None:
            return {}
        assignment = consumer.assignment()
        lag: dict[TopicPartition, int] = {}
        for tp, position in list(self.positions.items()):
            if tp in assignment and (highwater := consumer.highwater(tp)) is not None:
                lag[tp] = max(highwater - position, 0)
        return lag


class ChangelogStage(BatchStage):
    """A stage whose state per input partition lives in memory and is checkpointed to
    its changelog (`<app>-<stage>-changelog`, streams.worker.changelog) with the input offset
    it belongs to. Subclasses restore their state from `replay` in `on_assigned`, then
    call `resume`; `state_records` returns `changelog_records(tp, dirty, position)`."""

    def __init__(
        self, settings: Settings, metrics: Metrics, topics: Iterable[str], **kwargs: Any
    ) -> None:
        super().__init__(settings, metrics, topics, **kwargs)
        self.changelog = changelog_topic(settings.app_id, self.name)
        self._checkpointers: dict[TopicPartition, Checkpointer] = {}

    async def recover(self, partition: int, topics: Iterable[str]) -> dict[str, Recovered]:
        """The state of each input topic's partition `partition`, streamed from the
        changelog to its true end."""
        rebuilt = Replay(topics)
        async for records in self.changelog_batches(partition):
            rebuilt.feed(records)
        return rebuilt.recovered

    def changelog_batches(self, partition: int) -> AsyncIterator[list[tuple[bytes, bytes | None]]]:
        """One changelog partition's records in batches, to its true end."""
        return stream(self.options, self.changelog, partition)

    def resume(self, tp: TopicPartition, recovered: Recovered) -> None:
        """Checkpoint on from the recovered state, and read on from the input offset saved
        with it — not the group's: they differ when a crash fell between a changelog
        flush and the commit."""
        self._checkpointers[tp] = Checkpointer(tp.topic, recovered.seq, recovered.abandoned)
        if recovered.offset is not None:
            self.consumer.seek(tp, recovered.offset)
            self.positions[tp] = recovered.offset

    def changelog_records(
        self, tp: TopicPartition, dirty: list[tuple[str, bytes | None]], position: int
    ) -> list[tuple[str, int, bytes, bytes | None]]:
        """The changelog records that save `dirty` state (key, payload or None) as of
        input `position`; none when nothing changed."""
        if not dirty:
            return []
        records = self._checkpointers[tp].records(dirty, position)
        return [(self.changelog, tp.partition, key, value) for key, value in records]

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._checkpointers.pop(tp, None)
