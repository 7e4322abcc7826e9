"""The sink stage around a sink, with an in-memory outbox and consumer: no broker."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from models.deadletter import DeadLetter
from sinks.base import SinkRecord
from sinks.memory import MemorySink
from streams.worker.metrics import Metrics, SinkCollector
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import Settings
from streams.worker.stages.sinks import SinkStage
from streams.worker.topics import AGGREGATES, ALERTS, DEADLETTER

TP = TopicPartition(AGGREGATES, 0)


@dataclass
class Record:
    value: bytes | None
    offset: int
    key: bytes | None = b"k"
    topic: str = TP.topic  # where aiokafka's ConsumerRecord says it was read
    partition: int = TP.partition
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


def refusing_sink() -> MemorySink:
    """Takes what it is given; refuses records whose value says so."""

    def refuse(record: SinkRecord) -> str | None:
        return "400 Bad Request: field type conflict" if record.decoded.get("refuse") else None

    return MemorySink("fake", topic=AGGREGATES, refuse=refuse)


class Consumer:
    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)


def stage(sink: MemorySink) -> SinkStage:
    made = SinkStage(Settings(_env_file=None), Metrics(), sink)
    made._outbox = MemoryOutbox()  # type: ignore[assignment]
    made._consumer = Consumer()  # type: ignore[assignment]
    return made


async def test_offsets_are_committed_after_the_sink_acknowledged():
    sink = refusing_sink()
    made = stage(sink)
    assert (made.group, made.title) == ("ioc-streams-sink-fake", "sink-fake")
    records = [Record(orjson.dumps({"n": n}), n) for n in range(3)]
    await made.handle(TP, records, 0)
    made.positions[TP] = 3
    assert sink.acknowledged == [] and made.consumer.committed == {}  # type: ignore[attr-defined]
    await made.checkpoint()
    assert [r.decoded["n"] for r in sink.acknowledged] == [0, 1, 2]
    assert made.consumer.committed == {TP: 3}  # type: ignore[attr-defined]


async def test_refused_and_undecodable_records_are_dead_lettered_with_the_answer():
    sink = refusing_sink()
    made = stage(sink)
    records = [
        Record(orjson.dumps({"n": 0}), 0),
        Record(orjson.dumps({"n": 1, "refuse": True}), 1),
        Record(b"{not json", 2),
        Record(None, 3),
    ]  # type: ignore[call-arg]
    await made.handle(TP, records, 0)
    made.positions[TP] = 4
    await made.checkpoint()
    outbox: MemoryOutbox = made.outbox  # type: ignore[assignment]
    letters = {
        (letter := DeadLetter.model_validate_json(value)).offset: letter
        for _, value in outbox.on(DEADLETTER)
    }
    assert sorted(letters) == [1, 2, 3]
    assert {(letter.stage, letter.family) for letter in letters.values()} == {
        ("sink-fake", "sink-fake")
    }
    assert letters[1].error == "sink"
    assert letters[1].reason == "fake: 400 Bad Request: field type conflict"
    assert letters[1].original() == records[1].value
    assert letters[2].error == "schema" and letters[2].reason.startswith("not JSON")
    assert made.consumer.committed == {TP: 4}  # type: ignore[attr-defined]


async def test_status_is_scraped_from_the_sinks():
    sink = refusing_sink()
    metrics = Metrics()
    metrics.registry.register(SinkCollector(lambda: [sink]))
    made = stage(sink)
    await made.handle(TP, [Record(orjson.dumps({"n": 0}), 0)], 0)

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"sink": "fake"})

    assert (sample("ioc_sink_up"), sample("ioc_sink_queued_records")) == (0.0, 1.0)
    made.positions[TP] = 1
    await made.checkpoint()
    assert sample("ioc_sink_up") == 1.0
    assert sample("ioc_sink_written_records_total") == 1.0


async def test_an_alert_sink_holds_back_what_the_console_silenced_until_the_silence_ends():
    sink = MemorySink("hook", topic=ALERTS)
    silenced_until = {"aaaa000000000000": 1_000}
    made = SinkStage(
        Settings(_env_file=None), Metrics(), sink,
        silenced=lambda fingerprint, now: silenced_until.get(fingerprint, 0) > now,
    )  # fmt: skip
    made._outbox = MemoryOutbox()  # type: ignore[assignment]
    made._consumer = Consumer()  # type: ignore[assignment]
    tp = TopicPartition(ALERTS, 0)

    def alert(fingerprint: str, state: str, offset: int) -> Record:
        value = orjson.dumps({"fingerprint": fingerprint, "state": state})
        return Record(value, offset, topic=ALERTS)

    await made.handle(tp, [alert("aaaa000000000000", "firing", 0)], 500)
    await made.handle(tp, [alert("bbbb000000000000", "firing", 1)], 500)
    await made.handle(tp, [alert("aaaa000000000000", "resolved", 2)], 600)
    await made.tick(900)  # still silenced
    written = [r.decoded for r in sink.taken]
    assert written == [{"fingerprint": "bbbb000000000000", "state": "firing"}]
    await made.tick(1_000)  # the silence has ended: its latest record goes out
    written = [r.decoded for r in sink.taken]
    assert written[-1] == {"fingerprint": "aaaa000000000000", "state": "resolved"}
    assert len(written) == 2 and not made.held
