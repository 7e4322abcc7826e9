"""The console's page in a real browser: Debian's Chromium driven by Playwright against a
real worker on a real broker, with a real Alertmanager as its Alertmanager sink.

One worker, one Alertmanager and one browser per module (per broker); each test makes
its own alerts (its own IPs, devices, fingerprints). What is read from the page is read
as the operator sees it (data-testid elements, their text and attributes) or from
`window.iocConsole`, the page's own render measurements.

`IOC_SCREENSHOTS=1` also writes docs/screenshots/console-desk.png and console-wall.png
(the README shows them); without it the screenshot test builds the same state and checks
it, but writes nothing.

Playwright evaluates over the DevTools protocol, which the page's CSP (no inline
script, no 'unsafe-eval') does not restrict: `page.evaluate` reads `window.iocConsole`
and makes the page's own fetches; waiting is done with locators and `expect`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from models.alerts import Alert, Evidence, fingerprint
from models.rulefile import default_rules
from streams.core.rules.template import render
from streams.devtools.servers import LocalAlertmanager
from streams.worker.kafka import ensure_worker_topics
from streams.worker.settings import KafkaSettings, Settings
from streams.worker.topics import ALERTS, SOURCE
from tests.conftest import auth_failure, dossier
from tests.integration.conftest import BROKERS, QUIET_ALERTMANAGER, Worker, produce, start_broker
from tests.integration.test_console import OPERATOR, VIEWER, users, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESK = {"width": 1600, "height": 1000}
WALL = {"width": 1920, "height": 1080}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
RULES = {rule.name: rule for rule in default_rules()}

# -- the world ----------------------------------------------------------------------------


@dataclass
class Desk:
    """One logged-in browser page, with the dialogs it opened (none, ever)."""

    page: Any  # playwright.sync_api.Page
    user: str
    dialogs: list[str] = field(default_factory=list)

    def row(self, fp: str) -> Any:
        return self.page.locator(f'[data-testid="alert-row"][data-fingerprint="{fp}"]')

    def console(self, expression: str) -> Any:
        """A value of `window.iocConsole` (`expression` is a JS expression over it)."""
        return self.page.evaluate(f"() => {{ const c = window.iocConsole; return {expression}; }}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A POST made by the page itself, with the session's CSRF token, as the page's
        own script makes it: {status, body, role}."""
        return self.page.evaluate(
            """async ([path, body]) => {
                 const session = await (await fetch('/api/session')).json();
                 const response = await fetch(path, {
                   method: 'POST', credentials: 'same-origin',
                   headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf},
                   body: JSON.stringify(body)});
                 return {status: response.status, body: await response.json(),
                         role: session.role, csrf: session.csrf.length};
               }""",
            [path, body],
        )


