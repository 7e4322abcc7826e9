"""`ioc demo --with-sinks`: a local VictoriaMetrics and Alertmanager for the worker's
time-series and Alertmanager sinks, and what they hold at the end."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.devtools.demo.options import DemoOptions
from streams.devtools.demo.report import (
    alertmanager_summary,
    sinks_summary,
    victoriametrics_summary,
)
from streams.devtools.demo.worker import wait_for_sinks
from streams.devtools.servers import LocalAlertmanager, LocalVictoriaMetrics, alertnames

__all__ = ["SinkServers", "sink_environment"]


def sink_environment(victoriametrics_url: str, alertmanager_url: str) -> dict[str, str]:
    """The worker's settings (environment) for sinks into the demo's own servers."""
    return {
        "IOC_SINKS__TIMESERIES__KIND": "victoriametrics",
        "IOC_SINKS__TIMESERIES__URL": victoriametrics_url,
        "IOC_SINKS__ALERTMANAGER__URL": alertmanager_url,
    }


@dataclass(frozen=True)
class SinkServers:
    """The two servers, with their data and logs under the demo's log directory."""

    victoria: LocalVictoriaMetrics
    alertmanager: LocalAlertmanager

    @classmethod
    def under(cls, logs: Path, options: DemoOptions) -> SinkServers:
        return cls(
            LocalVictoriaMetrics(logs / "victoria-metrics", port=options.victoriametrics_port),
            LocalAlertmanager(logs / "alertmanager", port=options.alertmanager_port),
        )

    def check_installed(self) -> None:
        """Raises ServerError, saying how to install them, when a binary is missing."""
        self.victoria.check_installed()
        self.alertmanager.check_installed()

    def start(self) -> None:
        self.victoria.start()
        self.alertmanager.start()

    def stop(self) -> None:
        self.victoria.stop()
        self.alertmanager.stop()

    def environment(self) -> dict[str, str]:
        """The worker's settings for sinks into these servers."""
        return sink_environment(self.victoria.url, self.alertmanager.url)

    @property
    def victoriametrics_url(self) -> str:
        """What the demo prints for VictoriaMetrics: its query API, the latest hourly
        AQI per station (Debian's package has no UI)."""
        return self.victoria.query_url("ioc_aggregate_aqi")

    def report(self, web: str, worker: subprocess.Popen[bytes], logs: Path, token: str) -> None:
        """Once the sinks have caught up: print their status, and what the servers hold
        (the active alerts also go to `alertmanager-alerts.json` in `logs`). `token`:
        an API token for the worker's `/sinks`. The addresses printed are those of the
        banner, which answered during the run."""
        status = wait_for_sinks(web, worker, timeout=60.0, token=token)
        print(f"sinks ({web}/sinks):", *sinks_summary(status), sep="\n", flush=True)
        try:
            series = self.victoria.aggregate_series()
        except (OSError, ValueError) as exc:
            print(f"VictoriaMetrics did not answer: {exc}", flush=True)
        else:
            print(
                f"VictoriaMetrics ({self.victoriametrics_url}), ioc_aggregate_* by aggregate:",
                *victoriametrics_summary(series),
                sep="\n",
                flush=True,
            )
        try:
            active = self.alertmanager.active_alerts()
        except (OSError, ValueError) as exc:
            print(f"Alertmanager did not answer: {exc}", flush=True)
            return
        copy = logs / "alertmanager-alerts.json"
        copy.write_bytes(orjson.dumps(active, option=orjson.OPT_INDENT_2))
        print(
            f"Alertmanager ({self.alertmanager.alerts_url}), active alerts (all in {copy}):",
            *alertmanager_summary(alertnames(active)),
            sep="\n",
            flush=True,
        )
