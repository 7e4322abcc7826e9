"""The rule stage across a SIGKILL: its detector state comes back from the changelog,
so every alert fires exactly once, at the same event as without the crash.

Validated security events are produced straight to `ioc.security.validated`, keyed by
`source.ip` as ingest keys them: each address's events stay on one partition, in event
time order, all the way to the rule stage, so the event that crosses a threshold is
known exactly. The allowed lateness is longer than the stream, so that no input
is ever behind its partition's watermark: the router interleaves addresses in chunks
(one validated partition's batch, then the next), and an input behind the watermark
is stamped with the watermark instead of its own time.

The worker is killed at rest, once the router has committed the first part and the
rule stage has checkpointed every input of it; then the rest is produced and the
worker restarted under the same app id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.alerts import Alert
from models.rulefile import load_rules
from streams.core.ingest import process_message
from streams.core.progress import is_progress
from streams.core.rules.engine import PENDING, RuleEngine
from streams.core.rules.plan import RuleInput
from streams.core.windows import default_aggregates
from streams.worker import topics
from streams.worker.changelog import read_to_end, replay
from streams.worker.kafka import client_options
from streams.worker.settings import IngestSettings, KafkaSettings
from streams.worker.stages.rules import route_table, summing_rules
from streams.worker.topics import ALERTS, VALIDATED
from tests.conftest import auth_failure
from tests.integration.conftest import BROKERS, Worker, consume, produce, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT_GTE = 50
DISTINCT_GTE = 8
LATENESS_S = 300  # more than the 80 s of event time the stream spans
RULES_YAML = f"""
rules:
  - name: rr_brute_force
    kind: count
    family: security
    filter: {{event.category: authentication, event.outcome: failure}}
    group_by: [source.ip]
    window: 10m
    gte: {COUNT_GTE}
    keep_firing_for: 0s
    summary: {{vi: "Dò mật khẩu từ {{source.ip}}", en: "Brute force from {{source.ip}}"}}
  - name: rr_spraying
    kind: distinct
    family: security
    filter: {{event.category: authentication, event.outcome: failure}}
    group_by: [source.ip]
    field: user.name
    window: 10m
    gte: {DISTINCT_GTE}
    keep_firing_for: 0s
    summary: {{vi: "Dò nhiều tài khoản từ {{source.ip}}", en: "Spraying from {{source.ip}}"}}
"""

#: Per address: failures before the kill, failures after it. Event n of an address
#: tries user `u{n // 6}`, so the 8th distinct user is first tried at n = 42.
PLAN: dict[str, tuple[int, int]] = {
    "198.18.0.1": (60, 20),  # both rules fire before the kill, never again after
    "198.18.0.2": (30, 30),  # both rules fire only with events from both sides of the kill
    "198.18.0.3": (30, 30),
    "198.18.0.4": (30, 30),
    "198.18.0.5": (49, 1),  # the count fires at the first event after the kill
    "198.18.0.6": (30, 10),  # 40 failures, 7 users: neither rule ever fires
    "198.18.0.7": (49, 0),  # 49 failures: the count never fires, the distinct does before
    "198.18.0.8": (0, 60),  # everything after the kill
}
Messages = list[tuple[bytes | None, bytes]]  # (key, value) as produce() takes them
CROSSING = ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"]
FIRST_DISTINCT_AT = 6 * (DISTINCT_GTE - 1)  # n of the first event with the 8th user


def event_ms(start_ms: int, ip_index: int, n: int) -> int:
    return start_ms + n * 1000 + ip_index * 10  # distinct times, one failure a second


def failures(start: datetime) -> tuple[Messages, Messages]:
    """(before, after): validated events as ingest writes them, round-robin over the
    addresses, each address in event-time order."""
    start_ms = int(start.timestamp() * 1000)
    now = start + timedelta(hours=1)
    before: Messages = []
    after: Messages = []
    longest = max(b + a for b, a in PLAN.values())
    for n in range(longest):
        for index, (ip, (n_before, n_after)) in enumerate(PLAN.items()):
            if n >= n_before + n_after:
                continue
            at = datetime.fromtimestamp(event_ms(start_ms, index, n) / 1000, UTC)
            event = auth_failure(**{"@timestamp": at.isoformat(), "source": {"ip": ip}})
            event["user"] = {"name": f"u{n // 6}"}
            event["event"] = {**event["event"], "id": f"{ip}#{n}"}
            [accepted] = process_message(
                "security", orjson.dumps(event), IngestSettings(), now
            ).accepted
            assert accepted.key == ip.encode()
            (before if n < n_before else after).append((accepted.key, accepted.value))
    return before, after


def rule_inputs(messages: Messages, rules: list[Any]) -> list[RuleInput]:
    table = route_table(rules, default_aggregates())
    return [
        RuleInput.from_json(item.to_json())
        for _, value in messages
        for item in table.event_inputs("security", orjson.loads(value))
    ]


def reference_alerts(inputs: list[RuleInput], rules: list[Any]) -> list[Alert]:
    """What an uninterrupted engine gives for the same inputs. One engine is enough:
    the groups are independent and every event stays inside its window."""
    engine = RuleEngine(
        rules, summing_rules(rules, default_aggregates()), allowed_lateness_ms=LATENESS_S * 1000,
        idle_timeout_ms=600_000,
    )  # fmt: skip
    out: list[Alert] = []
    for item in inputs:
        alerts = engine.process(item, 0)
        assert isinstance(alerts, list), alerts  # nothing here is late
        out += alerts
    return out


async def checkpoints(bootstrap: str, app_id: str) -> dict[int, tuple[int | None, dict]]:
    """Per partition of the rule stage's changelog: (rule inputs before the input
    offset it saved, state items). Progress records between the inputs are not
    counted."""
    options = client_options(KafkaSettings(bootstrap=bootstrap))
    changelog = topics.changelog(app_id, "rules")
    inputs = topics.rule_inputs(app_id)
    out = {}
    for partition in range(KafkaSettings().partitions):
        recovered = replay(inputs, await read_to_end(options, changelog, partition))
        if recovered.offset is None:
            out[partition] = (None, recovered.items)
            continue
        records = await read_records(options, inputs, partition, recovered.offset)
        routed = sum(1 for r in records if not is_progress(r.headers))
        out[partition] = (routed, recovered.items)
    return out


async def read_records(options: dict, topic: str, partition: int, end: int) -> list:
    """The records of one partition before offset `end`."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        records: list = []
        while (records[-1].offset + 1 if records else 0) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            records += [r for r in batches.get(tp, []) if r.offset < end]
        return records
    finally:
        await consumer.stop()


