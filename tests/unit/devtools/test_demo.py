"""What `ioc demo` prints about `ioc.aggregates` and `ioc.alerts`, and which aggregates
and rules it expects."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from models.alerts import Alert, fingerprint
from models.rules import default_rules
from streams.core.windows import default_aggregates
from streams.devtools.demo import (
    Samples,
    Tally,
    _aggregates_summary,
    _alertmanager_summary,
    _alerts_summary,
    _sinks_summary,
    _victoriametrics_summary,
    alert_counts,
    expected_aggregates,
    expected_rules,
    sink_environment,
)
from streams.devtools.servers import (
    INSTALL_HINT,
    LocalAlertmanager,
    LocalVictoriaMetrics,
    ServerError,
    alertnames,
    tally_export,
)
from streams.worker.settings import Settings

PACK = """
aggregates:
  - name: noise_5m
    family: city
    filter: {type: NoiseLevelObserved}
    group_by: [refDevice]
    values: [LAeq]
    statistics: [mean]
    window: {size: 5m}
"""


def test_expected_are_the_pack_then_what_is_derived_from_it(tmp_path: Path):
    names = expected_aggregates(Settings())
    pack = [aggregate.name for aggregate in default_aggregates()]
    assert names == [*pack, "aqi_station_1h", "case_backlog"]

    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    settings = Settings(windows={"aggregates": path})
    # No air_station_1h to derive the AQI from; the case backlog comes from its own stage.
    assert expected_aggregates(settings) == ["noise_5m", "case_backlog"]


def test_the_summary_counts_each_aggregate_and_names_those_without_a_final():
    tally: Tally = Counter({("a", True): 3, ("a", False): 7, ("b", False): 2, ("extra", True): 1})
    lines = _aggregates_summary(tally, True, ["a", "b", "c"])
    rows = [line.split() for line in lines[1:4]]
    assert rows == [["a", "3", "7"], ["b", "0", "2"], ["c", "0", "0"]]
    assert lines[4].split() == ["extra", "1", "0"]  # not configured, still shown
    assert lines[-1] == "no final result for: b, c"

    done = _aggregates_summary(Counter({("a", True): 1}), True, ["a"])
    assert done[-1] == "every configured aggregate (1) has final results"
    partial = _aggregates_summary(Counter({("a", True): 1}), False, ["a"])
    assert "partial" in partial[-2]


def test_alert_counts_sum_the_rule_stage_counter_by_state():
    samples: Samples = {
        ("ioc_rules_alerts_total", (("rule", "a"), ("state", "firing"))): 3.0,
        ("ioc_rules_alerts_total", (("rule", "b"), ("state", "firing"))): 2.0,
        ("ioc_rules_alerts_total", (("rule", "a"), ("state", "resolved"))): 1.0,
        ("ioc_rules_alerts_created", (("rule", "a"), ("state", "firing"))): 1e9,
        ("ioc_rules_inputs_total", (("rule", "a"),)): 50.0,
    }
    assert alert_counts(samples) == (5.0, 1.0)
    assert alert_counts({}) == (0.0, 0.0)


def test_expected_rules_are_the_default_pack():
    assert expected_rules(Settings()) == [rule.name for rule in default_rules()]


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
    lines = _alerts_summary(alerts, True, ["brute_force", "port_scan", "quiet"], LIVE, 1, 2)
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

    only_history = _alerts_summary(alerts[:1], False, ["brute_force"], LIVE)
    assert "  2026-11-26 02:00:00Z (history) warning" in only_history
    assert "(not read to the end in time: the counts are partial)" in only_history

    # Without a live start there is no history column.
    assert _alerts_summary([], True, ["a"])[0].split() == ["rule", "firing", "resolved"]


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

    summary = _victoriametrics_summary(tally)
    assert summary[0].split() == ["aggregate", "series", "points"]
    assert summary[2].split() == ["air_station_5m", "2", "6"]
    assert summary[-1].startswith("9 points in 4 series of 3 aggregates")
    assert _victoriametrics_summary({}) == ["  no ioc_aggregate_* series"]


def test_active_alerts_are_counted_by_alertname():
    alerts = [
        {"labels": {"alertname": "brute_force", "source_ip": "198.51.100.2"}},
        {"labels": {"alertname": "brute_force", "source_ip": "203.0.113.9"}},
        {"labels": {"alertname": "port_scan"}},
        {"labels": {}},
    ]
    names = alertnames(alerts)
    assert names == Counter({"brute_force": 2, "port_scan": 1, "?": 1})
    lines = _alertmanager_summary(names)
    assert [line.split() for line in lines[:4]] == [
        ["alertname", "active"],
        ["?", "1"],
        ["brute_force", "2"],
        ["port_scan", "1"],
    ]
    assert lines[-1] == "4 active alerts of 3 rules"
    assert _alertmanager_summary(Counter()) == ["  no active alert"]


def test_the_sinks_summary_is_one_line_per_sink():
    status = {
        "timeseries": {"state": "up", "written": 10, "rejected": 0, "retries": 2, "queued": 0,
                       "skipped": 5, "last_error": None},
        "alertmanager": {"state": "retrying", "written": 0, "rejected": 1, "retries": 3,
                         "queued": 4, "last_error": "HTTP 503"},
    }  # fmt: skip
    assert _sinks_summary(status) == [
        "  alertmanager  retrying: written 0, rejected 1, retries 3, queued 4"
        " · last error: HTTP 503",
        "  timeseries    up: written 10, rejected 0, retries 2, queued 0,"
        " skipped 5 (unbounded labels)",
    ]
    assert _sinks_summary({}) == ["  no answer from the worker"]


def test_the_sink_environment_configures_both_sinks(monkeypatch: pytest.MonkeyPatch):
    environment = sink_environment("http://127.0.0.1:8428", "http://127.0.0.1:9093")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    sinks = Settings().sinks
    assert sinks.timeseries is not None and sinks.alertmanager is not None
    assert sinks.timeseries.kind == "victoriametrics"
    assert sinks.timeseries.write_url() == "http://127.0.0.1:8428/write?precision=ms"
    assert sinks.alertmanager.url == "http://127.0.0.1:9093"


def test_servers_run_with_the_flags_the_sinks_need(tmp_path: Path):
    victoria = LocalVictoriaMetrics(tmp_path / "vm", port=18428)
    assert victoria.url == "http://127.0.0.1:18428"
    assert victoria.ui_url == "http://127.0.0.1:18428/vmui"
    command = victoria.command("victoria-metrics")
    assert "-dedup.minScrapeInterval=1ms" in command
    assert "-retentionPeriod=100y" in command
    assert "-httpListenAddr=127.0.0.1:18428" in command
    assert f"-storageDataPath={tmp_path / 'vm' / 'data'}" in command

    alertmanager = LocalAlertmanager(tmp_path / "am")
    assert alertmanager.port > 0
    command = alertmanager.command("prometheus-alertmanager")
    assert "--cluster.listen-address=" in command
    assert f"--web.listen-address=127.0.0.1:{alertmanager.port}" in command


def test_a_missing_binary_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for server in (LocalVictoriaMetrics(tmp_path / "vm"), LocalAlertmanager(tmp_path / "am")):
        with pytest.raises(ServerError, match=r"make system-deps") as raised:
            server.start()
        assert INSTALL_HINT in str(raised.value)
        assert server.process is None
