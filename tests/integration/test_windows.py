"""The window stage through Kafka: results, idle close, and a SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from models.aggregates import load_aggregates
from streams.core.ingest import process_message
from streams.core.windows import WindowEngine
from streams.worker.settings import IngestSettings
from streams.worker.topics import AGGREGATES, SOURCE, VALIDATED
from tests.conftest import air_quality
from tests.integration.conftest import BROKERS, Worker, consume, produce, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGGREGATES_YAML = """
aggregates:
  - name: pm25_5m
    family: city
    filter: {type: AirQualityObserved}
    group_by: [refDevice]
    values: [pm25]
    statistics: [count, sum, min, max, mean, last]
    window: {size: 5m, grace: 10s}
  - name: pm25_1m
    family: city
    filter: {type: AirQualityObserved}
    group_by: [refDevice]
    values: [pm25]
    statistics: [count, mean]
    window: {size: 1m, grace: 5s}
  - name: pm25_15m_hopping
    family: city
    filter: {type: AirQualityObserved}
    group_by: [refDevice]
    values: [pm25]
    statistics: [count, max, distinct]
    window: {size: 15m, step: 5m, grace: 10s}
"""


def validated_readings(
    start: datetime, stations: int, per_station: int
) -> list[tuple[bytes, bytes]]:
    """Validated city events as ingest produces them: one reading a minute per station."""
    out = []
    for minute in range(per_station):
        for station in range(stations):
            when = start + timedelta(minutes=minute, seconds=station)
            event = air_quality(
                refDevice=f"AQ-{station:03d}", id=f"r-{station}-{minute}",
                dateObserved=when.isoformat(), pm25=float((station * 7 + minute * 3) % 90),
            )  # fmt: skip
            [accepted] = process_message(
                "city", orjson.dumps(event), IngestSettings(), when + timedelta(minutes=1)
            ).accepted
            assert accepted.key is not None
            out.append((accepted.key, accepted.value))
    return out


async def expected_finals(bootstrap: str, aggregates_path: Path, count: int) -> dict[bytes, dict]:
    """The finals an uninterrupted engine gives for the records exactly as Kafka
    ordered them: the windows their event times close (not the wall clock)."""
    records = await consume(
        bootstrap, VALIDATED["city"], lambda r: True, until=lambda kept: len(kept) >= count
    )
    engine = WindowEngine(load_aggregates(aggregates_path), allowed_lateness_ms=5000)
    finals = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        finals += engine.process(
            f"{record.topic}:{record.partition}", orjson.loads(record.value), 0
        )
    return {r.identity.encode(): orjson.loads(r.to_json()) for r in finals if r.final}


def comparable(result: dict) -> tuple:
    return result["count"], sorted(result["statistics"].items())


async def finals_on_kafka(bootstrap: str, identities: set[bytes], timeout: float) -> dict:
    records = await consume(
        bootstrap,
        AGGREGATES,
        lambda r: r.key in identities and orjson.loads(r.value)["final"],
        until=lambda kept: {r.key for r in kept} >= identities,
        timeout=timeout,
    )
    return {r.key: orjson.loads(r.value) for r in records}


@pytest.mark.skipif("apache" not in BROKERS, reason="needs Apache Kafka (IOC_TEST_BROKER)")
@pytest.mark.parametrize("store", ["memory", "rocksdb"])
async def test_sigkill_mid_stream_gives_the_same_final_results(tmp_path, store):
    aggregates_path = tmp_path / "aggregates.yaml"
    aggregates_path.write_text(AGGREGATES_YAML)
    broker = start_broker("apache", tmp_path)
    env = {
        "IOC_WINDOWS__STORE": store,  # RocksDB spills are rebuilt from the changelog too
        "IOC_WINDOWS__AGGREGATES": str(aggregates_path),
        "IOC_WINDOWS__IDLE_TIMEOUT_S": "600",  # only event time closes windows here
        "IOC_WINDOWS__ALLOWED_LATENESS_S": "5",
    }
    worker = Worker(broker.bootstrap, tmp_path, **env).start()
    try:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
        readings = validated_readings(start, stations=40, per_station=90)  # 3,600 events
        half = len(readings) // 2
        await produce(broker.bootstrap, VALIDATED["city"], readings[:half])
        await asyncio.sleep(3)  # let it process and checkpoint part of the stream
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        await produce(broker.bootstrap, VALIDATED["city"], readings[half:])
        worker.start()

        expected = await expected_finals(broker.bootstrap, aggregates_path, len(readings))
        assert len(expected) > 100
        actual = await finals_on_kafka(broker.bootstrap, set(expected), timeout=120)
        assert set(actual) == set(expected)
        assert {k: comparable(v) for k, v in actual.items()} == {
            k: comparable(v) for k, v in expected.items()
        }
    finally:
        worker.stop()
        broker.stop()


# A broker of its own: on the session broker, the session's other workers would
# ingest the reading too, into the same validated topic.
@pytest.mark.parametrize("kind", BROKERS)
async def test_a_silent_key_still_gets_its_final_window(kind, tmp_path, unique):
    aggregates_path = tmp_path / "aggregates.yaml"
    aggregates_path.write_text(AGGREGATES_YAML)
    env = {
        "IOC_WINDOWS__AGGREGATES": str(aggregates_path),
        "IOC_INGEST__IDLE_TIMEOUT_S": "2",
        "IOC_WINDOWS__ALLOWED_LATENESS_S": "5",
    }
    broker = start_broker(kind, tmp_path)
    bootstrap = broker.bootstrap
    worker = Worker(bootstrap, tmp_path, **env).start()
    try:
        # One reading now, then silence. Once its source partition is caught up and
        # idle, only the wall clock moves its frontier, and with it the watermark past
        # the window's end + grace (at most 60 + 5 + 5 + 2 s from now).
        event = air_quality(
            refDevice=f"AQ-{unique}",
            id=f"silent-{unique}",
            dateObserved=datetime.now(UTC).isoformat(),
            pm25=42.0,
        )
        await produce(bootstrap, SOURCE["city"], [(None, orjson.dumps(event))])
        [record] = await consume(
            bootstrap,
            AGGREGATES,
            lambda r: (
                r.key.startswith(f"pm25_1m|AQ-{unique}".encode()) and orjson.loads(r.value)["final"]
            ),
            until=bool,
            timeout=150,
        )
        result = orjson.loads(record.value)
        assert result["count"] == 1 and result["statistics"]["pm25_mean"] == 42.0
    finally:
        worker.stop()
        broker.stop()
