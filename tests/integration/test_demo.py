"""`ioc demo` as a user runs it: everything starts, counts, and stops."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.alerts import Alert
from models.derived import AQI_AGGREGATE, BACKLOG_AGGREGATE
from streams.core.windows import HourlyAqi, default_aggregates
from streams.devtools.brokers import kafka_answers
from streams.devtools.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def demo_env(tmp_path) -> tuple[dict[str, str], int, int]:
    broker_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "IOC_BROKER__PORT": str(broker_port),
        "IOC_WEB__PORT": str(web_port),
        "IOC_DATA_DIR": str(tmp_path / "data"),
        # The case backlog every 5 s, not every minute: a 25 s run sees it reported.
        "IOC_CASES__EMIT_EVERY_S": "5",
    }
    return env, broker_port, web_port


def web_answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
    except (urllib.error.URLError, OSError):
        return False
    return True


#: Every http(s) address in what the demo prints (up to a space or a parenthesis).
URL = re.compile(r"https?://[^\s()]+")
#: The console summary's credential lines: name, password, role.
CREDENTIAL = re.compile(r"^    (operator|viewer) +(\S+) +role (\w+):", re.MULTILINE)


def printed_urls(text: str) -> set[str]:
    return {url.rstrip(".,:;") for url in URL.findall(text)}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def status_of(url: str) -> int:
    """The status of a GET, redirects followed (the console's page goes to /login)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def login(web: str, name: str, password: str) -> tuple[int, str, dict[str, Any] | None]:
    """POST /login (not followed): status, Location, then /api/session with its cookie."""
    form = urllib.parse.urlencode({"name": name, "password": password}).encode()
    try:
        urllib.request.build_opener(_NoRedirect).open(f"{web}/login", data=form, timeout=10)
    except urllib.error.HTTPError as exc:
        status, location = exc.code, exc.headers.get("Location", "")
        cookie = (exc.headers.get("Set-Cookie") or "").split(";", 1)[0]
    else:
        return 200, "", None
    if not cookie:
        return status, location, None
    request = urllib.request.Request(f"{web}/api/session", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as response:
        return status, location, json.loads(response.read())


@dataclass
class DemoRun:
    """A demo run to its end, and what its printed addresses and logins answered while
    it ran (probed as soon as it printed the console's credentials)."""

    result: subprocess.CompletedProcess[str]
    answers: dict[str, int] = field(default_factory=dict)  # printed URL → status
    logins: dict[str, tuple[int, str, dict[str, Any] | None]] = field(default_factory=dict)


def run_demo(command: list[str], env: dict[str, str], web_port: int, timeout: float) -> DemoRun:
    demo = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    errors: list[str] = []
    printed = threading.Event()

    def read_stdout() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("    viewer "):  # the last of the credentials
                printed.set()
        printed.set()

    def read_stderr() -> None:
        assert demo.stderr is not None
        errors.append(demo.stderr.read())

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    run = DemoRun(subprocess.CompletedProcess(command, -1))
    try:
        printed.wait(timeout)
        text = "".join(lines)
        if demo.poll() is None:
            run.answers = {url: status_of(url) for url in printed_urls(text)}
            web = f"http://127.0.0.1:{web_port}"
            for name, password, _ in CREDENTIAL.findall(text):
                run.logins[name] = login(web, name, password)
        demo.wait(timeout)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for reader in readers:
            reader.join()
    run.result = subprocess.CompletedProcess(command, demo.returncode, "".join(lines), *errors)
    return run


def assert_every_address_answered(run: DemoRun, web_port: int) -> None:
    """The console's addresses and its credentials came, every address printed
    (then or later: the end repeats the banner's) answered < 400 while the demo ran,
    and the printed operator and viewer could log in with their roles."""
    stdout = run.result.stdout
    web = f"http://127.0.0.1:{web_port}"
    assert f"console ready at {web}/ (wall layout: {web}/?wall=1)" in stdout, stdout
    assert "  demo credentials, new for this run (users file " in stdout
    assert {f"{web}/", f"{web}/?wall=1", f"{web}/metrics"} <= set(run.answers), run.answers
    assert printed_urls(stdout + run.result.stderr) <= set(run.answers), run.answers
    assert {url: status for url, status in run.answers.items() if not 200 <= status < 400} == {}
    credentials = {name: role for name, _, role in CREDENTIAL.findall(stdout)}
    assert credentials == {"operator": "operator", "viewer": "viewer"}
    for name in ("operator", "viewer"):
        status, location, session = run.logins[name]
        assert (status, location) == (303, "/"), (name, status, location)
        assert session is not None and session["user"] == name and session["role"] == name


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[DemoRun, Path, int, int]:
    """One short demo after 26 h of history, shared by the tests that read its output.

    26 h so that yesterday's local day has closed (end + 30 min grace) whatever the time
    of day; at one reading per device per 5 min that is ~33k messages, a few seconds."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env, broker_port, web_port = demo_env(tmp_path)
    manifest = tmp_path / "manifest.json"
    command = [
        sys.executable,
        "-m",
        "streams.cli",
        "demo",
        "--duration",
        "25",
        "--rate",
        "300",
        "--bad-share",
        "0.05",
        "--backfill",
        "26h",
        "--manifest",
        str(manifest),
    ]
    return run_demo(command, env, web_port, timeout=240), manifest, broker_port, web_port


def test_demo_prints_the_console_and_its_credentials_and_every_address_answers(demo_run):
    run, _, _, web_port = demo_run
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert_every_address_answered(run, web_port)


def test_demo_counts_every_family_and_dead_letters_then_stops(demo_run):
    run, manifest, broker_port, web_port = demo_run
    result = run.result
    assert result.returncode == 0, result.stdout + result.stderr
    for family in ("city", "services", "security"):
        assert f"ioc_ingest_events_accepted_total{{family={family}}}" in result.stdout
    assert "ioc_ingest_events_rejected_total{error=json" in result.stdout
    assert "ioc_ingest_events_rejected_total{error=schema" in result.stdout
    assert "ioc_windows_late_events_total" not in result.stdout  # history read in order
    written = orjson.loads(manifest.read_bytes())
    assert written["incidents"] and written["backfill"]["incidents"] == []
    assert not kafka_answers("127.0.0.1", broker_port)
    assert not web_answers(web_port)


def expected_aggregates() -> list[str]:
    """The default pack's aggregates and those derived from its results."""
    pack = default_aggregates()
    names = [aggregate.name for aggregate in pack]
    if HourlyAqi.for_pack(pack) is not None:
        names.append(AQI_AGGREGATE)
    return [*names, BACKLOG_AGGREGATE]


def test_demo_shows_final_results_for_every_aggregate(demo_run):
    result = demo_run[0].result
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("ioc.aggregates, read back from the beginning:\n", 1)[1]
    finals = {}
    for line in table.splitlines()[1:]:
        match = re.fullmatch(r"  (\w+) +(\d+) +(\d+)", line)
        if match:
            finals[match[1]] = int(match[2])
    expected = expected_aggregates()
    assert len(expected) >= 13
    assert {name for name in expected if not finals.get(name)} == set(), table
    assert "no final result" not in table


def test_ctrl_c_stops_the_whole_tree(tmp_path):
    env, broker_port, web_port = demo_env(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--rate", "100"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not web_answers(web_port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert web_answers(web_port) and kafka_answers("127.0.0.1", broker_port)
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    assert b"stopped the worker and the broker" in output
    assert not kafka_answers("127.0.0.1", broker_port)
    assert not web_answers(web_port)


def test_demo_alerts_on_the_incidents_of_the_run(demo_run):
    """ioc.alerts, as the demo copies it to its log dir, has a firing alert for each
    security incident of the manifest, and the flood's level alerts resolved.

    In 25 s only rules without `keep_firing_for` can resolve: the flood (30–80 % of the
    run) recedes below the alert level by its end, so `water_above_alert_level` and
    `water_above_danger_level` resolve. The security rules keep firing for 5 min to 1 h
    after their window (docs/RULES.md), far past the end of the run."""
    run, manifest, _, _ = demo_run
    result = run.result
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  results  ioc.aggregates (window results), ioc.alerts" in result.stdout
    assert re.search(r"\[ *\d+ s\] .* · alerts \d+ firing / \d+ resolved", result.stdout)
    table = result.stdout.split("ioc.alerts, read back from the beginning", 1)[1]
    assert "(not read to the end in time" not in table
    alerts = [
        Alert.from_json(line)
        for line in (manifest.parent / "data" / "demo" / "alerts.jsonl").read_bytes().splitlines()
    ]
    start_ms = int(
        datetime.fromisoformat(orjson.loads(manifest.read_bytes())["start"]).timestamp() * 1000
    )
    live = [alert for alert in alerts if alert.starts_at_ms >= start_ms]
    incidents = {i["kind"]: i for i in orjson.loads(manifest.read_bytes())["incidents"]}

    def states(rule: str, **labels: str) -> set[str]:
        return {
            alert.state
            for alert in live
            if alert.rule == rule and all(alert.labels.get(k) == v for k, v in labels.items())
        }

    brute = incidents["brute_force"]
    firing = {
        "brute_force": {"source.ip": brute["entity"]},
        "possible_compromise": {
            "source.ip": brute["entity"],
            "user.name": brute["details"]["user"],
        },
        "password_spraying": {"source.ip": incidents["password_spraying"]["entity"]},
        "port_scan": {"source.ip": incidents["port_scan"]["entity"]},
        "malware_spreading": {"file.hash.sha256": incidents["malware_outbreak"]["entity"]},
    }
    # The agency left with a dozen dossiers past due: its backlog, summed over the
    # case stage's partitions, passes overdue_backlog's 10.
    firing["overdue_backlog"] = {"agency": incidents["overdue_dossiers"]["entity"]}
    for rule, labels in firing.items():
        assert "firing" in states(rule, **labels), (rule, labels, table)
    malware = incidents["malware_outbreak"]
    hosts = {
        alert.labels["host.name"]
        for alert in live
        if alert.rule == "malware_seen" and alert.labels["file.hash.sha256"] == malware["entity"]
    }
    assert hosts == set(malware["details"]["hosts"]), table
    gauge = incidents["flood_rise"]["entity"]
    for rule in ("water_above_alert_level", "water_above_danger_level"):
        assert states(rule, refDevice=gauge) == {"firing", "resolved"}, (rule, table)
    # Each rule's row counts what the log dir holds.
    rows = dict(re.findall(r"^  (\w+) +(\d+) +\d+ +\d+$", table, re.MULTILINE))
    assert int(rows["brute_force"]) == len(
        {a.identity for a in alerts if a.rule == "brute_force" and a.state == "firing"}
    )


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def processes_under(directory: Path) -> list[str]:
    """Command lines of running processes that mention `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in command:
            found.append(command)
    return found


def test_demo_with_sinks_fills_victoriametrics_and_alertmanager_then_stops(tmp_path):
    """`ioc demo --with-sinks`: every address it prints answers (the servers' query
    APIs, the worker's /sinks), the window finals of several aggregates reach its
    VictoriaMetrics, the run's attacks are active alerts in its Alertmanager (label
    `source_ip`), and nothing is left running or listening afterwards."""
    env, broker_port, web_port = demo_env(tmp_path)
    vm_port, am_port = free_port(), free_port()
    manifest = tmp_path / "manifest.json"
    command = [
        sys.executable, "-m", "streams.cli", "demo", "--with-sinks",
        "--victoriametrics-port", str(vm_port), "--alertmanager-port", str(am_port),
        "--duration", "25", "--rate", "300", "--backfill", "26h", "--manifest", str(manifest),
    ]  # fmt: skip
    run = run_demo(command, env, web_port, timeout=300)
    result = run.result
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Debian's packages have no UI: their query APIs, which answer, are printed instead.
    victoria = f"http://127.0.0.1:{vm_port}/api/v1/query?query=ioc_aggregate_aqi&step=1d"
    assert f"  victoria {victoria} (VictoriaMetrics' query API" in result.stdout
    assert f"  alerts   http://127.0.0.1:{am_port}/api/v2/alerts (Alertmanager" in result.stdout
    assert f"  sinks    http://127.0.0.1:{web_port}/sinks " in result.stdout
    assert "/vmui" not in output
    assert_every_address_answered(run, web_port)

    table = result.stdout.split("ioc_aggregate_* by aggregate:\n", 1)[1].split("Alertmanager", 1)[0]
    points = {
        match[1]: int(match[3])
        for match in re.finditer(r"^  (\w+) +(\d+) +(\d+)$", table, re.MULTILINE)
    }
    # City, services and security aggregates with bounded labels, and the case backlog.
    for aggregate in (
        "air_station_5m", "water_level_5m", "traffic_counter_5m", "aqi_station_1h",
        "dossiers_received_daily", "security_events_by_category_5m", "case_backlog",
    ):  # fmt: skip
        assert points.get(aggregate, 0) > 0, (aggregate, table)
    assert re.search(r"^  timeseries +up: written [1-9]\d*, rejected 0", output, re.MULTILINE)
    assert re.search(r"^  alertmanager +up: written [1-9]\d*, rejected 0", output, re.MULTILINE)

    active = json.loads((tmp_path / "data" / "demo" / "alertmanager-alerts.json").read_bytes())
    incidents = {i["kind"]: i for i in orjson.loads(manifest.read_bytes())["incidents"]}
    held = {(a["labels"]["alertname"], a["labels"].get("source_ip")) for a in active}
    for rule, incident in (
        ("brute_force", "brute_force"),
        ("possible_compromise", "brute_force"),
        ("password_spraying", "password_spraying"),
        ("port_scan", "port_scan"),
    ):
        assert (rule, incidents[incident]["entity"]) in held, (rule, sorted(held))
    malware = incidents["malware_outbreak"]["entity"]
    assert any(
        a["labels"]["alertname"] == "malware_spreading"
        and a["labels"].get("file_hash_sha256") == malware
        for a in active
    ), sorted(held)
    assert re.search(r"^  brute_force +[1-9]\d*$", result.stdout, re.MULTILINE)

    assert "stopped VictoriaMetrics and Alertmanager" in result.stdout
    for port in (vm_port, am_port, web_port, broker_port):
        assert not port_open(port), port
    assert processes_under(tmp_path) == []
