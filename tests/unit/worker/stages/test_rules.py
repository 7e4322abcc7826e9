"""The rule router and the rule stage dead-letter what is not theirs and go on."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from models.aggregates import default_aggregates
from models.deadletter import DeadLetter
from models.rulefile import default_rules
from streams.core import lineage
from streams.core.ingest import process_message
from streams.core.progress import NEVER, Heartbeat
from streams.core.rules.plan import RuleInput
from streams.worker import topics
from streams.worker.metrics import Metrics
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import IngestSettings, Settings
from streams.worker.stages.rules import RuleRouter, RuleStage
from streams.worker.topics import AGGREGATES, DEADLETTER, VALIDATED
from tests.conftest import NOW, auth_failure

SETTINGS = Settings(_env_file=None)
AGGREGATES_PACK = default_aggregates()
RULES = default_rules(AGGREGATES_PACK)


@dataclass
class Record:
    topic: str
    value: bytes | None
    offset: int
    key: bytes | None = b"k"
    partition: int = 1
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


def letters(outbox: MemoryOutbox) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(value) for _, value in outbox.on(DEADLETTER)]


async def test_the_router_dead_letters_foreign_records_naming_itself_and_what_they_were():
    router = RuleRouter(SETTINGS, Metrics(), RULES, AGGREGATES_PACK)
    router._outbox = outbox = MemoryOutbox()  # type: ignore[assignment]
    security = TopicPartition(VALIDATED["security"], 1)
    finals = TopicPartition(AGGREGATES, 1)
    await router.handle(
        security, [Record(security.topic, None, 0), Record(security.topic, b"[1]", 1)], 0
    )
    await router.handle(finals, [Record(finals.topic, b"{not json", 7)], 0)
    got = [(d.stage, d.family, d.source_topic, d.offset, d.error) for d in letters(outbox)]
    assert got == [
        ("rules-route", "security", security.topic, 0, "schema"),
        ("rules-route", "security", security.topic, 1, "schema"),
        ("rules-route", "aggregates", AGGREGATES, 7, "schema"),
    ]
    assert outbox.on(topics.rule_inputs(SETTINGS.app_id)) == []


async def test_the_rule_stage_dead_letters_what_is_not_a_rule_input():
    stage = RuleStage(SETTINGS, Metrics(), RULES, AGGREGATES_PACK)
    stage._outbox = outbox = MemoryOutbox()  # type: ignore[assignment]
    inputs = TopicPartition(topics.rule_inputs(SETTINGS.app_id), 1)
    stage.engines[inputs] = stage._engine()
    foreign = [orjson.dumps({"rule": "no-such-rule"}), b"\xff", orjson.dumps([])]
    await stage.handle(inputs, [Record(inputs.topic, v, n) for n, v in enumerate(foreign)], 0)
    got = letters(outbox)
    assert [(d.stage, d.family, d.offset) for d in got] == [("rules", "rules", n) for n in range(3)]
    assert all(d.reason.startswith("not a rule input: ") for d in got)
    assert outbox.on(topics.ALERTS) == []


async def test_the_router_announces_its_partitions_before_routing_and_idles_unheard_ones():
    router = RuleRouter(SETTINGS, Metrics(), RULES, AGGREGATES_PACK)
    router._outbox = outbox = MemoryOutbox()  # type: ignore[assignment]
    security, finals = TopicPartition(VALIDATED["security"], 1), TopicPartition(AGGREGATES, 1)
    await router.on_assigned([security, finals])
    sent = [f for _, frontiers in outbox.progress for f in frontiers]
    assert {(f.kind, f.feed) for f in sent} >= {
        ("events", "security"),
        ("aggregates", "aqi_station_1h"),
    }
    assert all(f.frontier_ms == NEVER and not f.idle for f in sent)
    assert "case_backlog" not in {f.feed for f in sent}  # the case stage sends no progress
    # A partition no progress comes from (a foreign producer) holds nothing back for long.
    router._assigned_at = {tp: 0.0 for tp in router._assigned_at}
    router._heartbeat = Heartbeat()
    outbox.progress.clear()
    await router.send_progress()
    assert all(f.idle for _, frontiers in outbox.progress for f in frontiers)


async def test_rule_inputs_ingest_or_the_router_produced_again_count_once():
    router = RuleRouter(SETTINGS, Metrics(), RULES, AGGREGATES_PACK)
    router._outbox = routed = MemoryOutbox()  # type: ignore[assignment]
    security = TopicPartition(VALIDATED["security"], 2)
    failure = process_message(
        "security", orjson.dumps(auth_failure()), IngestSettings(), NOW
    ).accepted[0]
    validated = Record(security.topic, failure.value, 40, headers=tuple(lineage.header(5, 9, 0)))
    await router.handle(security, [validated], 0)
    # Ingest sent it again after a crash (a new offset), the router routed both.
    await router.handle(
        security, [Record(security.topic, failure.value, 41, headers=validated.headers)], 0
    )
    sent = [
        (value, headers)
        for (topic, _, value), headers in zip(routed.sent, routed.headers, strict=True)
        if topic == topics.rule_inputs(SETTINGS.app_id)
    ]
    assert sent and lineage.read(sent[0][1])[0] == "security/5>2"  # type: ignore[index]
    stage = RuleStage(SETTINGS, Metrics(), RULES, AGGREGATES_PACK)
    stage._outbox = MemoryOutbox()  # type: ignore[assignment]
    inputs = TopicPartition(topics.rule_inputs(SETTINGS.app_id), 1)
    stage.engines[inputs] = engine = stage._engine()
    records = [
        Record(inputs.topic, value, n, headers=tuple(headers))  # type: ignore[arg-type]
        for n, (value, headers) in enumerate(sent)
    ]
    await stage.handle(inputs, records, 0)
    assert len(records) == 2 * (len(records) // 2)
    applied = sum(len(e.detector.snapshot()) for e in engine.evaluators.values())
    once = stage._engine()
    for record in records[: len(records) // 2]:
        once.process(RuleInput.from_json(record.value), 0)
    assert applied == sum(len(e.detector.snapshot()) for e in once.evaluators.values())
    assert (
        stage.metrics.registry.get_sample_value("ioc_replayed_events_total", {"stage": "rules"})
        == len(records) // 2
    )
