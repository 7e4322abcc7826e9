"""The ingest agents through Faust's test_context: no broker, a memory outbox."""

from __future__ import annotations

import random

import orjson
import pytest

from models.deadletter import DeadLetter
from streams.app import create_app
from streams.ingest import process_message
from streams.metrics import Metrics
from streams.outbox import MemoryOutbox
from streams.settings import IngestSettings, Settings
from streams.topics import DEADLETTER, VALIDATED
from tests.conftest import NOW, air_quality, auth_failure, dossier


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def app(outbox, metrics, tmp_path):
    app = create_app(Settings(data_dir=tmp_path), metrics=metrics, outbox=outbox)
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_valid_events_of_each_family_reach_the_next_stage(app, outbox, metrics):
    for family, event in (
        ("city", air_quality()),
        ("services", dossier()),
        ("security", auth_failure()),
    ):
        async with app.agents[f"ingest_{family}"].test_context() as agent:
            await agent.put(orjson.dumps(event), key=b"any")
        [(_key, value)] = outbox.on(VALIDATED[family])
        assert orjson.loads(value) == orjson.loads(
            process_message(family, orjson.dumps(event), IngestSettings(), NOW).accepted[0].value
        )
        assert counted(metrics, "ioc_ingest_events_accepted_total", family=family) == 1
    assert outbox.on(DEADLETTER) == []
    assert [key for key, _ in outbox.on(VALIDATED["security"])] == [b"203.0.113.7"]


async def test_array_with_one_bad_element(app, outbox, metrics):
    second = air_quality(refDevice="HD-AQ-2", id="urn:2")
    raw = orjson.dumps([air_quality(), air_quality(pm25=-3), second])
    async with app.agents["ingest_city"].test_context() as agent:
        await agent.put(raw, key=b"gateway-7", partition=1)
    assert [key for key, _ in outbox.on(VALIDATED["city"])] == [b"HD-AQ-017", b"HD-AQ-2"]
    [(key, value)] = outbox.on(DEADLETTER)
    record = DeadLetter.model_validate_json(value)
    assert key == b"gateway-7" and record.key == "gateway-7"
    assert (record.source_topic, record.partition, record.element) == (
        "ioc.city.observations",
        1,
        1,
    )
    assert record.reason == "[1] pm25: concentration must not be negative (got -3.0)"
    assert orjson.loads(record.original()) == air_quality(pm25=-3)
    assert counted(metrics, "ioc_ingest_events_rejected_total", family="city", error="schema") == 1


async def test_duplicate_event_ids_are_dropped(app, outbox, metrics):
    async with app.agents["ingest_services"].test_context() as agent:
        for _ in range(3):
            await agent.put(orjson.dumps(dossier()))
        await agent.put(orjson.dumps(dossier(event_id="e-7782")))
    assert len(outbox.on(VALIDATED["services"])) == 2
    assert counted(metrics, "ioc_ingest_duplicates_dropped_total", family="services") == 2


async def test_agent_keeps_going_after_random_garbage(app, outbox, metrics):
    generator = random.Random(2026)
    async with app.agents["ingest_security"].test_context() as agent:
        for _ in range(1000):
            await agent.put(generator.randbytes(generator.randint(0, 300)))
        await agent.put(orjson.dumps(auth_failure()))
    assert len(outbox.on(DEADLETTER)) == 1000
    assert len(outbox.on(VALIDATED["security"])) == 1
    assert counted(metrics, "ioc_ingest_messages_total", family="security") == 1001


async def test_a_bug_in_the_stage_crashes_loudly(app, metrics):
    class BrokenOutbox:
        async def send(self, topic, key, value):
            raise RuntimeError("bug")

    broken = create_app(Settings(), metrics=Metrics(), outbox=BrokenOutbox())
    broken.finalize()
    broken.conf.store = "memory://"
    broken.flow_control.resume()
    with pytest.raises(RuntimeError, match="bug"):
        async with broken.agents["ingest_city"].test_context() as agent:
            await agent.put(orjson.dumps(air_quality()))
