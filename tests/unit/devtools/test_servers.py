"""The local VictoriaMetrics and Alertmanager (`ioc demo --with-sinks`, the tests)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from streams.devtools.servers import (
    INSTALL_HINT,
    LocalAlertmanager,
    LocalVictoriaMetrics,
    ServerError,
    alertnames,
)


def test_active_alerts_are_counted_by_alertname():
    alerts = [
        {"labels": {"alertname": "brute_force", "source_ip": "198.51.100.2"}},
        {"labels": {"alertname": "brute_force", "source_ip": "203.0.113.9"}},
        {"labels": {"alertname": "port_scan"}},
        {"labels": {}},
    ]
    assert alertnames(alerts) == Counter({"brute_force": 2, "port_scan": 1, "?": 1})


def test_servers_run_with_the_flags_the_sinks_need(tmp_path: Path):
    victoria = LocalVictoriaMetrics(tmp_path / "vm", port=18428)
    assert victoria.url == "http://127.0.0.1:18428"
    # Debian's package has no /vmui: the demo shows the query API.
    assert victoria.query_url("ioc_aggregate_aqi") == (
        "http://127.0.0.1:18428/api/v1/query?query=ioc_aggregate_aqi&step=1d"
    )
    command = victoria.command("victoria-metrics")
    assert "-dedup.minScrapeInterval=1ms" in command
    assert "-retentionPeriod=100y" in command
    assert "-httpListenAddr=127.0.0.1:18428" in command
    assert f"-storageDataPath={tmp_path / 'vm' / 'data'}" in command

    alertmanager = LocalAlertmanager(tmp_path / "am")
    assert alertmanager.port > 0
    assert alertmanager.alerts_url == f"http://127.0.0.1:{alertmanager.port}/api/v2/alerts"
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
