"""The one small interface every sink implements, and what the sink stage gives it.

A sink stage (streams/worker/stages/sinks.py) consumes one topic (`ioc.aggregates` or
`ioc.alerts`) for one sink, in batches, and drives the sink like this:

    await sink.open()                      # once, before the first batch
    await sink.write(records)              # each batch read from Kafka, in offset order
    rejected = await sink.flush()          # before the stage commits the batch's offsets
    ...                                    # the rejected go to ioc.deadletter, then commit
    await sink.tick(now_ms)                # about once a second, between batches
    await sink.close()                     # once, when the worker stops

The stage commits input offsets only after `flush` returned: everything written
before it was acknowledged by the server (or rejected for good), so a crash replays
at most what was not yet flushed — at-least-once, and sinks write idempotently
(the same window result or alert state twice overwrites, never duplicates).

Each sink module defines its configuration as a `SinkConfig`: a settings section
(`IOC_SINKS__<SECTION>__…`, streams/worker/settings.py) whose `build` makes the sink,
so the worker builds every configured sink the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["Rejection", "Sink", "SinkConfig", "SinkRecord", "SinkStatus"]


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """One Kafka record of the sink's topic, with its decoded JSON value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes  # the record as read, for the dead letter's `raw`
    decoded: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the server refused for good (a 4xx that retrying cannot fix)."""

    record: SinkRecord
    reason: str  # the sink's answer: status and body, as the operator needs to see it


@dataclass(slots=True)
class SinkStatus:
    """What `/metrics` and the health endpoint show of a sink."""

    state: Literal["starting", "up", "retrying", "stopped"] = "starting"
    last_error: str | None = None
    queued: int = 0  # records written but not yet acknowledged
    written: int = 0  # records acknowledged by the server
    retries: int = 0
    rejected: int = 0
    #: States the sink remembers per key and dropped at its bound (Alertmanager: alerts
    #: past `max_alerts`); None for a sink that remembers nothing per key.
    evicted: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    """A destination for aggregates or alerts."""

    #: Short and stable: metric label, consumer group suffix (`<app>-sink-<name>`).
    name: str
    #: The topic the sink consumes: `ioc.aggregates` or `ioc.alerts`.
    topic: str
    status: SinkStatus

    async def open(self) -> None:
        """Once, before the first `write`: open HTTP sessions, check configuration."""

    async def write(self, records: list[SinkRecord]) -> None:
        """Take one batch, in offset order. May send when its buffer is full, but
        need not: nothing is acknowledged to Kafka until `flush` returns."""

    async def flush(self) -> list[Rejection]:
        """Send everything taken and wait until the server acknowledged it. Transient
        failures (connection refused, timeouts, 5xx, 429) are retried with exponential
        backoff and jitter for as long as it takes — never given up silently, and
        `status` says `retrying` with the last error meanwhile; cancellation (the
        worker stopping) interrupts the wait. Returns the records refused for good."""
        ...

    async def tick(self, now_ms: int) -> None:
        """About once a second with the wall clock: time-driven sends (a size/time
        batch deadline, re-sending firing alerts to Alertmanager)."""

    async def close(self) -> None:
        """Once, when the worker stops, after the last `flush`."""


class SinkConfig(BaseModel):
    """A sink's configuration: the settings section that turns it on, validated field
    by field when the settings are read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def build(self) -> Sink:
        """The sink this configures. ValueError on a combination that cannot work
        (the worker reports it and does not start)."""
        raise NotImplementedError
