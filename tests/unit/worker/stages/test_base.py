"""The stage shell: per-record isolation, and outputs durable before the checkpoint
that covers them. A memory outbox that records the order of sends and flushes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from models.deadletter import DeadLetter
from models.errors import RecordTooLarge
from streams.worker.metrics import Metrics
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import Settings
from streams.worker.stages import base
from streams.worker.stages.base import BatchStage, ProducerOutbox
from streams.worker.topics import DEADLETTER

TP = TopicPartition("ioc.city.validated", 2)


@dataclass
class Record:
    value: bytes | None
    offset: int
    key: bytes | None = b"k"
    topic: str = TP.topic
    partition: int = TP.partition


class JournalOutbox(MemoryOutbox):
    """Also journals flushes, to show what was durable when."""

    def __init__(self) -> None:
        super().__init__()
        self.journal: list[str] = []

    async def send(self, topic: str, key: Any, value: Any, partition: Any = None,
                   headers: Any = None) -> None:  # fmt: skip
        await super().send(topic, key, value, partition, headers)
        self.journal.append(topic)

    async def flush(self) -> None:
        self.journal.append("flush")


class Consumer:
    def __init__(self) -> None:
        self.committed: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


class Doubling(BatchStage):
    """Doubles numbers; a record that is no number is a bug of its own."""

    name: ClassVar[str] = "doubling"

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        for record in records:
            async with self.isolated(record, "city"):
                number = orjson.loads(record.value)
                if number == "down":
                    raise KafkaConnectionError("the broker went away")
                if number == "huge":
                    raise RecordTooLarge("a record for out would be 2000000 bytes")
                await self.outbox.send("out", None, orjson.dumps(number * 2))

    def state_records(self, tp: TopicPartition, position: int) -> list[Any]:
        return [("changelog", tp.partition, b"@checkpoint", b"%d" % position)]


def doubling() -> tuple[Doubling, JournalOutbox, Consumer]:
    stage = Doubling(Settings(_env_file=None), Metrics(), ["in"])
    outbox, consumer = JournalOutbox(), Consumer()
    stage._outbox = outbox  # type: ignore[assignment]
    stage._consumer = consumer  # type: ignore[assignment]
    return stage, outbox, consumer


async def test_a_record_that_raises_is_dead_lettered_and_the_rest_go_on():
    stage, outbox, _ = doubling()
    records = [Record(b"1", 0), Record(b"{", 1), Record(b"[1]", 2), Record(b"3", 3)]
    await stage.handle(TP, records, 0)
    assert [orjson.loads(v) for _, v in outbox.on("out")] == [2, [1, 1], 6]
    [(key, value)] = outbox.on(DEADLETTER)
    assert key == b"k"
    letter = DeadLetter.model_validate_json(value)
    assert (letter.error, letter.stage, letter.family) == ("internal", "doubling", "city")
    assert (letter.source_topic, letter.partition, letter.offset) == (TP.topic, 2, 1)
    assert letter.reason.startswith("internal error in doubling: JSONDecodeError")
    assert letter.original() == b"{"
    assert stage.metrics.deadletters.labels("doubling", "internal")._value.get() == 1


async def test_an_output_too_large_dead_letters_its_input_as_too_large():
    stage, outbox, _ = doubling()
    await stage.handle(TP, [Record(b'"huge"', 5), Record(b"2", 6)], 0)
    [(_, value)] = outbox.on(DEADLETTER)
    assert DeadLetter.model_validate_json(value).error == "too_large"
    assert outbox.on("out") == [(None, b"4")]


async def test_a_failure_not_tied_to_the_record_stops_the_stage():
    stage, outbox, _ = doubling()
    with pytest.raises(KafkaConnectionError):
        await stage.handle(TP, [Record(b'"down"', 0)], 0)
    assert outbox.on(DEADLETTER) == []


async def test_a_stage_whose_every_record_fails_for_a_while_is_failing(monkeypatch):
    stage, _, _ = doubling()
    clock = [1000.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    await stage.handle(TP, [Record(b"{", 0)], 0)
    assert not stage.isolated.failing
    clock[0] += base.FAILING_AFTER_S + 1
    await stage.handle(TP, [Record(b"{", 1)], 0)
    assert stage.isolated.failing
    await stage.handle(TP, [Record(b"1", 2)], 0)  # one record handled well: not failing
    assert not stage.isolated.failing


async def test_outputs_are_durable_before_the_checkpoint_that_covers_them():
    """A crash between the two flushes leaves the previous checkpoint in force: the
    outputs are produced again, never lost under a state that says they were sent."""
    stage, outbox, consumer = doubling()
    await stage.handle(TP, [Record(b"1", 0), Record(b"2", 1)], 0)
    stage.positions[TP] = 2
    await stage.checkpoint()
    assert outbox.journal == ["out", "out", "flush", "changelog", "flush"]
    assert consumer.committed == [{TP: 2}]


class Producer:
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, topic: str, value: bytes | None, **kwargs: Any) -> Any:
        self.sent.append(len(value or b""))
        future: Any = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_the_outbox_refuses_a_record_over_the_limit_before_buffering_it():
    producer = Producer()
    outbox = ProducerOutbox(producer, max_record_bytes=100_000)  # type: ignore[arg-type]
    await outbox.send("t", b"k", b"x" * 99_000)
    with pytest.raises(RecordTooLarge, match="the limit is"):
        await outbox.send("t", b"k", b"x" * 99_000, headers=[("h", b"y" * 2000)])
    assert producer.sent == [99_000]
