"""The worker's web server through a real `ioc worker`: it listens where
`IOC_WEB__HOST` says and nowhere else, serves none of Faust's own pages, and a
webhook token in a sink URL shows neither in `/sinks`, nor in the log, nor in the
dead letter of a record the receiver refused."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.deadletter import DeadLetter
from streams.worker.topics import ALERTS, DEADLETTER
from tests.integration.conftest import Worker, consume, produce
from tests.unit.sinks.helpers import alert

pytestmark = pytest.mark.integration

TOKEN = "XXXXSECRETTOKEN"
QUERY_TOKEN = "q7uerysecret"


def other_address() -> tuple[str, str]:
    """(where the worker binds, an address of this machine it must not answer on):
    127.0.0.1 and a non-loopback address if the machine has one, else 127.0.0.2 and
    127.0.0.1 (all of 127/8 is local on Linux)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: picks the outgoing interface, sends nothing
            address = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if not address.startswith("127."):
        return "127.0.0.1", address
    return "127.0.0.2", "127.0.0.1"


class BoundWorker(Worker):
    """A worker whose web server is reached at `host`, not 127.0.0.1."""

    def __init__(self, bootstrap: str, directory: Path, host: str, **env: str) -> None:
        super().__init__(bootstrap, directory, IOC_WEB__HOST=host, **env)
        self.host = host

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.web_port}{path}"


class EchoingReceiver(BaseHTTPRequestHandler):
    """A webhook receiver that refuses every request, echoing its path (as real
    ones do in their error pages)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = f"no hook at {self.path}".encode()
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def status_of(url: str, token: str = "") -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_web_binds_the_setting_has_no_faust_pages_and_hides_url_secrets(
    bootstrap: str, tmp_path: Path, receiver: str, unique: str
) -> None:
    bound, other = other_address()
    hook = f"{receiver}/services/T000/{TOKEN}?token={QUERY_TOKEN}"
    worker = BoundWorker(
        bootstrap,
        tmp_path,
        bound,
        IOC_SINKS__WEBHOOK__URLS=json.dumps([hook]),
        IOC_SINKS__WEBHOOK__SECRET="signing-key",
    ).start()
    try:
        port = worker.web_port
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, port), timeout=5).close()
        assert status_of(worker.url("/health")) == 200
        assert status_of(worker.url("/metrics")) == 200
        # None of Faust's pages, even with a login (`/` is the console's page now).
        for page in ("/router/", "/table/", "/graph/", "/stats/"):
            assert status_of(worker.url(page), worker.token) == 404, page

        # The receiver refuses our alert with its path in the answer: the dead letter,
        # /sinks and the log show the URL redacted.
        mine = alert(refDevice=unique)
        asyncio.run(produce(bootstrap, ALERTS, [(mine.fingerprint.encode(), mine.to_json())]))
        letters = asyncio.run(
            consume(
                bootstrap,
                DEADLETTER,
                keep=lambda r: DeadLetter.model_validate_json(r.value).key == mine.fingerprint,
                until=lambda kept: len(kept) >= 1,
            )
        )
        assert letters, "the refused alert was not dead-lettered"
        letter = DeadLetter.model_validate_json(letters[0].value)
        shown = f"{receiver}/services/***/***?token=***"
        echoed = "/services/T000/***?token=***"  # the path as the receiver echoed it
        assert (letter.error, letter.stage) == ("sink", "sink-webhook")
        assert letter.reason == f"webhook: webhook {shown}: HTTP 404: no hook at {echoed}"
        sinks = worker.get_json("/sinks")
        assert sinks["webhook"]["urls"] == [shown]
        assert sinks["webhook"]["rejected"] >= 1
        page = json.dumps(sinks)
        assert TOKEN not in page and QUERY_TOKEN not in page
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert "rejected: webhook" in log  # the refusal was logged …
    assert TOKEN not in log and QUERY_TOKEN not in log  # … without the token
