"""A real Alertmanager (Debian package `prometheus-alertmanager`) for integration tests:
free loopback port, no clustering, a temporary data directory; restartable."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from streams.devtools.processes import free_port

#: The Debian package installs the server as `prometheus-alertmanager`.
BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")

MINIMAL_CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""


def binary() -> str | None:
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def amtool() -> str | None:
    return shutil.which("amtool")


class Alertmanager:
    """`start()` waits until `/-/ready`; `stop()` sends SIGTERM; `start()` again
    reuses the port and data directory (alerts do not survive: it keeps them in
    memory, which is why the sink re-sends)."""

    def __init__(self, directory: Path, config: str = MINIMAL_CONFIG) -> None:
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "alertmanager.yml"
        self.config_path.write_text(config)
        (directory / "data").mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Alertmanager:
        path = binary()
        if path is None:
            raise RuntimeError("prometheus-alertmanager is not installed")
        self._log = (self.directory / "alertmanager.log").open("ab")
        self.process = subprocess.Popen(
            [
                path,
                f"--config.file={self.config_path}",
                f"--storage.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"alertmanager exited: see {self.directory}/alertmanager.log")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"alertmanager not ready in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
