"""The worker the sink tests run: writes to the real VictoriaMetrics and Alertmanager
of the `servers` fixture (conftest.py)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Servers, Worker
from tests.integration.test_windows import AGGREGATES_YAML


def sink_worker(
    bootstrap: str, servers: Servers, directory: Path, rules_yaml: str, **env: str
) -> Worker:
    """A worker with the windows test's aggregates, `rules_yaml`, and both sinks."""
    victoria, alertmanager = servers
    (directory / "aggregates.yaml").write_text(AGGREGATES_YAML)
    (directory / "rules.yaml").write_text(rules_yaml)
    return Worker(
        bootstrap,
        directory,
        IOC_WINDOWS__AGGREGATES=str(directory / "aggregates.yaml"),
        IOC_WINDOWS__IDLE_TIMEOUT_S="600",  # only event time closes these windows
        IOC_WINDOWS__ALLOWED_LATENESS_S="5",
        IOC_RULES__RULES=str(directory / "rules.yaml"),
        IOC_SINKS__TIMESERIES__URL=victoria.url,
        IOC_SINKS__ALERTMANAGER__URL=alertmanager.url,
        **env,
    )
