"""The hourly VN_AQI (`aqi_station_1h`) through Kafka, across a SIGKILLed worker."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from streams.core.ingest import process_message
from streams.worker.settings import IngestSettings
from streams.worker.topics import AGGREGATES, VALIDATED
from tests.conftest import air_quality
from tests.integration.conftest import BROKERS, Worker, consume, produce, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATION = "HD-AQ-901"
#: PM2.5 per hour (µg/m³); PM10 stays at 100 and NO2 at 50.
PM25 = [30.0, 50.0, 40.0, 40.0]


def readings(start: datetime, hours: range) -> list[tuple[bytes, bytes]]:
    """Validated readings as ingest produces them, one every 10 minutes."""
    out = []
    for hour in hours:
        for minute in range(0, 60, 10):
            when = start + timedelta(hours=hour, minutes=minute)
            event = air_quality(
                refDevice=STATION, id=f"{STATION}-{hour}-{minute}", dateObserved=when.isoformat(),
                pm25=PM25[hour] if hour < len(PM25) else 40.0, pm10=100.0, no2=50.0,
            )  # fmt: skip
            [accepted] = process_message(
                "city", orjson.dumps(event), IngestSettings(), when + timedelta(minutes=1)
            ).accepted
            assert accepted.key is not None
            out.append((accepted.key, accepted.value))
    return out


async def aqi_records(bootstrap: str, hours: int) -> dict[int, dict]:
    prefix = f"aqi_station_1h|{STATION}|".encode()
    records = await consume(
        bootstrap,
        AGGREGATES,
        lambda r: r.key.startswith(prefix),
        until=lambda kept: len({r.key for r in kept}) >= hours,
        timeout=90,
    )
    return {orjson.loads(r.value)["window_start_ms"]: orjson.loads(r.value) for r in records}


# A broker of its own: the station's readings are hours old, and a session broker's
# validated topic already holds recent events of the same partitions, after which a
# new worker (reading from the earliest offset) would find them late.
@pytest.mark.parametrize("kind", BROKERS)
async def test_hourly_aqi_with_nowcast_history_kept_across_a_sigkill(kind, tmp_path):
    broker = start_broker(kind, tmp_path)
    env = {"IOC_WINDOWS__IDLE_TIMEOUT_S": "600", "IOC_WINDOWS__ALLOWED_LATENESS_S": "5"}
    worker = Worker(broker.bootstrap, tmp_path, **env).start()
    try:
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
        ms = int(start.timestamp() * 1000)
        h = 3_600_000
        # Hours 0–2, and hour 3's readings close hour 2 (end + 5 min grace + 5 s).
        await produce(broker.bootstrap, VALIDATED["city"], readings(start, range(4)))
        before = await aqi_records(broker.bootstrap, 3)
        assert before[ms]["statistics"]["aqi"] is None  # one hour: no NowCast
        # Latest first 50, 30: w* = 0.6; (50 + 0.6·30)/1.6 = 42.5 → 50 + 2·17.5 = 85
        assert before[ms + h]["statistics"]["aqi"] == 85
        # 40, 50, 30: (40 + 0.6·50 + 0.36·30)/1.96 = 41.22 → 50 + 2·16.22 = 82.4 → 82
        assert before[ms + 2 * h]["statistics"]["aqi"] == 82

        # Let a checkpoint (every second) save the history, then kill the worker.
        await consume(broker.bootstrap, AGGREGATES, lambda r: False, until=bool, timeout=3)
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        worker.start()
        await produce(broker.bootstrap, VALIDATED["city"], readings(start, range(4, 5)))

        after = await aqi_records(broker.bootstrap, 4)
        fourth = after[ms + 3 * h]
        # Needs the hours from before the kill: 40, 40, 50, 30 latest first, w* = 0.6:
        # (40 + 0.6·40 + 0.36·50 + 0.216·30)/2.176 = 88.48/2.176 = 40.66 → 81.3 → 81
        assert fourth["statistics"]["aqi"] == 81
        assert fourth["statistics"]["aqi_pm10"] == 75  # 50 + (100 − 50)/2
        assert fourth["statistics"]["aqi_no2"] == 25  # 50/100 · 50
        assert fourth["count"] == 6 and fourth["final"]
        assert {k: v["statistics"] for k, v in after.items() if k < ms + 3 * h} == {
            k: v["statistics"] for k, v in before.items()
        }
    finally:
        worker.stop()
        broker.stop()
