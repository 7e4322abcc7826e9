"""Local VictoriaMetrics and Alertmanager for `ioc demo --with-sinks`, the
integration tests and the benchmarks: the one launcher of each.

Each runs from its Debian package's binary (`make system-deps` installs them) on a
loopback port (a free one unless given), with its data and log under a directory of
the caller's, as a child of this process (`processes.spawn`: its own session, dies
with us). `start()` waits until the server answers its health check; `stop()` sends
SIGTERM (SIGKILL after a timeout); `start()` again restarts it on the same port and
data (outage tests), while the first start of an object begins with empty data.

- VictoriaMetrics runs with `-dedup.minScrapeInterval=1ms`, as the time-series sink
  needs for idempotent writes (sinks/timeseries.py: a window result written again is
  then one sample, not two), and `-retentionPeriod=100y`, so that no window start,
  however far back the simulator's history goes, falls out of retention.
- Alertmanager runs without clustering (`--cluster.listen-address=`) and with a
  minimal configuration: one receiver without integrations, so alerts are held and
  shown (API; Debian's package has no web UI) but notify nobody.
  deploy/alertmanager/alertmanager.yml routes to placeholder webhooks that do not
  exist on a demo machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, Self

from models.errors import ServerError
from streams.devtools.processes import free_port, spawn
from streams.devtools.processes import stop as stop_process

__all__ = [
    "INSTALL_HINT",
    "LocalAlertmanager",
    "LocalServer",
    "LocalVictoriaMetrics",
    "SeriesTally",
    "alertnames",
    "tally_export",
]

INSTALL_HINT = "install victoria-metrics / prometheus-alertmanager (make system-deps)"

#: aggregate → (series, points) of `ioc_aggregate_*` metrics.
SeriesTally = dict[str, tuple[int, int]]


class LocalServer:
    """One server process on 127.0.0.1; subclasses give the binary, flags and health path."""

    label: ClassVar[str]
    binaries: ClassVar[tuple[str, ...]]
    health_path: ClassVar[str]

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.label}.log"

    @classmethod
    def binary(cls) -> str | None:
        for name in cls.binaries:
            if found := shutil.which(name):
                return found
        return None

    @classmethod
    def check_installed(cls) -> str:
        """The binary's path; ServerError with the install hint when it is missing."""
        path = cls.binary()
        if path is None:
            names = " or ".join(cls.binaries)
            raise ServerError(f"{cls.label} not found ({names} on PATH): {INSTALL_HINT}")
        return path

    def command(self, binary: str) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write what the server needs in `directory` before its first start."""

    def start(self, timeout: float = 30.0) -> Self:
        binary = self.check_installed()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._started:
            self.prepare()
            self._started = True
        self._log = self.log_path.open("ab")
        self.process = spawn(self.command(binary), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise ServerError(f"{self.label} exited with code {code}: see {self.log_path}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"{self.label} did not answer {self.health_path} within {timeout:g} s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{self.health_path}", timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, SIGKILL after `timeout`; safe to call twice."""
        if self.process is not None:
            stop_process(self.process, timeout)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def get(
        self, path: str, query: Mapping[str, Any] | None = None, timeout: float = 30.0
    ) -> bytes:
        url = f"{self.url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return bytes(answer.read())


