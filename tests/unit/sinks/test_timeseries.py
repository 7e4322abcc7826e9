"""sinks/timeseries.py without a server: URLs, secrets, batching, answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from models.errors import TransientError
from sinks.base import SinkRecord
from sinks.http import Answer
from sinks.timeseries import LineProtocolSink, TimeseriesConfig
from tests.unit.sinks.test_lineprotocol import record


class FakePost:
    """Answers from a script (an Answer or TransientError per call), then 204."""

    def __init__(self, *script: Answer | Exception) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        self.calls.append((url, body, dict(headers)))
        step = self.script.pop(0) if self.script else Answer(204)
        if isinstance(step, Exception):
            raise step
        return step


def records(n: int, **changes: Any) -> list[SinkRecord]:
    out = []
    for i in range(n):
        value = record(window_start_ms=1795662000000 + i * 300_000, **changes)
        out.append(SinkRecord("ioc.aggregates", 0, i, None, b"{}", value))
    return out


def sink(post: FakePost, **changes: Any) -> LineProtocolSink:
    target = TimeseriesConfig(
        url="http://vm:8428", backoff_base_s=0.001, backoff_max_s=0.001, **changes
    )
    return LineProtocolSink(target, post=post)


def test_write_urls_and_headers() -> None:
    vm = TimeseriesConfig(url="http://vm:8428/")
    assert vm.write_url() == "http://vm:8428/write?precision=ms"
    v1 = TimeseriesConfig(
        kind="influxdb1", url="http://i:8086", database="ioc db", username="u", password="p"
    )
    assert v1.write_url() == "http://i:8086/write?db=ioc+db&precision=ms"
    assert v1.headers()["Authorization"] == "Basic dTpw"
    v2 = TimeseriesConfig(kind="influxdb2", url="https://i", org="o", bucket="b", token="t0k")
    assert v2.write_url() == "https://i/api/v2/write?org=o&bucket=b&precision=ms"
    assert v2.headers()["Authorization"] == "Token t0k"
    assert "t0k" not in repr(v2) and "t0k" not in v2.write_url()


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "influxdb1"},
        {"kind": "influxdb2", "org": "o", "bucket": "b"},
        {"url": "http://user:pass@vm:8428"},
        {"url": "vm:8428"},
        {"username": "u"},
        {"running_updates": True},
        {"labels": frozenset({"source.ip"})},
        {"labels": frozenset({"aggregate"})},
    ],
)
def test_incomplete_or_unsafe_targets_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TimeseriesConfig(**changes)


async def test_batches_by_size_and_by_time() -> None:
    post = FakePost()
    now = [0.0]
    s = LineProtocolSink(
        TimeseriesConfig(batch_lines=3, batch_interval_s=1), post=post, clock=lambda: now[0]
    )
    await s.write(records(7))
    await asyncio.sleep(0.01)
    assert len(post.calls) == 2 and s.status.queued == 1
    await s.tick(0)
    await asyncio.sleep(0.01)
    assert len(post.calls) == 2  # the seventh waits for its batch interval
    now[0] = 1.5
    await s.tick(0)
    assert await s.flush() == []
    assert [body.count(b"\n") for _, body, _ in post.calls] == [3, 3, 1]
    assert s.status.written == 7 and s.status.queued == 0


async def test_running_updates_only_when_asked() -> None:
    post = FakePost()
    s = sink(post)
    await s.write(records(2, final=False))
    assert await s.flush() == [] and post.calls == []
    influx = sink(post, kind="influxdb1", database="d", running_updates=True)
    await influx.write(records(2, final=False))
    await influx.flush()
    assert len(post.calls) == 1


async def test_transient_and_configuration_errors_are_retried_then_up() -> None:
    post = FakePost(TransientError("ClientConnectorError"), Answer(503, "busy"), Answer(401, "no"))
    s = sink(post)
    await s.write(records(4))
    assert await s.flush() == []
    assert len(post.calls) == 4
    assert s.status.retries == 3 and s.status.state == "up" and s.status.written == 4
    assert s.status.last_error is not None and "HTTP 401" in s.status.last_error


async def test_bad_records_are_rejected_without_a_request() -> None:
    post = FakePost()
    s = sink(post)
    bad = records(1, statistics={"count": 1.5})
    await s.write(bad + records(2))
    rejections = await s.flush()
    assert [r.record for r in rejections] == bad and "count" in rejections[0].reason
    assert s.status.rejected == 1 and s.status.written == 2


async def test_cancelled_flush_leaves_close_to_stop_the_send() -> None:
    post = FakePost(*[TransientError("down")] * 1000)
    s = sink(post)
    await s.write(records(1))
    flushing = asyncio.create_task(s.flush())
    await asyncio.sleep(0.05)
    assert s.status.state == "retrying"
    flushing.cancel()
    await s.close()
    assert s.status.state == "stopped"


async def test_aggregates_not_exported_are_logged_once_each_up_to_a_bound(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sinks.timeseries.MAX_LOGGED", 2)
    s = sink(FakePost())
    names = ["a", "b", "a", "c", "d"]
    await s.write([
        SinkRecord("ioc.aggregates", 0, n, None, b"{}",
                   record(aggregate=name, group={"user.name": "x"}))
        for n, name in enumerate(names)
    ])  # fmt: skip
    assert s.status.extra["skipped"] == 5
    assert caplog.text.count("is not written") == 2  # a and b; c and d only counted


async def test_the_configured_url_is_redacted_not_the_sinks_own_endpoint() -> None:
    target = TimeseriesConfig(
        kind="influxdb1", database="iocdata", url="http://db.example/proxy/T0KEN1234",
        backoff_base_s=0.001, backoff_max_s=0.001,
    )  # fmt: skip
    s = LineProtocolSink(target, post=FakePost(Answer(503, "no T0KEN1234 for iocdata")))
    await s.write(records(1))
    await s.flush()
    shown = "http://db.example/proxy/***/write?db=iocdata&precision=ms"
    assert s.status.last_error == f"{shown}: HTTP 503: no *** for iocdata"
    assert s.status.extra["url"] == "http://db.example/proxy/***"
