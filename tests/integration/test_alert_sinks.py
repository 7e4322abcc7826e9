"""Alert sinks against real servers: Alertmanager (Debian `prometheus-alertmanager`)
and a local aiohttp receiver for the webhook. No Kafka needed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from sinks.http import Backoff
from sinks.webhook import WebhookSink, WebhookTarget, verify
from streams.devtools.processes import free_port
from streams.devtools.servers import LocalAlertmanager
from tests.integration.conftest import QUIET_ALERTMANAGER
from tests.unit.sinks.helpers import alert, record

pytestmark = [
    pytest.mark.integration,
    # The receiver fixture serves on the session loop (asyncio_default_fixture_loop_scope).
    pytest.mark.asyncio(loop_scope="session"),
]

DEPLOY_CONFIG = Path(__file__).parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
FAST = Backoff(base_s=0.2, max_s=1.0)


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAlertmanager]:
    server = LocalAlertmanager(
        tmp_path_factory.mktemp("alertmanager"), config=QUIET_ALERTMANAGER
    ).start()
    yield server
    server.stop()


async def active(server: LocalAlertmanager, alertname: str) -> list[dict[str, Any]]:
    url = f"{server.url}/api/v2/alerts"
    params = {"active": "true", "filter": f'alertname="{alertname}"'}
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as answer:
        assert answer.status == 200
        found: list[dict[str, Any]] = await answer.json()
        return found


def now_alert(state: str = "firing", **labels: str) -> Any:
    now_ms = int(time.time() * 1000)
    return alert(state, starts_at_ms=now_ms - 60_000, ends_at_ms=now_ms - 1000, **labels)


async def test_deploy_config_passes_amtool() -> None:
    tool = shutil.which("amtool")
    assert tool is not None
    result = await asyncio.to_thread(
        subprocess.run,
        [tool, "check-config", str(DEPLOY_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


async def test_firing_then_resolved(alertmanager: LocalAlertmanager) -> None:
    name = f"it_{uuid.uuid4().hex[:8]}"
    target = AlertmanagerConfig(url=alertmanager.url, generator_url="http://ioc/a/{fingerprint}")
    sink = AlertmanagerSink(target)
    await sink.open()
    try:
        firing = now_alert(alertname=name, team="soc")
        await sink.write([record(firing, 0)])
        assert await sink.flush() == []
        [found] = await active(alertmanager, name)
        assert found["labels"] == {
            "alertname": name,
            "severity": "warning",
            "source_ip": "203.0.113.7",
            "team": "soc",
        }
        notes = found["annotations"]
        assert notes["summary"] == "Dò mật khẩu từ 203.0.113.7"
        assert notes["summary_en"] == "Brute force from 203.0.113.7"
        assert (notes["value"], notes["threshold"], notes["window"]) == ("12", "10", "5m")
        assert notes["evidence_ids"] == "e-1,e-2"
        assert found["generatorURL"] == f"http://ioc/a/{firing.fingerprint}"

        await sink.write([record(now_alert("resolved", alertname=name, team="soc"), 1)])
        assert await sink.flush() == []
        assert await active(alertmanager, name) == []
    finally:
        await sink.close()


async def test_outage_is_retried_until_alertmanager_is_back(
    alertmanager: LocalAlertmanager,
) -> None:
    name = f"it_{uuid.uuid4().hex[:8]}"
    sink = AlertmanagerSink(AlertmanagerConfig(url=alertmanager.url), backoff=FAST)
    await sink.open()
    try:
        alertmanager.stop()
        await sink.write([record(now_alert(alertname=name), 0)])
        flushing = asyncio.create_task(sink.flush())
        await asyncio.sleep(3)
        assert not flushing.done()
        assert sink.status.state == "retrying" and sink.status.retries >= 2
        await asyncio.to_thread(alertmanager.start)
        assert await asyncio.wait_for(flushing, timeout=15) == []
        assert sink.status.state == "up"
        assert len(await active(alertmanager, name)) == 1
    finally:
        if alertmanager.process is None:
            alertmanager.start()
        await sink.close()


async def test_invalid_alert_is_rejected_with_alertmanagers_answer(
    alertmanager: LocalAlertmanager,
) -> None:
    # An invalid URI is refused by the API's schema, with its reason.
    target = AlertmanagerConfig(url=alertmanager.url, generator_url="::not a uri {fingerprint}")
    sink = AlertmanagerSink(target)
    await sink.open()
    try:
        bad = now_alert(alertname="it_bad")
        await sink.write([record(bad, 0)])
        rejected = await sink.flush()
        assert len(rejected) == 1
        assert "HTTP 4" in rejected[0].reason and "generatorURL" in rejected[0].reason
    finally:
        await sink.close()


# -- webhook -------------------------------------------------------------------------


class Receiver:
    """A local webhook receiver that verifies signatures and answers from a script."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.script: list[int] = []
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((body, dict(request.headers)))
        if not verify(
            self.secret,
            body,
            request.headers.get("X-IOC-Timestamp"),
            request.headers.get("X-IOC-Signature"),
        ):
            return web.Response(status=401, text="bad signature")
        status = self.script.pop(0) if self.script else 200
        return web.Response(status=status, text="no such channel" if status == 400 else "")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver("s3cret")
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", hook.port)
    await site.start()
    yield hook
    await runner.cleanup()


async def webhook(url: str, secret: str) -> WebhookSink:
    sink = WebhookSink([WebhookTarget(url, secret=secret)], backoff=FAST)
    await sink.open()
    return sink


async def test_webhook_body_and_signature(receiver: Receiver) -> None:
    sink = await webhook(receiver.url, "s3cret")
    try:
        firing = now_alert()
        await sink.write([record(firing, 0)])
        assert await sink.flush() == []
        [(body, headers)] = receiver.received
        assert body == firing.to_json()
        assert headers["X-IOC-Event-Id"] == firing.identity
    finally:
        await sink.close()


async def test_webhook_bad_signature_is_refused(receiver: Receiver) -> None:
    sink = await webhook(receiver.url, "wrong")
    try:
        await sink.write([record(now_alert(), 3)])
        [rejection] = await sink.flush()
        assert rejection.record.offset == 3
        assert rejection.reason.endswith("HTTP 401: bad signature")
    finally:
        await sink.close()


async def test_webhook_400_is_a_rejection_with_the_answer(receiver: Receiver) -> None:
    receiver.script = [400]
    sink = await webhook(receiver.url, "s3cret")
    try:
        await sink.write([record(now_alert(), 5)])
        [rejection] = await sink.flush()
        assert rejection.reason == f"webhook {receiver.url}: HTTP 400: no such channel"
        assert sink.status.rejected == 1
    finally:
        await sink.close()


async def test_webhook_503_twice_then_200(receiver: Receiver) -> None:
    receiver.script = [503, 503, 200]
    sink = await webhook(receiver.url, "s3cret")
    try:
        await sink.write([record(now_alert(), 0)])
        assert await sink.flush() == []
        assert (sink.status.retries, len(receiver.received), sink.status.state) == (2, 3, "up")
    finally:
        await sink.close()