class LocalVictoriaMetrics(LocalServer):
    """Single-node VictoriaMetrics; data in `directory/data` (kept after `stop`)."""

    label = "victoria-metrics"
    binaries = ("victoria-metrics",)
    health_path = "/health"

    def __init__(
        self, directory: Path, *, port: int | None = None, search_cache: bool = True
    ) -> None:
        super().__init__(directory, port=port)
        #: False for tests that read back right after writing: no cached query answers.
        self.search_cache = search_cache

    def query_url(self, query: str, lookback: str = "1d") -> str:
        """An instant query of the Prometheus query API, the latest sample of each
        series within `lookback` (VictoriaMetrics reads `step` as the lookback of an
        instant query). Debian's package has no UI: `/vmui` answers 404."""
        return f"{self.url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query, "step": lookback}
        )

    def prepare(self) -> None:
        # Each run starts empty, like the demo's memory-only broker.
        shutil.rmtree(self.directory / "data", ignore_errors=True)

    def command(self, binary: str) -> list[str]:
        return [
            binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.directory / 'data'}",
            "-dedup.minScrapeInterval=1ms",  # idempotent writes (sinks/timeseries.py)
            "-retentionPeriod=100y",
            "-loggerLevel=WARN",
            *([] if self.search_cache else ["-search.disableCache"]),
        ]

    def force_flush(self) -> None:
        """Make what was written searchable now (it is otherwise after about a second)."""
        self.get("/internal/force_flush")

    def export(self, match: str) -> list[dict[str, Any]]:
        """`/api/v1/export` of the series matching `match`, one dict per series."""
        self.force_flush()
        text = self.get("/api/v1/export", {"match[]": match}).decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def aggregate_series(self, prefix: str = "ioc_aggregate_") -> SeriesTally:
        """Series and points of the metrics named `prefix…`, per `aggregate` label, from
        `/api/v1/export` (all time), after making recent writes searchable."""
        self.force_flush()
        match = f'{{__name__=~"{prefix}.*"}}'
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=60) as answer:
            return tally_export(answer)


def tally_export(lines: Iterable[bytes | str]) -> SeriesTally:
    """`/api/v1/export` JSON lines (one series each) → aggregate → (series, points)."""
    series: Counter[str] = Counter()
    points: Counter[str] = Counter()
    for line in lines:
        if not line.strip():
            continue
        exported = json.loads(line)
        aggregate = str(exported["metric"].get("aggregate", "?"))
        series[aggregate] += 1
        points[aggregate] += len(exported.get("timestamps", ()))
    return {name: (series[name], points[name]) for name in sorted(series)}


#: Holds alerts (API), notifies nobody; one group per rule.
ALERTMANAGER_CONFIG = """\
# Written by `ioc demo --with-sinks`: alerts are held and shown, nobody is notified.
route:
  receiver: demo
  group_by: [alertname]
receivers:
  - name: demo
"""


class LocalAlertmanager(LocalServer):
    """Alertmanager without clustering; config and data in `directory`."""

    label = "alertmanager"
    #: The Debian package installs it as `prometheus-alertmanager`.
    binaries = ("prometheus-alertmanager", "alertmanager")
    health_path = "/-/ready"

    def __init__(
        self, directory: Path, *, port: int | None = None, config: str = ALERTMANAGER_CONFIG
    ) -> None:
        super().__init__(directory, port=port)
        self.config = config

    def prepare(self) -> None:
        (self.directory / "alertmanager.yml").write_text(self.config)
        shutil.rmtree(self.directory / "data", ignore_errors=True)
        (self.directory / "data").mkdir()

    def command(self, binary: str) -> list[str]:
        return [
            binary,
            f"--config.file={self.directory / 'alertmanager.yml'}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port, no peers
            "--log.level=warn",
        ]

    @property
    def alerts_url(self) -> str:
        """The alerts it holds, as JSON (API v2). Debian's package has no web UI: `/`
        is a page saying so."""
        return f"{self.url}/api/v2/alerts"

    def active_alerts(self) -> list[dict[str, Any]]:
        """`/api/v2/alerts` that are active (neither silenced nor inhibited)."""
        query = {"active": "true", "silenced": "false", "inhibited": "false"}
        body = self.get("/api/v2/alerts", query)
        alerts: list[dict[str, Any]] = json.loads(body)
        return alerts


def alertnames(alerts: Iterable[dict[str, Any]]) -> Counter[str]:
    """Alertmanager alerts (API v2) counted by their `alertname` label."""
    return Counter(str(alert.get("labels", {}).get("alertname", "?")) for alert in alerts)
