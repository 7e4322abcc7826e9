"""A sink that keeps what it is given in memory: for tests of what drives a sink.

    sink = MemorySink("fake", refuse=lambda r: "HTTP 400" if r.decoded.get("bad") else None)
    stage = SinkStage(settings, metrics, sink)
    ...
    assert [r.offset for r in sink.acknowledged] == [0, 1, 2]

Like quix-streams' `ListSink`: no server, so a test sees exactly which records the
stage wrote, which a `flush` acknowledged, which it refused and in what order the
stage called the sink. `status` moves as a real sink's does (`up` after `open` and
each `flush`, `stopped` after `close`), so metrics and `/sinks` can be checked too.
"""

from __future__ import annotations

from collections.abc import Callable

from sinks.base import Rejection, SinkRecord, SinkStatus

__all__ = ["MemorySink"]


class MemorySink:
    """The `Sink` interface over lists: `taken` until `flush`, then `acknowledged`,
    or `rejected` with the reason `refuse` gave."""

    def __init__(
        self,
        name: str = "memory",
        *,
        topic: str = "ioc.aggregates",
        refuse: Callable[[SinkRecord], str | None] | None = None,
    ) -> None:
        """`refuse(record)` is the server's answer to a record it refuses for good,
        None to accept it; by default every record is accepted."""
        self.name = name
        self.topic = topic
        self.status = SinkStatus()
        self._refuse = refuse or (lambda record: None)
        #: Written since the last `flush`, in the order written.
        self.taken: list[SinkRecord] = []
        #: Accepted by a `flush`, in the order written.
        self.acknowledged: list[SinkRecord] = []
        #: Refused by a `flush`, with the reasons.
        self.rejected: list[Rejection] = []
        #: The interface's calls in order: "open", "write", "flush", "tick", "close".
        self.calls: list[str] = []
        #: The `now_ms` of each `tick`.
        self.ticks: list[int] = []

    async def open(self) -> None:
        self.calls.append("open")
        self.status.state = "up"

    async def write(self, records: list[SinkRecord]) -> None:
        self.calls.append("write")
        self.taken += records
        self.status.queued = len(self.taken)

    async def flush(self) -> list[Rejection]:
        self.calls.append("flush")
        rejections: list[Rejection] = []
        for record in self.taken:
            reason = self._refuse(record)
            if reason is None:
                self.acknowledged.append(record)
            else:
                rejections.append(Rejection(record, reason))
        self.rejected += rejections
        self.status.written += len(self.taken) - len(rejections)
        self.status.rejected += len(rejections)
        self.status.state, self.status.queued, self.taken = "up", 0, []
        return rejections

    async def tick(self, now_ms: int) -> None:
        self.calls.append("tick")
        self.ticks.append(now_ms)

    async def close(self) -> None:
        self.calls.append("close")
        self.status.state = "stopped"
