"""What only a durable broker can show: a broker restart under a running worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from streams.worker.topics import AGGREGATES, SOURCE, VALIDATED
from tests.conftest import air_quality
from tests.integration.conftest import BROKERS, Worker, consume, produce, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = 7
# One aggregate, closed by event time only: the window's count must add up the
# readings from before and after the restart, each exactly once.
AGGREGATES_YAML = """
aggregates:
  - name: restart_count_1m
    family: city
    filter: {type: AirQualityObserved}
    group_by: [refDevice]
    values: [pm25]
    statistics: [count, sum]
    window: {size: 1m, grace: 5s}
"""


def reading(device: str, event_id: str, when: datetime) -> tuple[bytes | None, bytes]:
    event = air_quality(refDevice=device, id=event_id, dateObserved=when.isoformat(), pm25=1.0)
    return None, orjson.dumps(event)


def readings(
    unique: str, phase: str, count: int, minute: datetime
) -> list[tuple[bytes | None, bytes]]:
    return [
        reading(
            f"{unique}-{n % DEVICES}", f"{phase}-{unique}-{n}", minute + timedelta(seconds=n / 10)
        )
        for n in range(count)
    ]


def ids_in(records: list) -> set[str]:
    return {orjson.loads(record.value)["id"] for record in records}


@pytest.mark.skipif("apache" not in BROKERS, reason="needs Apache Kafka (IOC_TEST_BROKER)")
async def test_worker_reconnects_after_a_broker_restart_and_loses_nothing(tmp_path, unique):
    aggregates = tmp_path / "aggregates.yaml"
    aggregates.write_text(AGGREGATES_YAML)
    broker = start_broker("apache", tmp_path)
    worker = Worker(
        broker.bootstrap, tmp_path,
        IOC_WINDOWS__AGGREGATES=str(aggregates), IOC_WINDOWS__IDLE_TIMEOUT_S="600",
    ).start()  # fmt: skip
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    try:
        mine = lambda record: unique.encode() in (record.key or b"")  # noqa: E731
        await produce(broker.bootstrap, SOURCE["city"], readings(unique, "before", 200, minute))
        before = await consume(
            broker.bootstrap, VALIDATED["city"], mine, until=lambda kept: len(ids_in(kept)) >= 200
        )
        assert len(ids_in(before)) == 200

        broker.stop(remove_data=False)  # type: ignore[call-arg]
        broker.start()

        later = minute + timedelta(seconds=30)
        await produce(broker.bootstrap, SOURCE["city"], readings(unique, "after", 200, later))
        every = await consume(
            broker.bootstrap,
            VALIDATED["city"],
            mine,
            until=lambda kept: len(ids_in(kept)) >= 400,
            timeout=90,
        )
        assert ids_in(every) == {
            f"{when}-{unique}-{n}" for when in ("before", "after") for n in range(200)
        }

        # One reading per device five minutes on moves each partition's watermark
        # past the window: its final must count all 400 readings, none twice.
        closers = [
            reading(f"{unique}-{d}", f"close-{unique}-{d}", minute + timedelta(minutes=5))
            for d in range(DEVICES)
        ]
        await produce(broker.bootstrap, SOURCE["city"], closers)
        window = int(minute.timestamp() * 1000)
        finals = await consume(
            broker.bootstrap,
            AGGREGATES,
            lambda r: (
                r.key.startswith(f"restart_count_1m|{unique}-".encode())
                and orjson.loads(r.value)["window_start_ms"] == window
            ),
            until=lambda kept: len(kept) >= DEVICES,
            timeout=60,
        )
        results = [orjson.loads(record.value) for record in finals]
        counts = {result["group"]["refDevice"]: result["count"] for result in results}
        expected = {f"{unique}-{d}": 2 * len(range(d, 200, DEVICES)) for d in range(DEVICES)}
        assert counts == expected
        assert len(finals) == DEVICES  # one final per window, no duplicate
        assert worker.alive()
    finally:
        worker.stop()
        broker.stop()
