"""The console's API against real workers: two workers of one deployment on one broker,
a real Alertmanager. Logins, roles and CSRF; an alert from produced events on both
workers' boards; an action on one seen on the other; a console silence mirrored into
Alertmanager and lifted again; the live stream."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.devtools.servers import LocalAlertmanager
from streams.worker.kafka import ensure_worker_topics
from streams.worker.settings import KafkaSettings, Settings
from streams.worker.topics import SOURCE
from tests.conftest import auth_failure
from tests.integration.conftest import BROKERS, QUIET_ALERTMANAGER, Worker, produce, start_broker

pytestmark = pytest.mark.integration

OPERATOR, VIEWER = ("lan", "operator-pass-1"), ("vy", "viewer-pass-12")


class Client:
    """A browser-like HTTP client: a cookie jar, and the CSRF token once logged in."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""
        self.token = ""

    def call(
        self, method: str, path: str, body: Any = None, csrf: bool = True
    ) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if csrf and self.csrf:
            request.add_header("X-CSRF-Token", self.csrf)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self.opener.open(request, timeout=10) as response:
                raw, status, headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, headers = exc.read(), exc.code, dict(exc.headers)
        try:
            return status, json.loads(raw or b"null"), headers
        except ValueError:
            return status, raw.decode(errors="replace"), headers

    def login(self, name: str, password: str) -> int:
        form = urllib.parse.urlencode({"name": name, "password": password}).encode()
        request = urllib.request.Request(self.base + "/login", data=form, method="POST")
        try:
            with self.opener.open(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status == 200:  # followed the 303 to the page
            _, session, _ = self.call("GET", "/api/session")
            self.csrf = session["csrf"]
        return status

    def alerts(self, **query: str) -> list[dict[str, Any]]:
        status, body, _ = self.call("GET", "/api/alerts?" + urllib.parse.urlencode(query))
        assert status == 200, body
        return body["alerts"]  # type: ignore[no-any-return]


def users(directory: Path) -> Path:
    path = directory / "users.json"
    env = {"IOC_CONSOLE__USERS_FILE": str(path), "PATH": "/usr/bin:/bin"}
    for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "users", "add", name, "--role", role,
             "--password-stdin"],
            input=password.encode(), env=env, check=True, capture_output=True,
        )  # fmt: skip
    return path


