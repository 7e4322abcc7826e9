"""Real servers for integration tests, started once per session on free loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.core.progress import is_progress
from streams.devtools.brokers import ApacheKafkaBroker, EmbeddedBroker, LocalBroker
from streams.devtools.processes import free_port
from streams.devtools.servers import LocalAlertmanager, LocalVictoriaMetrics
from streams.worker.console.users import UserRecord, UsersFile, hash_password, new_token, save_users

#: Which brokers the integration tests run on: both unless IOC_TEST_BROKER names one.
BROKERS = os.environ.get("IOC_TEST_BROKER", "tansu,apache").split(",")
KAFKA_VERSION = os.environ.get("IOC_TEST_KAFKA_VERSION", "4.4.0")


def start_broker(kind: str, directory: Path) -> LocalBroker:
    log = (directory / f"{kind}.log").open("wb")
    broker: LocalBroker
    if kind == "apache":
        broker = ApacheKafkaBroker(port=free_port(), kafka_version=KAFKA_VERSION, log=log)
    else:
        broker = EmbeddedBroker(port=free_port(), log=log)
    return broker.start()


@pytest.fixture(scope="session", params=BROKERS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalBroker]:
    """Each broker once per session; every test using it runs once per broker."""
    running = start_broker(request.param, tmp_path_factory.mktemp(request.param))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def bootstrap(broker: LocalBroker) -> str:
    return broker.bootstrap


class Worker:
    """An `ioc worker` process with its own consumer group and web port."""

    def __init__(self, bootstrap: str, directory: Path, **env: str) -> None:
        self.app_id = f"it-{uuid.uuid4().hex[:8]}"
        self.web_port = free_port()
        self.log_path = directory / f"{self.app_id}.log"
        # A viewer with an API token: what needs a login (/sinks) is read with it.
        users_file = directory / f"{self.app_id}-users.json"
        self.token, digest = new_token()
        password = hash_password(uuid.uuid4().hex)
        tester = UserRecord(role="viewer", password=password, tokens=[digest])
        save_users(users_file, UsersFile(users={"tester": tester}))
        self.env = {
            **os.environ,
            "IOC_KAFKA__BOOTSTRAP": bootstrap,
            "IOC_APP_ID": self.app_id,
            "IOC_WEB__PORT": str(self.web_port),
            "IOC_DATA_DIR": str(directory / self.app_id),
            "IOC_CONSOLE__USERS_FILE": str(users_file),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get_json(self, path: str) -> Any:
        """A page that needs a login, read with the worker's test token."""
        request = urllib.request.Request(self.url(path))
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def start(self, timeout: float = 60.0) -> Worker:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {timeout} s: {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def worker(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = Worker(bootstrap, tmp_path_factory.mktemp("worker")).start()
    yield running
    running.stop()


@pytest.fixture
def unique() -> str:
    """A marker that makes this test's keys and ids its own."""
    return uuid.uuid4().hex[:10]


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]
) -> list[tuple[int, int]]:
    """Produce and return each message's (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        return [(meta.partition, meta.offset) for meta in [await f for f in futures]]
    finally:
        await producer.stop()


async def consume(
    bootstrap: str,
    topic: str,
    keep: Callable[[Any], bool],
    until: Callable[[list[Any]], bool],
    timeout: float = 30.0,
) -> list[Any]:
    """Read `topic` from the beginning, keeping records for which `keep` holds,
    until `until(kept)` holds; then read one more second to catch extras. Progress
    records (streams.core.progress) are skipped, as any consumer of our topics must."""
    # Without a group, aiokafka assigns every partition of the topic; with no
    # committed offsets, "earliest" starts each at its beginning.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=100,
    )  # fmt: skip
    await consumer.start()
    try:
        kept: list[Any] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batches = await consumer.getmany(timeout_ms=200)
            kept += [
                r
                for records in batches.values()
                for r in records
                if not is_progress(r.headers) and keep(r)
            ]
            if settle_until is None and until(kept):
                settle_until = time.monotonic() + 1.0
        return kept
    finally:
        await consumer.stop()


# -- sinks: a broker of their own and real servers, per test module -------------------

#: The sink tests' Alertmanager: one receiver without integrations, and groups that
#: wait an hour, so alerts are held and read back through the API, never notified.
QUIET_ALERTMANAGER = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""

Servers = tuple[LocalVictoriaMetrics, LocalAlertmanager]


@pytest.fixture(scope="module", params=BROKERS)
def own_broker(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    """A broker of its own: these tests write windows hours in the past, which other
    workers' window stages on the session broker must not see (nor their events ours)."""
    broker = start_broker(request.param, tmp_path_factory.mktemp(request.param))
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(scope="module")
def servers(own_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    victoria = LocalVictoriaMetrics(tmp_path_factory.mktemp("vm"), search_cache=False).start()
    alertmanager = LocalAlertmanager(
        tmp_path_factory.mktemp("am"), config=QUIET_ALERTMANAGER
    ).start()
    yield victoria, alertmanager
    victoria.stop()
    alertmanager.stop()
