"""Sinks through a real worker when something dies: the worker SIGKILLed while window
finals flow to VictoriaMetrics, Alertmanager down while an alert fires, and the
worker restarted while an alert fires (the restored state keeps it alive)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.devtools.servers import LocalAlertmanager
from streams.worker.topics import SOURCE, VALIDATED
from tests.conftest import auth_failure
from tests.integration.conftest import Servers, Worker, produce
from tests.integration.sink_setup import sink_worker
from tests.integration.test_sinks import exported_means
from tests.integration.test_windows import expected_finals, validated_readings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES_YAML = """
rules:
  - name: sr_brute_force
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

#: Firing alerts are re-sent this often, and valid in Alertmanager for 3× as long.
RESEND_S = 2.0


@pytest.fixture(scope="module")
def recovery_worker(own_broker: str, servers: Servers, tmp_path_factory) -> Iterator[Worker]:
    directory: Path = tmp_path_factory.mktemp("recovery")
    worker = sink_worker(
        own_broker, servers, directory, RULES_YAML,
        IOC_SINKS__ALERTMANAGER__RESEND_S=str(RESEND_S),
        # One burst, then silence: the rules judge its last failures once the source
        # partition is idle (README, Event time), soon here.
        IOC_INGEST__IDLE_TIMEOUT_S="2",
    ).start()  # fmt: skip
    yield worker
    worker.stop()


@pytest.fixture
def worker(recovery_worker: Worker, servers: Servers) -> Worker:
    """The module's worker, running (a test before may have left it stopped), with
    Alertmanager up."""
    if servers[1].process is None:
        servers[1].start()
    if not recovery_worker.alive():
        recovery_worker.start()
    return recovery_worker


def sink_status(worker: Worker) -> dict[str, Any]:
    return dict(worker.get_json("/sinks"))


def alerts_of(alertmanager: LocalAlertmanager, ip: str) -> list[dict[str, Any]]:
    """Alertmanager's alerts (active, silenced, inhibited: not expired) of one source IP."""
    with urllib.request.urlopen(f"{alertmanager.url}/api/v2/alerts", timeout=5) as answer:
        alerts = json.loads(answer.read())
    return [a for a in alerts if a["labels"].get("source_ip") == ip]


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def unique_ip(unique: str) -> str:
    return f"198.18.{int(unique[:4], 16) % 250}.{int(unique[4:8], 16) % 250}"


async def brute_force(bootstrap: str, ip: str, unique: str) -> None:
    """Five failed logins from `ip` now: the rule fires."""
    now = datetime.now(UTC)
    burst = []
    for n in range(5):
        event = auth_failure(**{"@timestamp": (now + timedelta(milliseconds=n)).isoformat()})
        event["source"] = {"ip": ip}
        event["event"] = {**event["event"], "id": f"{unique}-{n}"}
        burst.append((None, orjson.dumps(event)))
    await produce(bootstrap, SOURCE["security"], burst)


async def active_alert(alertmanager: LocalAlertmanager, ip: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = [a for a in alerts_of(alertmanager, ip) if a["status"]["state"] == "active"]
        if mine:
            [alert] = mine
            return alert
        await asyncio.sleep(0.5)
    raise AssertionError(f"no active alert for {ip} within {timeout} s")


async def test_sigkill_mid_stream_writes_every_final_once(own_broker, servers, worker, unique):
    victoria, _ = servers
    prefix = f"RK{unique[:6]}-"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=5)
    readings = [
        (key.replace(b"AQ-", prefix.encode()), value.replace(b"AQ-", prefix.encode()))
        for key, value in validated_readings(start, stations=20, per_station=60)
    ]
    half = len(readings) // 2
    await produce(own_broker, VALIDATED["city"], readings[:half])
    deadline = time.monotonic() + 60
    written: dict = {}
    while time.monotonic() < deadline and not written:
        await asyncio.sleep(0.1)
        written = exported_means(victoria, prefix)
    assert written, "no final reached VictoriaMetrics before the kill"
    assert worker.process is not None
    worker.process.send_signal(signal.SIGKILL)  # mid-flow: the sink has written only part
    worker.process.wait()
    await produce(own_broker, VALIDATED["city"], readings[half:])
    worker.start()

    aggregates_path = Path(worker.env["IOC_WINDOWS__AGGREGATES"])
    finals = await expected_finals(own_broker, aggregates_path, len(readings))
    wanted = {
        (r["aggregate"], r["group"]["refDevice"], r["window_start_ms"]): value
        for r in finals.values()
        if (value := r["statistics"].get("pm25_mean")) is not None
    }
    assert len(written) < len(wanted)  # the kill came before the end of the run
    deadline = time.monotonic() + 90
    got: dict = {}
    while time.monotonic() < deadline and got != wanted:
        await asyncio.sleep(1)
        got = exported_means(victoria, prefix)  # asserts one point per series and time
    assert got == wanted


async def test_an_alert_fired_while_alertmanager_is_down_arrives_after(
    own_broker, servers, worker, unique
):
    _, alertmanager = servers
    ip = unique_ip(unique)
    alertmanager.stop()
    try:
        await brute_force(own_broker, ip, unique)
        deadline = time.monotonic() + 20
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and status.get("state") != "retrying":
            await asyncio.sleep(0.5)
            status = sink_status(worker)["alertmanager"]
        assert status["state"] == "retrying", status  # the alert is held, not dropped
        await asyncio.sleep(10)
    finally:
        alertmanager.start()  # same port and storage
    alert = await active_alert(alertmanager, ip, timeout=60)
    assert alert["labels"]["alertname"] == "sr_brute_force"
    assert sink_status(worker)["alertmanager"]["state"] == "up"


async def test_a_firing_alert_is_kept_alive_after_a_worker_restart(
    own_broker, servers, worker, unique
):
    _, alertmanager = servers
    ip = unique_ip(unique)
    await brute_force(own_broker, ip, unique)
    before = await active_alert(alertmanager, ip, timeout=60)
    await asyncio.sleep(2 * RESEND_S)  # committed: the next run will not read it again
    worker.stop()  # SIGTERM: a clean stop, offsets committed
    worker.start()
    restarted = time.time()
    # Only the restored state re-sends it: the rule stage wrote it once, before the
    # committed offset. Without that, it expires 3 × RESEND_S after the last send.
    deadline = time.monotonic() + 30
    updated = 0.0
    while time.monotonic() < deadline and updated <= restarted:
        await asyncio.sleep(0.5)
        updated = max((epoch(a["updatedAt"]) for a in alerts_of(alertmanager, ip)), default=0)
    assert updated > restarted, "not re-sent after the restart"
    await asyncio.sleep(4 * RESEND_S)
    after = await active_alert(alertmanager, ip, timeout=1)
    assert after["startsAt"] == before["startsAt"]  # the same alert, not a new episode
    assert epoch(after["endsAt"]) > time.time()
    assert epoch(after["updatedAt"]) > restarted + 2 * RESEND_S
    assert sink_status(worker)["alertmanager"]["restored"] >= 1
