"""sinks/memory.py: the in-memory sink that tests drive stages with."""

from __future__ import annotations

from sinks.base import Rejection, Sink, SinkRecord
from sinks.memory import MemorySink


def records(*values: dict[str, object], topic: str = "ioc.aggregates") -> list[SinkRecord]:
    return [SinkRecord(topic, 0, n, b"k", b"{}", dict(value)) for n, value in enumerate(values)]


def test_is_a_sink_with_its_name_and_topic() -> None:
    sink: Sink = MemorySink()
    assert (sink.name, sink.topic, sink.status.state) == ("memory", "ioc.aggregates", "starting")
    alerts = MemorySink("alerts", topic="ioc.alerts")
    assert (alerts.name, alerts.topic) == ("alerts", "ioc.alerts")


async def test_records_are_taken_until_flush_acknowledges_them_in_order() -> None:
    sink = MemorySink()
    await sink.open()
    first, second = records({"n": 0}, {"n": 1}), records({"n": 2})
    await sink.write(first)
    await sink.write(second)
    assert sink.taken == first + second and sink.acknowledged == []
    assert (sink.status.state, sink.status.queued, sink.status.written) == ("up", 3, 0)
    assert await sink.flush() == []
    assert sink.acknowledged == first + second and sink.taken == []
    assert (sink.status.queued, sink.status.written, sink.status.rejected) == (0, 3, 0)
    assert await sink.flush() == [] and sink.status.written == 3  # nothing new: nothing sent


async def test_refused_records_are_rejected_with_the_reason_and_counted() -> None:
    def refuse(record: SinkRecord) -> str | None:
        return "HTTP 400: bad field" if record.decoded.get("bad") else None

    sink = MemorySink(refuse=refuse)
    batch = records({"n": 0}, {"n": 1, "bad": True}, {"n": 2})
    await sink.write(batch)
    rejections = await sink.flush()
    assert rejections == [Rejection(batch[1], "HTTP 400: bad field")]
    assert sink.rejected == rejections
    assert sink.acknowledged == [batch[0], batch[2]]
    assert (sink.status.written, sink.status.rejected, sink.status.state) == (2, 1, "up")
    await sink.write(records({"bad": True}))
    assert len(await sink.flush()) == 1
    assert (sink.status.written, sink.status.rejected, len(sink.rejected)) == (2, 2, 2)


async def test_calls_and_ticks_are_recorded_in_order() -> None:
    sink = MemorySink()
    await sink.open()
    await sink.write(records({"n": 0}))
    await sink.tick(1_000)
    await sink.flush()
    await sink.tick(2_000)
    await sink.close()
    assert sink.calls == ["open", "write", "tick", "flush", "tick", "close"]
    assert sink.ticks == [1_000, 2_000]
    assert sink.status.state == "stopped"
