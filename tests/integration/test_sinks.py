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

from streams.topics import SOURCE, VALIDATED
from tests.conftest import auth_failure
from tests.integration.alertmanager import Alertmanager
from tests.integration.conftest import BROKERS, Worker, produce, start_broker
from tests.integration.test_windows import AGGREGATES_YAML, expected_finals, validated_readings
from tests.integration.victoriametrics import VictoriaMetrics

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

Servers = tuple[VictoriaMetrics, Alertmanager]


@pytest.fixture(scope="module", params=BROKERS)
def own_broker(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    """A broker of its own: these tests write windows hours in the past, which other
    workers' window stages on the session broker must not see (nor their events ours)."""
    broker = start_broker(request.param, tmp_path_factory.mktemp(request.param))
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    victoria = VictoriaMetrics(tmp_path_factory.mktemp("vm")).start()
    alertmanager = Alertmanager(tmp_path_factory.mktemp("am")).start()
    yield victoria, alertmanager
    victoria.stop()
    alertmanager.stop()


@pytest.fixture(scope="module")
def sink_worker(own_broker: str, servers: Servers, tmp_path_factory) -> Iterator[Worker]:
    victoria, alertmanager = servers
    directory: Path = tmp_path_factory.mktemp("sinks")
    (directory / "aggregates.yaml").write_text(AGGREGATES_YAML)
    (directory / "rules.yaml").write_text(RULES_YAML)
    env = {
        "IOC_WINDOWS__AGGREGATES": str(directory / "aggregates.yaml"),
        "IOC_WINDOWS__IDLE_TIMEOUT_S": "600",  # only event time closes these windows
        "IOC_WINDOWS__ALLOWED_LATENESS_S": "5",
        "IOC_RULES__RULES": str(directory / "rules.yaml"),
        "IOC_SINKS__TIMESERIES__URL": victoria.url,
        "IOC_SINKS__ALERTMANAGER__URL": alertmanager.url,
    }
    worker = Worker(own_broker, directory, **env).start()
    yield worker
    worker.stop()


def exported_means(victoria: VictoriaMetrics, prefix: str) -> dict[tuple[str, str, int], float]:
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
    own_broker, servers, sink_worker, unique
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

    aggregates_path = Path(sink_worker.env["IOC_WINDOWS__AGGREGATES"])
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
    with urllib.request.urlopen(sink_worker.url("/sinks"), timeout=5) as answer:
        status = json.loads(answer.read())
    assert status["timeseries"]["state"] == "up" and status["timeseries"]["retries"] > 0


async def test_a_firing_alert_reaches_alertmanager(own_broker, servers, sink_worker, unique):
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
