"""What only a durable broker can show: a broker restart under a running worker."""

from __future__ import annotations

import orjson
import pytest

from streams.topics import SOURCE, VALIDATED
from tests.conftest import air_quality
from tests.integration.conftest import BROKERS, Worker, consume, produce, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def readings(prefix: str, count: int) -> list[tuple[bytes | None, bytes]]:
    return [
        (None, orjson.dumps(air_quality(refDevice=f"{prefix}-{n % 7}", id=f"{prefix}-{n}")))
        for n in range(count)
    ]


def ids_in(records: list) -> set[str]:
    return {orjson.loads(record.value)["id"] for record in records}


@pytest.mark.skipif("apache" not in BROKERS, reason="needs Apache Kafka (IOC_TEST_BROKER)")
async def test_worker_reconnects_after_a_broker_restart_and_loses_nothing(tmp_path, unique):
    broker = start_broker("apache", tmp_path)
    worker = Worker(broker.bootstrap, tmp_path).start()
    try:
        mine = lambda record: unique.encode() in (record.key or b"")  # noqa: E731
        await produce(broker.bootstrap, SOURCE["city"], readings(f"before-{unique}", 200))
        before = await consume(
            broker.bootstrap, VALIDATED["city"], mine, until=lambda kept: len(ids_in(kept)) >= 200
        )
        assert len(ids_in(before)) == 200

        broker.stop(remove_data=False)  # type: ignore[call-arg]
        broker.start()

        await produce(broker.bootstrap, SOURCE["city"], readings(f"after-{unique}", 200))
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
        assert worker.alive()
    finally:
        worker.stop()
        broker.stop()
