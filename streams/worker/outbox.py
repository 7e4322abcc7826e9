"""Where stages put what they produce.

Stage logic never calls a Kafka client directly: it hands records to an outbox, so
the same code runs against Kafka in a worker and against memory in unit tests.
"""

from __future__ import annotations

from typing import Protocol

from streams.core.progress import Frontier

__all__ = ["MemoryOutbox", "Outbox"]


class Outbox(Protocol):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Buffer a record; it is durable once the stage's next checkpoint returns."""

    async def send_progress(self, topic: str, frontiers: list[Frontier]) -> None:
        """A progress record (streams.core.progress) to every partition of `topic`,
        after what was sent there before."""


class MemoryOutbox:
    """Keeps what was sent, per topic, in order: for tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.progress: list[tuple[str, list[Frontier]]] = []
        self.headers: list[list[tuple[str, bytes]] | None] = []  # of each record sent

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Also takes what a stage's checkpoint sends: tombstones, explicit partitions."""
        self.sent.append((topic, key, value))
        self.headers.append(headers)

    async def send_progress(self, topic: str, frontiers: list[Frontier]) -> None:
        self.progress.append((topic, frontiers))

    async def flush(self) -> None:
        """Everything sent is already 'durable'."""

    def on(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        return [(key, value) for sent_topic, key, value in self.sent if sent_topic == topic]