async def wait_for_checkpoint(bootstrap: str, app_id: str, inputs: int, timeout: float) -> dict:
    """Until the rule stage has checkpointed its state after exactly `inputs` inputs,
    none of them still waiting for its turn (streams.core.rules.engine)."""
    deadline = time.monotonic() + timeout
    while True:
        saved = await checkpoints(bootstrap, app_id)
        done = sum(offset or 0 for offset, _ in saved.values())
        assert done <= inputs, f"{done} rule inputs checkpointed, only {inputs} routed"
        waiting = [p for p, (_, items) in saved.items() if items.get(PENDING, b"{}") != b"{}"]
        if done == inputs and not waiting:
            return saved
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {inputs} rule inputs checkpointed in {timeout} s")
        await asyncio.sleep(0.5)


async def wait_for_router_commit(
    bootstrap: str, app_id: str, ends: dict[int, int], timeout: float
) -> None:
    """Until the router's group has committed every validated record produced, so that
    a restart does not route any of them again."""
    # A consumer of the router's group that only reads its commits (manual assignment:
    # it never joins the group). Tansu's OffsetFetch answer to the admin client does
    # not decode; the consumer's request version does.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"{app_id}-rules-route", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(VALIDATED["security"], p) for p in ends]
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout
        while True:
            offsets = {tp.partition: await consumer.committed(tp) for tp in partitions}
            if all((offsets[p] or 0) >= end for p, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"router committed {offsets}, produced up to {ends}")
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


def counted_before_kill(saved: dict) -> dict[str, int]:
    """Failures per address that the checkpointed count detector holds (at most gte):
    one changelog record per group, `rr_brute_force/<group>`."""
    counted: dict[str, int] = {}
    for _, items in saved.values():
        for key, payload in items.items():
            if not key.startswith("rr_brute_force/"):
                continue
            doc = orjson.loads(payload)
            if doc["detector"] is None:
                continue
            _due, _seq, (_active, _latest, events) = doc["detector"]
            counted[doc["group"][0]] = len(events)
    return counted


