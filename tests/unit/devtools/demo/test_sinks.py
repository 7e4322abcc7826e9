"""`ioc demo --with-sinks`: the worker's settings for the demo's own servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.devtools.demo.options import DemoOptions
from streams.devtools.demo.sinks import SinkServers, sink_environment
from streams.worker.settings import Settings


def test_the_sink_environment_configures_both_sinks(monkeypatch: pytest.MonkeyPatch):
    environment = sink_environment("http://127.0.0.1:8428", "http://127.0.0.1:9093")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    sinks = Settings().sinks
    assert sinks.timeseries is not None and sinks.alertmanager is not None
    assert sinks.timeseries.kind == "victoriametrics"
    assert sinks.timeseries.write_url() == "http://127.0.0.1:8428/write?precision=ms"
    assert sinks.alertmanager.url == "http://127.0.0.1:9093"


def test_the_servers_live_under_the_log_directory_on_the_ports_asked_for(tmp_path: Path):
    options = DemoOptions(with_sinks=True, victoriametrics_port=18428, alertmanager_port=19093)
    servers = SinkServers.under(tmp_path, options)
    assert servers.victoria.directory == tmp_path / "victoria-metrics"
    assert servers.alertmanager.directory == tmp_path / "alertmanager"
    assert servers.environment() == sink_environment(
        "http://127.0.0.1:18428", "http://127.0.0.1:19093"
    )