@dataclass
class World:
    worker: Worker
    alertmanager: LocalAlertmanager
    bootstrap: str
    browser: Any  # playwright.sync_api.Browser
    desk: Desk  # the operator
    viewer: Desk

    def url(self, path: str) -> str:
        return self.worker.url(path)

    def log_in(self, name: str, password: str, **context: Any) -> Desk:
        """A new browser context, logged in through the login page."""
        from playwright.sync_api import expect

        page = self.browser.new_context(**context).new_page()
        desk = Desk(page, name)

        def on_dialog(dialog: Any) -> None:  # alert(), confirm(): none may ever open
            desk.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(self.url("/"))
        expect(page).to_have_url(self.url("/login"))  # no session: to the login page
        page.locator('input[name="name"]').fill(name)
        page.locator('input[name="password"]').fill(password)
        page.locator('form[action="/login"] button[type="submit"]').click()
        page.wait_for_url(self.url("/"))
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        return desk

    def send(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        send(self.bootstrap, topic, messages)

    def send_alerts(
        self, alerts: list[Alert], *, batches: int = 1, pause_s: float = 0.0, stamped: bool = False
    ) -> None:
        """Alerts to `ioc.alerts`, keyed by fingerprint: in `batches` pieces `pause_s`
        apart; `stamped`: with the Kafka timestamp of their start (the board's
        `changed_ms`), as if the rule stage had written them then."""
        records = [
            (a.fingerprint.encode(), a.to_json(), a.starts_at_ms if stamped else None)
            for a in alerts
        ]
        size = -(-len(records) // batches)
        pieces = [records[i : i + size] for i in range(0, len(records), size)]
        in_thread(trickle(self.bootstrap, ALERTS, pieces, pause_s))

    def am(self, path: str) -> Any:
        with urllib.request.urlopen(self.alertmanager.url + path, timeout=5) as answer:
            return orjson.loads(answer.read())


def in_thread(work: Coroutine[Any, Any, Any]) -> Any:
    # Playwright's sync API keeps an event loop of its own on this thread: aiokafka
    # gets a thread (and a loop) of its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def send(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    in_thread(produce(bootstrap, topic, messages))


async def trickle(
    bootstrap: str,
    topic: str,
    batches: list[list[tuple[bytes, bytes, int | None]]],
    pause_s: float,
) -> None:
    """Each batch produced and acknowledged, then a pause, then the next."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for n, batch in enumerate(batches):
            if n:
                await asyncio.sleep(pause_s)
            sent = [
                await producer.send(topic, value, key=key, timestamp_ms=stamp)
                for key, value, stamp in batch
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


#: The page does not care which broker is behind the worker (test_console.py runs the
#: same flows on both): one broker, the embedded one when the run has it.
PAGE_BROKERS = ["tansu"] if "tansu" in BROKERS else BROKERS[:1]


@pytest.fixture(scope="module", params=PAGE_BROKERS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A worker on a broker of its own, an Alertmanager as its sink, a browser with an
    operator's desk and a viewer's desk logged in."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no browser at {CHROMIUM}: `make system-deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    directory = tmp_path_factory.mktemp(f"console-browser-{request.param}")
    broker = start_broker(request.param, directory)
    alertmanager = LocalAlertmanager(directory / "am", config=QUIET_ALERTMANAGER).start()
    worker = Worker(
        broker.bootstrap,
        directory,
        IOC_CONSOLE__USERS_FILE=str(users(directory)),
        IOC_CONSOLE__SESSION_SECRET=secrets.token_urlsafe(32),
        IOC_INGEST__IDLE_TIMEOUT_S="2",
        IOC_CASES__EMIT_EVERY_S="2",  # the figures' backlog soon after its events
        IOC_SINKS__ALERTMANAGER__URL=alertmanager.url,
    )
    playwright = sync_playwright().start()
    try:
        in_thread(ensure_worker_topics(Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap))))
        worker.start(timeout=120)
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        world = World(worker, alertmanager, broker.bootstrap, browser, None, None)  # type: ignore[arg-type]
        desk_context: dict[str, Any] = {
            "viewport": DESK,
            "color_scheme": "light",
            "locale": "vi-VN",
            "timezone_id": "Asia/Ho_Chi_Minh",
        }
        world.desk = world.log_in(*OPERATOR, **desk_context)
        world.viewer = world.log_in(*VIEWER, **desk_context)
        yield world
    finally:
        playwright.stop()
        worker.stop()
        alertmanager.stop()
        broker.stop()


# -- alerts ---------------------------------------------------------------------------------


def brute_force(ip: str) -> list[tuple[bytes | None, bytes]]:
    """Twelve failed logins from `ip` in the last second (older would be late: the idle
    sources' event time runs on with the wall clock)."""
    now = datetime.now(UTC)
    return [
        (ip.encode(), orjson.dumps(auth_failure(**{
            "@timestamp": (now - timedelta(milliseconds=1000 - 10 * n)).isoformat(),
            "source": {"ip": ip},
            "event": {"category": ["authentication"], "outcome": "failure",
                      "action": "ssh_login", "id": f"{ip}-{n}"},
        })))
        for n in range(12)
    ]  # fmt: skip


def pack_alert(
    rule_name: str,
    group: dict[str, str],
    *,
    value: float | None,
    threshold: float | None = None,
    minutes_ago: float = 5,
    severity: str | None = None,
    band: str | None = None,
    window: str | None = None,
    flapping: bool = False,
    starts_at_ms: int | None = None,
    state: str = "firing",
) -> Alert:
    """A firing alert as the rule stage writes it for a rule of the default pack: its
    labels (alertname, severity, band, the group, the rule's labels) and summaries."""
    rule = RULES[rule_name]
    severity = severity or rule.severity
    labels = {"alertname": rule_name, "severity": severity}
    if band is not None:
        labels["band"] = band
    labels |= group | dict(rule.labels)
    values: dict[str, object] = {**rule.labels, **group, "value": value, "threshold": threshold,
                                 "window": window, "band": band}  # fmt: skip
    annotations = {
        "summary_vi": render(rule.summary.vi, values),
        "summary_en": render(rule.summary.en, values),
    }
    for name, shown in (("value", value), ("threshold", threshold), ("window", window)):
        if shown is not None:
            annotations[name] = render("{x}", {"x": shown})
    if starts_at_ms is None:
        starts_at_ms = int((time.time() - minutes_ago * 60) * 1000)
    return Alert(
        fingerprint=fingerprint(labels),
        state=state,  # type: ignore[arg-type]
        starts_at_ms=starts_at_ms,
        ends_at_ms=None if state == "firing" else int(time.time() * 1000),
        labels=labels,
        annotations=annotations,
        kind=rule.kind,
        flapping=flapping,
        evidence=Evidence(
            value=value,
            threshold=threshold,
            window_start=starts_at_ms - span_ms(window),
            window_end=starts_at_ms,
            event_ids=tuple(f"{rule_name}-{secrets.token_hex(4)}" for _ in range(3)),
            count=int(value) if isinstance(value, int) else None,
        ),
    )


def span_ms(window: str | None) -> int:
    """`5m`, `1h`, `7d` in milliseconds; an hour without a window (hourly finals)."""
    if window is None:
        return 3_600_000
    return int(window[:-1]) * {"m": 60_000, "h": 3_600_000, "d": 86_400_000}[window[-1]]


def counts(desk: Desk) -> dict[str, int]:
    """The header's counts as shown: family, severity and state."""
    shown = desk.page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-testid^="count-"]')]
              .filter((n) => n.querySelector('.count-n'))
              .map((n) => [n.dataset.testid.slice(6),
                           Number(n.querySelector('.count-n').textContent)]))"""
    )
    return shown


def watch_states(desk: Desk, fp: str) -> None:
    """Record in the page, with the page's clock, when the row of `fp` first shows each
    state (`window.__states[state] = Date.now()`)."""
    desk.page.evaluate(
        """(fp) => {
             window.__states = {};
             const list = document.querySelector('[data-testid="alert-list"]');
             const look = () => {
               const row = list.querySelector(`[data-fingerprint="${fp}"]`);
               if (row && row.dataset.state && !(row.dataset.state in window.__states)) {
                 window.__states[row.dataset.state] = Date.now();
               }
             };
             look();
             new MutationObserver(look).observe(list, {subtree: true, childList: true,
               attributes: true, attributeFilter: ['data-state']});
           }""",
        fp,
    )


def stamp_clicks(desk: Desk, test_id: str) -> None:
    """Record in the page when `test_id` is clicked (`window.__clicked`, page clock)."""
    desk.page.evaluate(
        """(id) => document.querySelector(`[data-testid="${id}"]`).addEventListener('click',
             () => { window.__clicked = Date.now(); }, {capture: true})""",
        test_id,
    )


# -- the state of a morning at the centre (screenshots) ------------------------------------


def incidents() -> list[Alert]:
    """Alerts like the demo's incidents, for the screenshots: the three families."""
    return [
        pack_alert("water_above_danger_level",
                   {"refDevice": "HD-WL-001", "areaServed": "TP Chí Linh"},
                   value=5.24, threshold=5.0, minutes_ago=38),
        pack_alert("water_above_alert_level",
                   {"refDevice": "HD-WL-006", "areaServed": "Ninh Giang"},
                   value=2.81, threshold=2.6, minutes_ago=52),
        pack_alert("aqi_poor", {"refDevice": "HD-AQ-004", "areaServed": "TP Chí Linh"},
                   value=214, threshold=200, severity="critical", band="very bad", minutes_ago=71),
        pack_alert("aqi_poor", {"refDevice": "HD-AQ-001", "areaServed": "TP Hải Dương"},
                   value=128, threshold=100, band="poor", minutes_ago=16),
        pack_alert("sensor_silent", {"refDevice": "HD-NS-003"}, value=None, window="15m",
                   minutes_ago=24),
        pack_alert("overdue_backlog", {"agency": "SO-TNMT", "kind": "dossier"},
                   value=11, threshold=10),  # from the backlog, by the rule stage
        pack_alert("feedback_overdue", {"agency": "SO-XD", "kind": "feedback"},
                   value=6, threshold=5),  # likewise
        pack_alert("dossiers_late", {"agency": "SO-LDTBXH"}, value=0.91, threshold=0.95,
                   window="7d", minutes_ago=180),
        pack_alert("brute_force", {"source.ip": "203.0.113.45"}, value=37, threshold=10,
                   window="5m", minutes_ago=9),
        pack_alert("possible_compromise",
                   {"user.name": "tran.thi.hoa", "source.ip": "203.0.113.45"},
                   value=6, window="10m", minutes_ago=4),
        pack_alert("port_scan", {"source.ip": "198.51.100.23"}, value=212, threshold=50,
                   window="1m", minutes_ago=12, flapping=True),
        pack_alert("firewall_silent", {"organization.name": "SO-GTVT"}, value=None,
                   window="10m", minutes_ago=27),
        pack_alert("malware_seen", {"host.name": "sotnmt-pc-014", "file.hash.sha256": MALWARE},
                   value=1, minutes_ago=33),
    ]  # fmt: skip


#: Open cases past their due date per agency, (dossiers, feedback), for the figures.
#: SO-TNMT's 11 dossiers and SO-XD's 6 feedback cases are one above the thresholds of
#: overdue_backlog and feedback_overdue: the rule stage fires those alerts itself, and
#: at the full count (the sum over input partitions only grows, and crosses there).
OVERDUE = {"SO-TNMT": (11, 0), "SO-XD": (8, 6), "SO-KHDT": (6, 0), "SO-LDTBXH": (5, 0),
           "SO-GTVT": (3, 0), "SO-YT": (2, 0)}  # fmt: skip
FROM_BACKLOG = ("overdue_backlog", "feedback_overdue")


def backlog() -> list[tuple[bytes | None, bytes]]:
    """Open dossiers and feedback, received three weeks ago, due three days ago, their
    latest status event now (older would be late, like the brute force's)."""
    now = datetime.now(UTC)
    at = lambda days: (now - timedelta(days=days)).isoformat()  # noqa: E731
    events: list[tuple[bytes | None, bytes]] = []
    for agency, (dossiers, feedback) in OVERDUE.items():
        for kind, n in (("dossier", dossiers), ("feedback", feedback)):
            for i in range(n):
                case = f"{agency}-{kind}-{secrets.token_hex(4)}-{i}"
                changes: dict[str, Any] = {
                    "kind": kind, "event_id": f"e-{case}", "agency": agency,
                    "status": "in_progress" if kind == "dossier" else "assigned",
                    "occurred_at": at(0), "received_at": at(21), "due_at": at(3),
                    "resolved_at": None, "paid_online": None, "fee_vnd": None,
                }  # fmt: skip
                if kind == "dossier":
                    changes["dossier_id"] = case
                else:
                    changes |= {"dossier_id": None, "feedback_id": case,
                                "procedure_code": None, "channel": None}  # fmt: skip
                events.append((case.encode(), orjson.dumps(dossier(**changes))))
    return events


MALWARE = "9f2c4d1e7a6b3c8d0e5f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
FAMILY = {
    "water_above_danger_level": "city", "water_above_alert_level": "city", "aqi_poor": "city",
    "sensor_silent": "city", "overdue_backlog": "services", "feedback_overdue": "services",
    "dossiers_late": "services", "brute_force": "security", "possible_compromise": "security",
    "port_scan": "security", "firewall_silent": "security", "malware_seen": "security",
}  # fmt: skip


def test_both_layouts_show_a_realistic_board(world: World) -> None:
    """Thirteen alerts of the three families (eleven written to ioc.alerts, two fired by
    the rule stage from a backlog of open cases), one acknowledged with a comment, one
    silenced, one flapping: the header counts go up by exactly these on the desk, the
    wall shows every one beside the backlog figures; IOC_SCREENSHOTS=1 writes the two
    screenshots."""
    from playwright.sync_api import expect

    desk = world.desk
    before = counts(desk)  # before the backlog: its rules fire two of these alerts too
    world.send(SOURCE["services"], backlog())
    alerts = incidents()
    world.send_alerts([a for a in alerts if a.rule not in FROM_BACKLOG], stamped=True)
    for alert in alerts:
        expect(desk.row(alert.fingerprint)).to_be_visible(timeout=30_000)
    for alert in alerts:  # the rule stage's two say the figures' count
        summary = desk.row(alert.fingerprint).get_by_test_id("alert-summary")
        expect(summary).to_have_text(alert.annotations["summary_vi"])
    by_rule = {a.rule: a for a in alerts}
    brute, silent = by_rule["brute_force"], by_rule["firewall_silent"]
    assert desk.post(f"/api/alerts/{brute.fingerprint}/ack", {})["status"] == 202
    comment = "Đã chặn 203.0.113.45 trên tường lửa biên, đang rà soát tài khoản liên quan."
    assert desk.post(f"/api/alerts/{brute.fingerprint}/comment", {"text": comment})["status"] == 202
    body = {"duration_s": 14400, "reason": "Bảo trì tường lửa Sở GTVT theo kế hoạch"}
    assert desk.post(f"/api/alerts/{silent.fingerprint}/silence", body)["status"] == 202
    expect(desk.row(brute.fingerprint)).to_have_attribute("data-state", "acknowledged")
    expect(desk.row(silent.fingerprint)).to_have_attribute("data-state", "silenced")
    expect(desk.row(by_rule["port_scan"].fingerprint)).to_have_attribute("data-state", "flapping")

    added = {"city": 0, "services": 0, "security": 0, "critical": 0, "warning": 0, "info": 0}
    for alert in alerts:
        added[FAMILY[alert.rule]] += 1
        added[alert.labels["severity"]] += 1
    added |= {"acknowledged": 1, "silenced": 1, "flapping": 1, "firing": len(alerts) - 3}
    after = counts(desk)
    assert {name: after[name] - before.get(name, 0) for name in added} == added

    desk.row(brute.fingerprint).click()
    expect(desk.page.get_by_test_id("details")).to_be_visible()
    expect(desk.page.get_by_test_id("comment-item").last).to_contain_text(comment)

    # The figures beside them: the backlog per agency, as the cases stage reported it.
    def overdue() -> dict[str, int]:
        figures = desk.page.evaluate("async () => (await fetch('/api/figures')).json()")
        return {row["agency"]: row["overdue"] for row in figures["overdue"]}

    expected = {agency: sum(n) for agency, n in OVERDUE.items()}
    wait_for(lambda: overdue() == expected, 30, every=0.5)

    wall = world.log_in(*VIEWER, viewport=WALL, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    wall.page.goto(world.url("/?wall=1"))
    expect(wall.page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    assert wall.console("c.wall") is True
    panel = wall.page.get_by_test_id("panel-overdue")
    expect(panel.get_by_test_id("overdue-row")).to_have_count(len(OVERDUE))
    expect(panel.get_by_test_id("overdue-row").first).to_contain_text("SO-XD")
    for alert in alerts:
        expect(wall.row(alert.fingerprint)).to_be_visible()
    if os.environ.get("IOC_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        desk.page.mouse.move(0, 0)  # no hover highlight
        desk.page.screenshot(path=str(SCREENSHOTS / "console-desk.png"))
        wall.page.screenshot(path=str(SCREENSHOTS / "console-wall.png"))
    wall.page.context.close()
    assert desk.dialogs == [] and wall.dialogs == []


# -- an incident from events, acted on ----------------------------------------------------


@dataclass
class Incident:
    ip: str
    fingerprint: str
    produced: float  # time.time() when the events were sent
    shown: float  # time.time() when the desk showed the row
    time_origin: tuple[float, float]  # the desk's performance.timeOrigin before, after
    navigations: int  # main-frame navigations of the desk meanwhile


@pytest.fixture(scope="module")
def incident(world: World) -> Incident:
    """A brute force from one IP, produced as events while the desks are open."""
    from playwright.sync_api import expect

    desk = world.desk
    ip = f"203.0.113.{secrets.randbelow(200) + 50}"
    navigations: list[str] = []
    desk.page.on("framenavigated", lambda frame: navigations.append(frame.url))
    origin = desk.page.evaluate("() => performance.timeOrigin")
    produced = time.time()
    world.send(SOURCE["security"], brute_force(ip))
    row = desk.page.locator('[data-testid="alert-row"]').filter(
        has=desk.page.get_by_test_id("alert-group").get_by_text(ip, exact=True)
    )
    expect(row).to_have_count(1, timeout=120_000)
    shown = time.time()
    print(f"brute force from {ip}: on the desk {shown - produced:.2f} s after the events")
    return Incident(
        ip=ip,
        fingerprint=row.get_attribute("data-fingerprint"),
        produced=produced,
        shown=shown,
        time_origin=(origin, desk.page.evaluate("() => performance.timeOrigin")),
        navigations=len([u for u in navigations if u]),
    )


def test_an_alert_from_produced_events_appears_without_a_reload(
    world: World, incident: Incident
) -> None:
    from playwright.sync_api import expect

    desk = world.desk
    page = desk.page
    expect(page.get_by_test_id("session-user")).to_have_text("lan (operator)")
    assert page.url == world.url("/")
    # The page runs under its CSP (evaluate goes through DevTools, not the page's eval).
    policy = page.context.request.get(world.url("/")).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    # The same document all along: no navigation, no reload since the page was opened.
    assert incident.navigations == 0
    assert incident.time_origin[0] == incident.time_origin[1]
    row = desk.row(incident.fingerprint)
    expect(row).to_have_attribute("data-state", "firing")
    expect(row.get_by_test_id("alert-summary")).to_contain_text(f"Dò mật khẩu từ {incident.ip}")
    expect(row.get_by_test_id("alert-group")).to_contain_text("brute_force")
    assert desk.console("c.alerts()") >= 1
    assert desk.dialogs == []


def test_an_acknowledgement_reaches_the_viewers_page(world: World, incident: Incident) -> None:
    from playwright.sync_api import expect

    desk, viewer = world.desk, world.viewer
    expect(viewer.row(incident.fingerprint)).to_be_visible()
    watch_states(viewer, incident.fingerprint)
    desk.row(incident.fingerprint).click()
    ack = desk.page.get_by_test_id("ack")
    expect(ack).to_be_enabled()
    stamp_clicks(desk, "ack")
    ack.click()
    expect(viewer.row(incident.fingerprint)).to_have_attribute(
        "data-state", "acknowledged", timeout=15_000
    )
    clicked = desk.page.evaluate("() => window.__clicked")
    seen = viewer.page.evaluate("() => window.__states.acknowledged")
    delay = (seen - clicked) / 1000
    print(f"acknowledgement seen on the viewer's page {delay:.3f} s after the click")
    expect(desk.row(incident.fingerprint)).to_have_attribute("data-state", "acknowledged")
    expect(viewer.row(incident.fingerprint).get_by_test_id("alert-actor")).to_contain_text("lan")
    expect(desk.page.get_by_test_id("action-error")).to_be_hidden()


def test_a_viewer_sees_no_actions_and_its_post_is_refused(world: World, incident: Incident) -> None:
    from playwright.sync_api import expect

    viewer = world.viewer
    page = viewer.page
    expect(page.get_by_test_id("session-user")).to_have_text("vy (viewer)")
    viewer.row(incident.fingerprint).click()
    expect(page.get_by_test_id("details")).to_be_visible()
    for test_id in ("actions", "ack", "unsilence", "silence-form", "silence", "comment-form"):
        expect(page.get_by_test_id(test_id)).to_be_hidden()
    text = "a viewer's comment"
    answer = viewer.post(f"/api/alerts/{incident.fingerprint}/comment", {"text": text})
    assert answer["role"] == "viewer" and answer["csrf"] > 0
    assert answer["status"] == 403, answer
    answer = viewer.post(f"/api/alerts/{incident.fingerprint}/ack", {})
    assert answer["status"] == 403, answer
    entry = page.evaluate(
        """async (fp) => (await (await fetch('/api/alerts')).json()).alerts
             .find((a) => a.fingerprint === fp)""",
        incident.fingerprint,
    )
    assert text not in [c["text"] for c in entry["comments"]]


def test_a_silence_from_the_page_reaches_both_pages_and_alertmanager(
    world: World, incident: Incident
) -> None:
    from playwright.sync_api import expect

    desk, viewer = world.desk, world.viewer

    def in_alertmanager() -> list[dict[str, Any]]:
        return [
            a
            for a in world.am("/api/v2/alerts")
            if a["labels"].get("alertname") == "brute_force"
            and a["labels"].get("source_ip") == incident.ip
        ]

    # The sink sent the firing alert before anyone silenced it.
    [held] = wait_for(in_alertmanager, 60)
    assert held["status"]["state"] == "active"
    desk.row(incident.fingerprint).click()
    page = desk.page
    reason = f"bảo trì tường lửa {incident.ip}"
    page.get_by_test_id("silence-duration").select_option("3600")
    page.get_by_test_id("silence-reason").fill(reason)
    page.get_by_test_id("silence").click()
    for each in (desk, viewer):
        expect(each.row(incident.fingerprint)).to_have_attribute(
            "data-state", "silenced", timeout=15_000
        )
    expect(page.get_by_test_id("details-state")).to_have_text("Tạm tắt")
    expect(page.get_by_test_id("action-error")).to_be_hidden()

    def silence() -> list[dict[str, Any]]:
        # Its comment: the reason, then the console action's tag (sinks/silences.py).
        return [s for s in world.am("/api/v2/silences") if s["comment"].startswith(reason)]

    [made] = wait_for(silence, 60)
    assert made["status"]["state"] == "active" and made["createdBy"] == "lan"
    assert {"name": "source_ip", "value": incident.ip, "isRegex": False} in [
        {k: m[k] for k in ("name", "value", "isRegex")} for m in made["matchers"]
    ]
    hours = (parse_time(made["endsAt"]) - parse_time(made["startsAt"])).total_seconds() / 3600
    assert 0.95 < hours <= 1.0
    # Alertmanager holds the alert as suppressed, by that silence.
    [held] = wait_for(
        lambda: [a for a in in_alertmanager() if a["status"]["state"] == "suppressed"], 30
    )
    assert held["status"]["silencedBy"] == [made["id"]]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- hostile text -----------------------------------------------------------------------------


def test_labels_summaries_and_comments_are_shown_as_text(world: World) -> None:
    from playwright.sync_api import expect

    desk, viewer = world.desk, world.viewer
    script, img = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    hostile = pack_alert(
        "brute_force",
        {"source.ip": f"198.51.100.{secrets.randbelow(250)}", "user.name": script,
         "host.name": img},
        value=12, threshold=10, window="5m", minutes_ago=1,
    )  # fmt: skip
    hostile = replace(hostile, annotations={
        **hostile.annotations,
        "summary_vi": f"{script} {img} dò mật khẩu", "summary_en": f"{script} {img} brute force",
    })  # fmt: skip
    world.send_alerts([hostile])
    comment = "<script>alert(3)</script> <img src=x onerror=alert(4)> ghi chú"
    for each in (desk, viewer):
        row = each.row(hostile.fingerprint)
        expect(row).to_be_visible(timeout=30_000)
        group = row.get_by_test_id("alert-group").text_content() or ""
        assert script in group and img in group
        assert f"{script} {img}" in (row.get_by_test_id("alert-summary").text_content() or "")
    desk.row(hostile.fingerprint).click()
    desk.page.get_by_test_id("comment-text").fill(comment)
    desk.page.get_by_test_id("comment").click()
    for each in (desk, viewer):
        if each is viewer:
            each.row(hostile.fingerprint).click()
        item = each.page.get_by_test_id("details-comments").get_by_test_id("comment-item")
        expect(item).to_have_count(1, timeout=15_000)
        assert comment in (item.text_content() or "")
        labels = each.page.get_by_test_id("details-labels").text_content() or ""
        assert script in labels and img in labels
        # Nothing was parsed as HTML: no element made of the texts, no script ran.
        page = each.page
        for part in ("alert-list", "details"):
            made = page.locator(f'[data-testid="{part}"] img, [data-testid="{part}"] script')
            assert made.count() == 0, part
    desk.page.wait_for_timeout(500)  # an <img src=x> would have failed to load by now
    assert desk.dialogs == [] and viewer.dialogs == []


# -- the wall with a thousand alerts ------------------------------------------------------------


def test_the_wall_renders_a_thousand_alerts_and_keeps_up(world: World) -> None:
    from playwright.sync_api import expect

    desk = world.desk
    mark = secrets.token_hex(3)
    net = secrets.randbelow(200) + 20

    def one(n: int) -> Alert:
        """The n-th of a thousand: a silent sensor, a brute force or an overdue backlog."""
        if n % 3 == 0:
            return pack_alert(
                "sensor_silent",
                {"refDevice": f"HD-BULK-{mark}-{n:04d}"},
                value=None,
                window="15m",
                minutes_ago=n % 120,
            )
        if n % 3 == 1:
            return pack_alert(
                "brute_force",
                {"source.ip": f"10.{net}.{n // 250}.{n % 250}"},
                value=n % 50 + 11,
                threshold=10,
                window="5m",
                minutes_ago=n % 120,
            )
        return pack_alert("overdue_backlog", {"agency": f"SO-{mark}-{n:04d}", "kind": "dossier"},
                          value=n % 50 + 11, threshold=10, minutes_ago=n % 120)  # fmt: skip

    bulk = [one(n) for n in range(1000)]
    assert len({a.fingerprint for a in bulk}) == 1000
    before = desk.console("c.alerts()")
    world.send_alerts(bulk)
    wait_for(lambda: desk.console("c.alerts()") >= before + 1000, 60, every=0.2)
    total = desk.console("c.alerts()")

    wall = world.log_in(*VIEWER, viewport=WALL, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    page = wall.page
    page.goto(world.url("/?wall=1"))
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(page.locator('[data-testid="alert-row"]')).to_have_count(total, timeout=30_000)
    assert wall.console("c.alerts()") == total and wall.console("c.visible()") == total
    fingerprints = [a.fingerprint for a in bulk]
    missing = page.evaluate(
        '(fps) => fps.filter((fp) => !document.querySelector(`[data-fingerprint="${fp}"]`))',
        fingerprints,
    )
    assert missing == []
    renders = wall.console("c.recentRenders()")
    snapshot = max(renders, key=lambda r: r["rows"])
    assert snapshot["rows"] >= total
    print(f"wall: snapshot of {snapshot['rows']} alerts rendered in {snapshot['ms']:.1f} ms")

    def round_of(changed: list[Alert], state: str, batches: int) -> list[float]:
        count_before = wall.console("c.renderCount")
        sent = time.time()
        world.send_alerts(changed, batches=batches, pause_s=0.1)
        for alert in changed[::9]:  # a sample; then all of them at once
            expect(wall.row(alert.fingerprint)).to_have_attribute("data-state", state)
        shown = page.evaluate(
            "([fps, state]) => fps.filter((fp) => document.querySelector("
            '`[data-fingerprint="${fp}"]`)?.dataset.state === state).length',
            [[a.fingerprint for a in changed], state],
        )
        wait_for(
            lambda: page.evaluate(
                "([fps, state]) => fps.every((fp) => document.querySelector("
                '`[data-fingerprint="${fp}"]`)?.dataset.state === state)',
                [[a.fingerprint for a in changed], state],
            ),
            15,
            every=0.1,
        )
        took = time.time() - sent
        new = wall.console("c.renderCount") - count_before
        recent = wall.console("c.recentRenders()")[-new:] if new else []
        times = [r["ms"] for r in recent if r["rows"] > 0]
        print(
            f"wall: {len(changed)} {state} shown after {took:.2f} s ({shown} at the first look)"
            f" in {len(times)} renders"
        )
        return times

    chosen = bulk[:100]
    flapping = [replace(a, flapping=True) for a in chosen]
    later = int(time.time() * 1000)
    episodes = [replace(a, starts_at_ms=later) for a in chosen]
    # 100 flapping flags 5 at a time, 0.1 s apart; then 100 new episodes at once.
    times = round_of(flapping, "flapping", 20) + round_of(episodes, "firing", 1)
    assert times, "no render of the updates was measured"
    print(
        f"wall: update renders p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
        f" ({len(times)} renders); all renders max {wall.console('c.maxRenderMs'):.1f} ms"
    )
    expect(page.locator('[data-testid="alert-row"]')).to_have_count(total)
    assert wall.dialogs == []
    page.context.close()
