"""Sinks through a real worker: window finals reach VictoriaMetrics, also across a
30 s outage, and an alert reaches Alertmanager — read back through their APIs."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from streams.devtools.servers import LocalVictoriaMetrics
from streams.worker.topics import SOURCE, VALIDATED
from tests.conftest import auth_failure
from tests.integration.conftest import Servers, Worker, produce
from tests.integration.sink_setup import sink_worker
from tests.integration.test_windows import expected_finals, validated_readings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES_YAML = """
rules:
  - name: sk_brute_force
    kind: count
    family: security
    filter: {event.category: authentication, event.outcome: failure}
    group_by: [source.ip]
    window: 1m
    gte: 5
    severity: critical
    keep_firing_for: 10m
    summary: {vi: "Dò mật khẩu từ {source.ip}", en: "Brute force from {source.ip}"}
"""


@pytest.fixture(scope="module")
def sink_worker_running(own_broker: str, servers: Servers, tmp_path_factory) -> Iterator[Worker]:
    worker = sink_worker(own_broker, servers, tmp_path_factory.mktemp("sinks"), RULES_YAML)
    yield worker.start()
    worker.stop()


def exported_means(
    victoria: LocalVictoriaMetrics, prefix: str
) -> dict[tuple[str, str, int], float]:
    """(aggregate, refDevice, window start ms) → pm25_mean, for this test's stations."""
    points: dict[tuple[str, str, int], float] = {}
    for line in victoria.export(f'ioc_aggregate_pm25_mean{{refDevice=~"{prefix}.*"}}'):
        metric = line["metric"]
        for at, value in zip(line["timestamps"], line["values"], strict=True):
            key = (metric["aggregate"], metric["refDevice"], at)
            assert key not in points, key  # one point per window: a replay overwrites
            points[key] = value
    return points


async def test_every_final_reaches_victoriametrics_across_a_30_s_outage(
    own_broker, servers, sink_worker_running, unique
):
    victoria, _ = servers
    prefix = f"VM{unique[:6]}-"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    readings = [
        (key.replace(b"AQ-", prefix.encode()), value.replace(b"AQ-", prefix.encode()))
        for key, value in validated_readings(start, stations=10, per_station=40)
    ]
    half = len(readings) // 2
    await produce(own_broker, VALIDATED["city"], readings[:half])
    await asyncio.sleep(3)
    victoria.stop()  # down while the rest flows and closes windows
    await produce(own_broker, VALIDATED["city"], readings[half:])
    await asyncio.sleep(30)
    victoria.start()

    aggregates_path = Path(sink_worker_running.env["IOC_WINDOWS__AGGREGATES"])
    finals = await expected_finals(own_broker, aggregates_path, len(readings))
    wanted = {
        (r["aggregate"], r["group"]["refDevice"], r["window_start_ms"]): value
        for r in finals.values()
        if (value := r["statistics"].get("pm25_mean")) is not None
    }
    assert len(wanted) > 100
    deadline = time.monotonic() + 60
    got: dict = {}
    while time.monotonic() < deadline and got != wanted:
        await asyncio.sleep(1)
        got = exported_means(victoria, prefix)
    assert got == wanted
    status = sink_worker_running.get_json("/sinks")
    assert status["timeseries"]["state"] == "up" and status["timeseries"]["retries"] > 0


async def test_a_firing_alert_reaches_alertmanager(
    own_broker, servers, sink_worker_running, unique
):
    _, alertmanager = servers
    ip = f"198.19.{int(unique[:4], 16) % 250}.{int(unique[4:8], 16) % 250}"
    now = datetime.now(UTC)
    burst = []
    for n in range(5):
        event = auth_failure(**{"@timestamp": (now + timedelta(milliseconds=n)).isoformat()})
        event["source"] = {"ip": ip}
        event["event"] = {**event["event"], "id": f"{unique}-{n}"}
        burst.append((None, orjson.dumps(event)))
    await produce(own_broker, SOURCE["security"], burst)
    deadline = time.monotonic() + 60
    mine: list = []
    while time.monotonic() < deadline and not mine:
        await asyncio.sleep(1)
        with urllib.request.urlopen(f"{alertmanager.url}/api/v2/alerts", timeout=5) as answer:
            alerts = json.loads(answer.read())
        mine = [a for a in alerts if a["labels"].get("source_ip") == ip]
    [alert] = mine
    assert alert["labels"]["alertname"] == "sk_brute_force"
    assert alert["labels"]["severity"] == "critical"
    assert alert["status"]["state"] == "active"
    assert ip in alert["annotations"]["summary"]
