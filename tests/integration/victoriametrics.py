"""A real VictoriaMetrics (Debian package `victoria-metrics`, /usr/bin/victoria-metrics)
for integration tests: free loopback port, temporary data directory; restartable on
the same port and data for outage tests.

Runs with `-dedup.minScrapeInterval=1ms`, as production must (sinks/timeseries.py):
without it VictoriaMetrics keeps every sample it is sent, so a window result written
twice would be two samples with the same timestamp.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from streams.devtools.processes import free_port

BINARY_NAME = "victoria-metrics"


def binary() -> str | None:
    return shutil.which(BINARY_NAME)


class VictoriaMetrics:
    """One single-node server; `start()` waits until `/health` answers."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0) -> VictoriaMetrics:
        executable = binary()
        if executable is None:
            raise RuntimeError("victoria-metrics not installed: apt-get install victoria-metrics")
        self._log = (self.directory / "victoria-metrics.log").open("ab")
        self.process = subprocess.Popen(
            [
                executable,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.directory / 'data'}",
                "-dedup.minScrapeInterval=1ms",
                "-retentionPeriod=100y",  # the synthetic windows lie in 2026
                "-search.disableCache",
                "-loggerLevel=WARN",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited: see {self._log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"victoria-metrics did not answer /health within {timeout} s")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def get(self, path: str, **query: Any) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query, doseq=True)}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return bytes(answer.read())

    def force_flush(self) -> None:
        """Make what was written searchable now (it is otherwise after about a second)."""
        self.get("/internal/force_flush")

    def export(self, match: str) -> list[dict[str, Any]]:
        """`/api/v1/export` of the series matching `match`, one dict per series."""
        self.force_flush()
        text = self.get("/api/v1/export", **{"match[]": match}).decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
