"""The ingest stage's per-message logic with an in-memory outbox: no broker."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson
import pytest

from models.deadletter import DeadLetter
from streams.core import lineage
from streams.core.ingest import process_message
from streams.worker.metrics import Metrics
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import IngestSettings
from streams.worker.stages.ingest import Ingestor
from streams.worker.topics import DEADLETTER, SOURCE, VALIDATED
from tests.conftest import NOW, air_quality, auth_failure, dossier


@dataclass
class Record:
    value: bytes
    key: bytes | None = None
    offset: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def ingestor(family, metrics, outbox) -> Ingestor:
    return Ingestor(family, IngestSettings(), metrics, outbox)


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("family", "event", "key"),
    [
        ("city", air_quality(), b"HD-AQ-017"),
        ("services", dossier(), b"000.00.17.H23-261126-0042"),
        ("security", auth_failure(), b"203.0.113.7"),
    ],
)
async def test_valid_event_goes_on_normalised_and_keyed(family, event, key, outbox, metrics):
    raw = orjson.dumps(event)
    await ingestor(family, metrics, outbox).ingest(SOURCE[family], 0, Record(raw, b"x"), NOW)
    [(sent_key, value)] = outbox.on(VALIDATED[family])
    assert sent_key == key
    expected = process_message(family, raw, IngestSettings(), NOW).accepted[0].value
    assert orjson.loads(value) == orjson.loads(expected)
    assert outbox.on(DEADLETTER) == []
    assert counted(metrics, "ioc_ingest_events_accepted_total", family=family) == 1


async def test_array_with_one_bad_element(outbox, metrics):
    second = air_quality(refDevice="HD-AQ-2", id="urn:2")
    raw = orjson.dumps([air_quality(), air_quality(pm25=-3), second])
    record = Record(raw, b"gateway-7", offset=41)
    await ingestor("city", metrics, outbox).ingest(SOURCE["city"], 1, record, NOW)
    assert [key for key, _ in outbox.on(VALIDATED["city"])] == [b"HD-AQ-017", b"HD-AQ-2"]
    [(key, value)] = outbox.on(DEADLETTER)
    letter = DeadLetter.model_validate_json(value)
    assert key == b"gateway-7" and letter.key == "gateway-7"
    assert (letter.stage, letter.family) == ("ingest", "city")
    assert (letter.source_topic, letter.partition, letter.offset, letter.element) == (
        "ioc.city.observations", 1, 41, 1)  # fmt: skip
    assert letter.reason == "[1] pm25: concentration must not be negative (got -3.0)"
    assert orjson.loads(letter.original()) == air_quality(pm25=-3)
    assert counted(metrics, "ioc_ingest_events_rejected_total", family="city", error="schema") == 1


async def test_duplicate_event_ids_are_dropped(outbox, metrics):
    stage = ingestor("services", metrics, outbox)
    for event_id in ("e-1", "e-1", "e-1", "e-2"):
        raw = orjson.dumps(dossier(event_id=event_id))
        await stage.ingest(SOURCE["services"], 0, Record(raw), NOW)
    assert len(outbox.on(VALIDATED["services"])) == 2
    assert counted(metrics, "ioc_ingest_duplicates_dropped_total", family="services") == 2


async def test_keeps_going_after_random_garbage(outbox, metrics):
    generator = random.Random(2026)
    stage = ingestor("security", metrics, outbox)
    for offset in range(1000):
        garbage = generator.randbytes(generator.randint(0, 300))
        await stage.ingest(SOURCE["security"], 0, Record(garbage, offset=offset), NOW)
    await stage.ingest(SOURCE["security"], 0, Record(orjson.dumps(auth_failure())), NOW)
    assert len(outbox.on(DEADLETTER)) == 1000
    assert len(outbox.on(VALIDATED["security"])) == 1
    assert counted(metrics, "ioc_ingest_messages_total", family="security") == 1001


async def test_a_bug_below_the_stage_is_not_swallowed(metrics):
    class BrokenOutbox:
        async def send(self, topic, key, value, partition=None, headers=None):
            raise RuntimeError("bug")

    stage = Ingestor("city", IngestSettings(), metrics, BrokenOutbox())
    with pytest.raises(RuntimeError, match="bug"):
        await stage.ingest(SOURCE["city"], 0, Record(orjson.dumps(air_quality())), NOW)


async def test_a_tombstone_is_dead_lettered_not_a_crash(outbox, metrics):
    await ingestor("city", metrics, outbox).ingest(SOURCE["city"], 0, Record(None, b"k"), NOW)  # type: ignore[arg-type]
    [(key, value)] = outbox.on(DEADLETTER)
    letter = DeadLetter.model_validate_json(value)
    assert key == b"k" and letter.raw == "" and letter.error == "json"
    assert letter.reason == "message has no value (a tombstone)"


async def test_each_validated_event_carries_its_lineage(outbox, metrics):
    first = air_quality(refDevice="HD-AQ-001", id="urn:lineage:1")
    second = air_quality(refDevice="HD-AQ-002", id="urn:lineage:2")
    raw = orjson.dumps([first, second])
    await ingestor("city", metrics, outbox).ingest(SOURCE["city"], 4, Record(raw, offset=91), NOW)
    marks = [lineage.read(headers) for headers in outbox.headers]
    assert marks == [("4", (91, 0)), ("4", (91, 1))]  # source partition, offset, element