def wait_for(probe: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {probe}")


Deployment = tuple[Worker, Worker, LocalAlertmanager, str]


@pytest.fixture(scope="module", params=BROKERS)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Two workers of one app id on a broker of their own, with an Alertmanager."""
    directory = tmp_path_factory.mktemp(f"console-{request.param}")
    broker = start_broker(request.param, directory)
    alertmanager = LocalAlertmanager(directory / "am", config=QUIET_ALERTMANAGER).start()
    asyncio.run(ensure_worker_topics(Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap))))
    env = {
        "IOC_CONSOLE__USERS_FILE": str(users(directory)),
        "IOC_CONSOLE__SESSION_SECRET": secrets.token_urlsafe(32),
        "IOC_INGEST__IDLE_TIMEOUT_S": "2",
        "IOC_SINKS__ALERTMANAGER__URL": alertmanager.url,
    }
    first = Worker(broker.bootstrap, directory, **env)
    second = Worker(broker.bootstrap, directory, **env)
    second.app_id = first.app_id
    second.env["IOC_APP_ID"] = first.app_id
    second.env["IOC_DATA_DIR"] = str(directory / "second")
    try:
        first.start(timeout=120)
        second.start(timeout=120)
        yield first, second, alertmanager, broker.bootstrap
    finally:
        first.stop()
        second.stop()
        alertmanager.stop()
        broker.stop()


def brute_force(ip: str) -> list[tuple[bytes | None, bytes]]:
    """Twelve failed logins from `ip` in the last second: live traffic (the sources have
    been idle, so their event time runs on with the wall clock: older would be late)."""
    now = datetime.now(UTC)
    return [
        (ip.encode(), orjson.dumps(auth_failure(**{
            "@timestamp": (now - timedelta(milliseconds=1000 - 10 * n)).isoformat(),
            "source": {"ip": ip},
            "user": {"name": "<img src=x onerror=alert(1)>"},
            "event": {"category": ["authentication"], "outcome": "failure",
                      "action": "ssh_login", "id": f"{ip}-{n}"},
        })))
        for n in range(12)
    ]  # fmt: skip


def test_access_needs_a_login_and_the_operator_role(deployment):
    first, _, _, _ = deployment
    anonymous = Client(first.url(""))
    assert anonymous.call("GET", "/api/alerts")[0] == 401
    assert anonymous.call("GET", "/health")[0] == 200
    assert anonymous.call("GET", "/metrics")[0] == 200
    assert redirect_of(first.url("/sinks")) == (303, "/login")  # a page: to the login
    assert redirect_of(first.url("/")) == (303, "/login")
    assert Client(first.url("")).login("lan", "wrong password") == 401
    viewer = Client(first.url(""))
    assert viewer.login(*VIEWER) == 200
    assert viewer.call("GET", "/api/alerts")[0] == 200
    assert viewer.call("POST", "/api/alerts/0123456789abcdef/ack", {})[0] == 403
    operator = Client(first.url(""))
    assert operator.login(*OPERATOR) == 200
    cookie = next(c for c in operator.jar if c.name == "ioc_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    # Without the CSRF header a cookie's POST is refused; with it, it gets to the route.
    assert operator.call("POST", "/api/alerts/0123456789abcdef/ack", {}, csrf=False)[0] == 403
    status, body, headers = operator.call("POST", "/api/alerts/0123456789abcdef/ack", {})
    assert status == 404 and "no alert" in body["error"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_an_alert_and_an_action_reach_both_workers_and_alertmanager(deployment):
    first, second, alertmanager, bootstrap = deployment
    asyncio.run(produce(bootstrap, SOURCE["security"], brute_force("203.0.113.77")))
    desk, other = Client(first.url("")), Client(second.url(""))
    assert desk.login(*OPERATOR) == 200 and other.login(*VIEWER) == 200

    def brute_force_on(client: Client) -> dict[str, Any] | None:
        found = [a for a in client.alerts(q="203.0.113.77") if a["rule"] == "brute_force"]
        return found[0] if found else None

    entry = wait_for(lambda: brute_force_on(desk), timeout=120)
    assert wait_for(lambda: brute_force_on(other))["fingerprint"] == entry["fingerprint"]
    assert entry["family"] == "security" and entry["state"] == "firing"
    assert entry["group"] == {"source.ip": "203.0.113.77"}
    fingerprint = entry["fingerprint"]
    # Wrong bodies are refused with what is wrong.
    status, body, _ = desk.call("POST", f"/api/alerts/{fingerprint}/silence", {"duration_s": 5})
    assert status == 422 and "duration_s" in body["error"]
    # Acknowledged on one worker, seen on the other.
    acted = time.monotonic()
    status, body, _ = desk.call("POST", f"/api/alerts/{fingerprint}/ack", {"reason": "on it"})
    assert status == 202 and body["action"]["user"] == "lan"
    seen = wait_for(lambda: (brute_force_on(other) or {}).get("state") == "acknowledged", 10)
    print(f"acknowledgement seen on the other worker after {time.monotonic() - acted:.3f} s")
    assert seen and brute_force_on(other)["acked_by"] == "lan"  # type: ignore[index]
    # A comment is kept as written (the page shows it as text).
    text = "<script>alert(1)</script> <img src=x onerror=alert(2)>"
    assert desk.call("POST", f"/api/alerts/{fingerprint}/comment", {"text": text})[0] == 202
    wait_for(lambda: any(c["text"] == text for c in brute_force_on(other)["comments"]), 10)  # type: ignore[index]
    # Silenced: the state everywhere, and a silence in Alertmanager that mutes it.
    body = {"duration_s": 3600, "reason": "firewall maintenance"}
    assert desk.call("POST", f"/api/alerts/{fingerprint}/silence", body)[0] == 202
    wait_for(lambda: (brute_force_on(other) or {}).get("state") == "silenced", 10)

    def am_silences() -> list[dict[str, Any]]:
        with urllib.request.urlopen(alertmanager.url + "/api/v2/silences", timeout=5) as answer:
            found = json.loads(answer.read())
        return [s for s in found if "firewall maintenance" in s.get("comment", "")]

    [silence] = wait_for(am_silences, 60)
    assert silence["status"]["state"] == "active" and silence["createdBy"] == "lan"
    assert {"name": "source_ip", "value": "203.0.113.77"} in [
        {"name": m["name"], "value": m["value"]} for m in silence["matchers"]
    ]
    # Unsilenced: back to acknowledged, and the Alertmanager silence expired.
    assert desk.call("POST", f"/api/alerts/{fingerprint}/unsilence", {})[0] == 202
    wait_for(lambda: (brute_force_on(other) or {}).get("state") == "acknowledged", 10)
    wait_for(lambda: all(s["status"]["state"] == "expired" for s in am_silences()), 60)


def test_the_stream_sends_a_snapshot_then_changes_and_resumes_from_its_last_event(deployment):
    first, _, _, bootstrap = deployment
    client = Client(first.url(""))
    assert client.login(*OPERATOR) == 200
    request = urllib.request.Request(first.url("/api/alerts/stream"))
    with client.opener.open(request, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first_event = read_event(stream)
        assert first_event["event"] == "snapshot"
        asyncio.run(produce(bootstrap, SOURCE["security"], brute_force("203.0.113.88")))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            event = read_event(stream)
            if event["event"] == "alert" and "203.0.113.88" in json.dumps(event["data"]):
                break
        else:
            raise AssertionError("no alert event for 203.0.113.88 in 120 s")
        last_id = event["id"]
    # Reconnecting with Last-Event-ID: no snapshot, only what changed since (nothing yet).
    request = urllib.request.Request(first.url("/api/alerts/stream"))
    request.add_header("Last-Event-ID", last_id)
    with client.opener.open(request, timeout=30) as stream:
        fingerprint = event["data"]["fingerprint"]
        assert client.call("POST", f"/api/alerts/{fingerprint}/comment", {"text": "seen"})[0] == 202
        resumed = read_event(stream)
        assert resumed["event"] in ("alert", "counts")
        assert resumed["event"] != "snapshot"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def redirect_of(url: str) -> tuple[int, str]:
    """(status, Location) of a GET, not followed."""
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def read_event(stream: Any) -> dict[str, Any]:
    """The next event of a text/event-stream (keep-alive comments skipped)."""
    fields: dict[str, Any] = {}
    while True:
        line = stream.readline().decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if not line:
            if fields:
                fields["data"] = json.loads(fields.get("data", "null"))
                return fields
            continue
        name, _, value = line.partition(": ")
        fields[name] = value
