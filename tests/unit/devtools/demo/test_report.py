"""What `ioc demo` prints about `ioc.aggregates`, `ioc.alerts` and the sinks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from models.alerts import Alert, fingerprint
from streams.devtools.demo.options import DemoOptions
from streams.devtools.demo.readback import Tally
from streams.devtools.demo.report import (
    aggregates_summary,
    alertmanager_summary,
    alerts_summary,
    banner,
    console_summary,
    counters_summary,
    sinks_summary,
    victoriametrics_summary,
)
from streams.devtools.scrape import Samples
from streams.devtools.servers import alertnames, tally_export


def test_the_summary_counts_each_aggregate_and_names_those_without_a_final():
    tally: Tally = Counter({("a", True): 3, ("a", False): 7, ("b", False): 2, ("extra", True): 1})
    lines = aggregates_summary(tally, True, ["a", "b", "c"])
    rows = [line.split() for line in lines[1:4]]
    assert rows == [["a", "3", "7"], ["b", "0", "2"], ["c", "0", "0"]]
    assert lines[4].split() == ["extra", "1", "0"]  # not configured, still shown
    assert lines[-1] == "no final result for: b, c"

    done = aggregates_summary(Counter({("a", True): 1}), True, ["a"])
    assert done[-1] == "every configured aggregate (1) has final results"
    partial = aggregates_summary(Counter({("a", True): 1}), False, ["a"])
    assert "partial" in partial[-2]


LIVE = 1_795_662_000_000  # 2026-11-26T03:00:00Z


def alert(rule: str, ip: str, state: str, starts: int, *, flapping: bool = False) -> Alert:
    labels = {"alertname": rule, "severity": "warning", "source.ip": ip}
    return Alert(
        fingerprint=fingerprint(labels),
        state=state,  # type: ignore[arg-type]
        starts_at_ms=starts,
        ends_at_ms=None if state == "firing" else starts + 60_000,
        labels=labels,
        annotations={"summary_vi": f"Dò mật khẩu từ {ip}", "summary_en": f"Brute force from {ip}"},
        kind="count",
        flapping=flapping,
    )


def test_the_alerts_summary_counts_per_rule_then_shows_live_alerts_first():
    alerts = [
        alert("brute_force", "10.0.0.1", "firing", LIVE - 3_600_000),  # in the history
        alert("brute_force", "203.0.113.7", "firing", LIVE + 30_000),
        alert("brute_force", "10.0.0.1", "resolved", LIVE - 3_600_000),
        alert("brute_force", "198.51.100.9", "firing", LIVE + 20_000),
        # The same identity again (its flapping flag changed): one alert, not two.
        alert("brute_force", "198.51.100.9", "firing", LIVE + 20_000, flapping=True),
        alert("port_scan", "203.0.113.8", "firing", LIVE + 40_000),
    ]
    lines = alerts_summary(alerts, True, ["brute_force", "port_scan", "quiet"], LIVE, 1, 2)
    assert lines[0].split() == ["rule", "firing", "resolved", "history"]
    assert [line.split() for line in lines[1:4]] == [
        ["brute_force", "3", "1", "1"],
        ["port_scan", "1", "0", "0"],
        ["quiet", "0", "0", "0"],
    ]
    assert "1 records repeated an identity already written (counted once)" in lines
    assert "1 records were not alerts" in lines
    assert "no alert from: quiet" in lines
    assert not any("partial" in line for line in lines)
    examples = lines[lines.index("brute_force (first 2 of 3):") :]
    assert examples[1:7] == [
        "  2026-11-26 03:00:20Z warning flapping",
        "    vi: Dò mật khẩu từ 198.51.100.9",
        "    en: Brute force from 198.51.100.9",
        "  2026-11-26 03:00:30Z warning",
        "    vi: Dò mật khẩu từ 203.0.113.7",
        "    en: Brute force from 203.0.113.7",
    ]
    assert examples[7] == "port_scan:"

    only_history = alerts_summary(alerts[:1], False, ["brute_force"], LIVE)
    assert "  2026-11-26 02:00:00Z (history) warning" in only_history
    assert "(not read to the end in time: the counts are partial)" in only_history

    # Without a live start there is no history column.
    assert alerts_summary([], True, ["a"])[0].split() == ["rule", "firing", "resolved"]


def test_the_export_is_counted_per_aggregate_in_series_and_points():
    def series(metric: str, aggregate: str | None, points: int) -> str:
        labels = {"__name__": metric, "refDevice": "HD-AQ-001"}
        if aggregate is not None:
            labels["aggregate"] = aggregate
        return json.dumps(
            {"metric": labels, "values": [1.0] * points, "timestamps": list(range(points))}
        )

    lines = [
        series("ioc_aggregate_pm25_mean", "air_station_5m", 3),
        series("ioc_aggregate_count", "air_station_5m", 3),
        "",
        series("ioc_aggregate_open", "case_backlog", 2),
        series("ioc_aggregate_count", None, 1),
    ]
    tally = tally_export(lines)
    assert tally == {"?": (1, 1), "air_station_5m": (2, 6), "case_backlog": (1, 2)}
    assert list(tally) == sorted(tally)
    assert tally_export([line.encode() for line in lines]) == tally  # bytes as read

    summary = victoriametrics_summary(tally)
    assert summary[0].split() == ["aggregate", "series", "points"]
    assert summary[2].split() == ["air_station_5m", "2", "6"]
    assert summary[-1].startswith("9 points in 4 series of 3 aggregates")
    assert victoriametrics_summary({}) == ["  no ioc_aggregate_* series"]


def test_active_alerts_are_counted_by_alertname():
    alerts = [
        {"labels": {"alertname": "brute_force", "source_ip": "198.51.100.2"}},
        {"labels": {"alertname": "brute_force", "source_ip": "203.0.113.9"}},
        {"labels": {"alertname": "port_scan"}},
        {"labels": {}},
    ]
    names = alertnames(alerts)
    assert names == Counter({"brute_force": 2, "port_scan": 1, "?": 1})
    lines = alertmanager_summary(names)
    assert [line.split() for line in lines[:4]] == [
        ["alertname", "active"],
        ["?", "1"],
        ["brute_force", "2"],
        ["port_scan", "1"],
    ]
    assert lines[-1] == "4 active alerts of 3 rules"
    assert alertmanager_summary(Counter()) == ["  no active alert"]


def test_the_sinks_summary_is_one_line_per_sink():
    status = {
        "timeseries": {"state": "up", "written": 10, "rejected": 0, "retries": 2, "queued": 0,
                       "skipped": 5, "last_error": None},
        "alertmanager": {"state": "retrying", "written": 0, "rejected": 1, "retries": 3,
                         "queued": 4, "last_error": "HTTP 503"},
    }  # fmt: skip
    assert sinks_summary(status) == [
        "  alertmanager  retrying: written 0, rejected 1, retries 3, queued 4"
        " · last error: HTTP 503",
        "  timeseries    up: written 10, rejected 0, retries 2, queued 0,"
        " skipped 5 (unbounded labels)",
    ]
    assert sinks_summary({}) == ["  no answer from the worker"]


def test_the_counters_summary_shows_the_ioc_counters_that_counted():
    samples: Samples = {
        ("ioc_ingest_messages_total", (("family", "city"),)): 12.0,
        ("ioc_ingest_events_rejected_total", (("error", "json"),)): 0.0,
        ("ioc_ingest_messages_created", (("family", "city"),)): 1e9,
        ("python_gc_collections_total", (("generation", "0"),)): 3.0,
    }
    assert counters_summary(samples) == ["  ioc_ingest_messages_total{family=city} 12"]


def test_the_banner_says_where_everything_is(tmp_path: Path):
    options = DemoOptions(rate=300, seed=7, bad_share=0.05, duration=25, backfill=26 * 3600)
    text = banner(options, bootstrap="127.0.0.1:9092", web="http://127.0.0.1:6066", logs=tmp_path)
    lines = text.splitlines()
    assert lines[:4] == [
        "ioc demo",
        "  broker   127.0.0.1:9092 (embedded Tansu, memory only)",
        "  console  http://127.0.0.1:6066/ (the operators' console;"
        " logins below once the worker is ready)",
        "  metrics  http://127.0.0.1:6066/metrics",
    ]
    assert lines[4] == f"  logs     {tmp_path}/"
    assert "  traffic  300 messages/s, seed 7, 5% malformed, 25 s" in lines
    assert any(line.startswith("  history  the 26 h before now first") for line in lines)
    assert lines[-1] == "Ctrl-C stops everything."
    assert "victoria" not in text.lower() and "alertmanager" not in text.lower()

    with_sinks = banner(
        DemoOptions(backfill=0),
        bootstrap="127.0.0.1:9092",
        web="http://127.0.0.1:6066",
        logs=tmp_path,
        victoriametrics="http://127.0.0.1:8428/api/v1/query?query=ioc_aggregate_aqi&step=1d",
        alertmanager="http://127.0.0.1:9093/api/v2/alerts",
    )
    assert (
        "  victoria http://127.0.0.1:8428/api/v1/query?query=ioc_aggregate_aqi&step=1d"
        " (VictoriaMetrics' query API" in with_sinks
    )
    assert "  alerts   http://127.0.0.1:9093/api/v2/alerts (Alertmanager's API" in with_sinks
    assert "  sinks    http://127.0.0.1:6066/sinks (each sink's state as JSON;" in with_sinks
    # No UI that Debian's packages lack: neither /vmui nor Alertmanager's page.
    assert "vmui" not in with_sinks and "http://127.0.0.1:9093 " not in with_sinks
    assert "history" not in with_sinks


def test_the_console_summary_gives_the_addresses_and_the_demo_credentials(tmp_path: Path):
    users_file = tmp_path / "users.json"
    lines = console_summary(
        "http://127.0.0.1:6066",
        {"operator": "op-secret-1234", "viewer": "view-secret-56"},
        {"operator": "operator", "viewer": "viewer"},
        users_file,
    )
    assert lines == [
        "console ready at http://127.0.0.1:6066/ (wall layout: http://127.0.0.1:6066/?wall=1)",
        f"  demo credentials, new for this run (users file {users_file}):",
        "    operator  op-secret-1234  role operator: acknowledge, silence, unsilence, comment",
        "    viewer    view-secret-56  role viewer: read only",
    ]

    again = console_summary(
        "http://127.0.0.1:6066",
        {"operator": "a" * 16, "viewer": "b" * 16},
        {"operator": "operator", "viewer": "viewer"},
        users_file,
        reset=("operator", "viewer"),
    )
    assert again[-1] == (
        "  operator, viewer were in the users file already: password reset for this run"
    )
    one = console_summary("http://h:1", {"viewer": "c" * 16}, {"viewer": "viewer"}, users_file,
                          reset=["viewer"])  # fmt: skip
    assert one[-1] == "  viewer was in the users file already: password reset for this run"
