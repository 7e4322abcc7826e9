"""Where stages put what they produce.

Agents never call a Kafka client directly: they hand records to an outbox, so the
same agent runs against Kafka in a worker and against memory in unit tests.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

__all__ = ["DeliveryFailed", "KafkaOutbox", "MemoryOutbox", "Outbox"]


class DeliveryFailed(RuntimeError):
    """Kafka refused a record the stage produced: a bug or a broker problem, never input."""


class Outbox(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...


class KafkaOutbox:
    """Produces through the Faust app's producer.

    Sends are buffered, not awaited one by one; Faust flushes the producer before it
    commits input offsets, so an output is durable before its input is marked done.
    A failed delivery is re-raised on the next send so the stage crashes loudly.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._failure: BaseException | None = None

    def _check(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._failure = future.exception()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self._failure is not None:
            raise DeliveryFailed(f"a record could not be produced: {self._failure!r}")
        pending = await self._app.producer.send(topic, key, value, None, None, None)
        pending.add_done_callback(self._check)


class MemoryOutbox:
    """Keeps what was sent, per topic, in order: for tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def on(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        return [(key, value) for sent_topic, key, value in self.sent if sent_topic == topic]
