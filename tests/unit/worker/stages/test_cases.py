"""The case stage's record handling and reporting with an in-memory outbox: no broker."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from aiokafka import TopicPartition

from models.deadletter import DeadLetter
from streams.core.cases import BacklogReporter, CaseBook
from streams.worker.metrics import Metrics
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import CasesSettings, Settings
from streams.worker.stages.cases import CaseStage
from streams.worker.topics import AGGREGATES, DEADLETTER, VALIDATED
from tests.unit.core.test_cases import HOUR_MS, T0_MS, dossier

TP = TopicPartition(VALIDATED["services"], 2)


@dataclass
class Record:
    value: bytes | None
    offset: int
    key: bytes | None = b"k"
    timestamp: int = 0  # when Kafka got it
    topic: str = TP.topic  # where aiokafka's ConsumerRecord says it was read
    partition: int = TP.partition
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


class Consumer:
    """What the stage asks of its consumer between batches."""

    def __init__(self) -> None:
        self.highwaters: dict[TopicPartition, int] = {}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)


@pytest.fixture
def stage() -> CaseStage:
    settings = Settings(cases=CasesSettings(emit_every_s=60))
    stage = CaseStage(settings, Metrics())
    stage._outbox = MemoryOutbox()  # type: ignore[assignment]
    stage._consumer = Consumer()  # type: ignore[assignment]
    # What on_assigned sets up after reading an empty changelog.
    stage.books[TP] = CaseBook(stage.closed_ttl_ms)
    stage._reporters[TP] = BacklogReporter(TP.partition, stage.every_ms, stage.near_due_ms)
    return stage


def sent(stage: CaseStage, topic: str) -> list[tuple[bytes | None, bytes]]:
    outbox = stage.outbox
    assert isinstance(outbox, MemoryOutbox)
    return outbox.on(topic)


async def test_records_that_are_not_service_events_are_dead_lettered(stage):
    records = [
        Record(orjson.dumps(dossier("received", 0, case="a")), 0),
        Record(b"{not json", 1),
        Record(None, 2),  # a tombstone
        Record(orjson.dumps([1, 2]), 3),
        Record(orjson.dumps({**dossier("received", 0), "kind": "ticket"}), 4),
        Record(orjson.dumps({**dossier("received", 0, case="b"), "agency": 7}), 5),
        Record(orjson.dumps({k: v for k, v in dossier("received", 0).items() if k != "agency"}), 6),
        Record(orjson.dumps(dossier("received", 0, case="c")), 7),
    ]
    await stage.handle(TP, records, T0_MS)
    letters = [DeadLetter.model_validate_json(value) for _, value in sent(stage, DEADLETTER)]
    assert [letter.offset for letter in letters] == [1, 2, 3, 4, 5, 6]
    assert {letter.error for letter in letters} == {"schema"}
    assert {(letter.stage, letter.family) for letter in letters} == {("cases", "services")}
    assert {(letter.source_topic, letter.partition) for letter in letters} == {(TP.topic, 2)}
    reasons = [letter.reason for letter in letters]
    assert all(reason.startswith("not a validated service event: ") for reason in reasons)
    assert reasons[1].endswith("null value")
    assert "kind: expected dossier or feedback" in reasons[3]
    assert "agency: expected a non-empty string" in reasons[4]
    assert reasons[5].endswith("agency: field required")
    assert len(stage.books[TP]) == 2  # the good records around them were taken
    assert stage.metrics.registry.get_sample_value("ioc_cases_events_total") == 8


async def test_a_partition_reports_once_caught_up_and_once_per_interval(stage):
    events = [dossier("received", 0, case="a", due_h=1), dossier("received", 0, case="b")]
    await stage.handle(TP, [Record(orjson.dumps(e), i) for i, e in enumerate(events)], T0_MS)
    now = T0_MS + 2 * HOUR_MS
    stage.consumer.highwaters[TP] = 5  # records 2..4 not read yet
    stage.positions[TP] = 2
    await stage.tick(now)
    assert sent(stage, AGGREGATES) == []
    stage.positions[TP] = 5
    await stage.tick(now + 1000)
    [(key, value)] = sent(stage, AGGREGATES)
    assert key == f"case_backlog|SO-TNMT|dossier|2|{now}".encode()
    assert orjson.loads(value)["statistics"] == {"open": 2, "overdue": 1, "near_due": 0}
    await stage.tick(now + 2000)
    assert len(sent(stage, AGGREGATES)) == 1
    assert stage.metrics.registry.get_sample_value("ioc_cases_open") == 2


async def test_under_steady_traffic_a_partition_a_few_records_behind_still_reports(stage):
    now = T0_MS + 2 * HOUR_MS
    written = Record(orjson.dumps(dossier("received", 0, case="a")), 0, timestamp=now - 2000)
    await stage.handle(TP, [written], now)
    stage.positions[TP] = 1
    stage.consumer.highwaters[TP] = 4  # three more arrived while it read: in flight
    await stage.tick(now)
    assert len(sent(stage, AGGREGATES)) == 1
