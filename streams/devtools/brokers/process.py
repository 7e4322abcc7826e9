"""What every local broker shares: the child process, the readiness probe, the
protocol `ioc broker`, `ioc demo` and the tests start brokers through."""

from __future__ import annotations

import socket
import struct
import subprocess
from types import TracebackType
from typing import Protocol, Self

__all__ = ["BrokerProcess", "LocalBroker", "kafka_answers"]


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


class LocalBroker(Protocol):
    """What `ioc broker`, `ioc demo` and the tests need of a broker they start."""

    @property
    def bootstrap(self) -> str: ...

    def start(self, timeout: float = ...) -> LocalBroker: ...

    def stop(self, timeout: float = ...) -> None: ...

    def wait_for(self, timeout: float) -> int | None: ...