@pytest.mark.parametrize("kind", ["apache", "tansu"])
async def test_sigkill_in_the_rule_stage_loses_and_repeats_no_alert(tmp_path: Path, kind: str):
    if kind not in BROKERS:
        pytest.skip(f"needs the {kind} broker (IOC_TEST_BROKER)")
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(RULES_YAML)
    rules = load_rules(rules_path, default_aggregates())
    broker = start_broker(kind, tmp_path)
    env = {
        "IOC_RULES__RULES": str(rules_path),
        "IOC_RULES__IDLE_TIMEOUT_S": "600",  # only event time moves the rules here
        # Written straight to the validated topic: no progress comes, and the router
        # holds the rules back for this long before it calls its partitions idle.
        "IOC_INGEST__IDLE_TIMEOUT_S": "2",
        "IOC_RULES__ALLOWED_LATENESS_S": str(LATENESS_S),
    }
    worker = Worker(broker.bootstrap, tmp_path, **env).start()
    try:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        start_ms = int(start.timestamp() * 1000)
        before, after = failures(start)
        inputs_before, inputs_after = rule_inputs(before, rules), rule_inputs(after, rules)

        # Part one, then the kill once it is routed, committed and checkpointed.
        placed = await produce(broker.bootstrap, VALIDATED["security"], before)
        ends: dict[int, int] = {}
        for partition, offset in placed:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        saved = await wait_for_checkpoint(
            broker.bootstrap, worker.app_id, len(inputs_before), timeout=120
        )
        await wait_for_router_commit(broker.bootstrap, worker.app_id, ends, timeout=30)
        counted = counted_before_kill(saved)
        for ip in CROSSING:
            assert counted[ip] == PLAN[ip][0] < COUNT_GTE  # state to recover, below threshold
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()

        # Part two, to a worker that must carry on from the checkpoint.
        await produce(broker.bootstrap, VALIDATED["security"], after)
        killed_at = time.monotonic()
        worker.start()
        await wait_for_checkpoint(
            broker.bootstrap, worker.app_id, len(inputs_before) + len(inputs_after), timeout=120
        )
        recovered_in = time.monotonic() - killed_at

        # Expected: by hand for the count rule, and the uninterrupted engine for both.
        expected = reference_alerts(inputs_before + inputs_after, rules)
        assert {a.state for a in expected} == {"firing"}
        identities = {a.identity for a in expected}
        ips = set(PLAN)
        records = await consume(
            broker.bootstrap,
            ALERTS,
            lambda r: Alert.from_json(r.value).labels.get("source.ip") in ips,
            until=lambda kept: {Alert.from_json(r.value).identity for r in kept} >= identities,
            timeout=60,
        )
        alerts = [Alert.from_json(r.value) for r in records]
        raw = Counter(a.identity for a in alerts)
        report = (
            f"{kind}: {len(alerts)} alert records, {len(raw)} identities, "
            f"repeated {sorted(i for i, n in raw.items() if n > 1)}; "
            f"recovered and caught up {recovered_in:.1f} s after the kill"
        )
        print(report)

        # Nothing lost, nothing extra: the same identities and states as without a crash.
        assert set(raw) == identities, report
        by_identity = {a.identity: a for a in alerts}
        assert {i: (a.state, a.evidence.count) for i, a in by_identity.items()} == {
            a.identity: (a.state, a.evidence.count) for a in expected
        }
        # A firing alert is written once per fingerprint (a replayed copy would carry the
        # same identity and only overwrite; none is expected after a kill at rest).
        firing = Counter((a.rule, a.labels["source.ip"]) for a in alerts if a.state == "firing")
        assert all(n == 1 for n in firing.values()), firing

        count_fired = {
            a.labels["source.ip"]: a for a in by_identity.values() if a.rule == "rr_brute_force"
        }
        distinct_fired = {
            a.labels["source.ip"]: a for a in by_identity.values() if a.rule == "rr_spraying"
        }
        assert set(count_fired) == {ip for ip, (b, a) in PLAN.items() if b + a >= COUNT_GTE}
        assert set(distinct_fired) == {
            ip for ip, (b, a) in PLAN.items() if b + a > FIRST_DISTINCT_AT
        }
        for ip, alert in count_fired.items():
            index = list(PLAN).index(ip)
            # At the threshold-th failure in event time, with its id among the evidence.
            assert alert.starts_at_ms == event_ms(start_ms, index, COUNT_GTE - 1), ip
            assert alert.evidence.count == COUNT_GTE
            assert alert.evidence.event_ids == tuple(
                f"{ip}#{n}" for n in range(COUNT_GTE - 10, COUNT_GTE)
            )
        for ip, alert in distinct_fired.items():
            index = list(PLAN).index(ip)
            assert alert.starts_at_ms == event_ms(start_ms, index, FIRST_DISTINCT_AT), ip
            assert alert.evidence.count == DISTINCT_GTE
        # These crossed their thresholds only by adding events from after the kill to the
        # recovered ones: without the checkpointed state they could not have fired.
        for ip in CROSSING:
            assert ip in count_fired
            assert PLAN[ip][0] < COUNT_GTE and PLAN[ip][1] < COUNT_GTE
    finally:
        worker.stop()
        broker.stop()
