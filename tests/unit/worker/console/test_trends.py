"""The console's trends: VictoriaMetrics range queries and their answers, the fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from models.aggregates import default_aggregates
from models.results import WindowResult
from sinks.timeseries import TimeseriesConfig
from streams.core.figures import TrendBuffer
from streams.worker.console.trends import (
    BufferTrends,
    RangeQuery,
    TrendsError,
    VictoriaTrends,
    parse_range,
    query_params,
    range_queries,
    trend_source,
    window_sizes,
)

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z
M = 60_000
H = 60 * M
AQI = RangeQuery("aqi", "max by (refDevice) (…)", "refDevice", H)


def matrix(*series: tuple[dict[str, str], list[list[Any]]]) -> bytes:
    result = [{"metric": metric, "values": values} for metric, values in series]
    return orjson.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


# -- queries -----------------------------------------------------------------------------


def test_window_sizes_of_the_default_pack_and_the_derived_aggregates() -> None:
    sizes = window_sizes(default_aggregates())
    assert sizes["aqi_station_1h"] == H  # air_station_1h's window
    assert sizes["water_level_5m"] == 5 * M and sizes["auth_failures_5m"] == 5 * M
    assert sizes["case_backlog"] == 0  # stamped at its instant


def test_queries_use_the_sinks_metric_and_label_names() -> None:
    queries = range_queries(window_sizes(default_aggregates()))
    assert [(q.prefix, q.promql, q.label, q.shift_ms) for q in queries] == [
        ("aqi", 'max by (refDevice) (ioc_aggregate_aqi{aggregate="aqi_station_1h"})',
         "refDevice", H),
        ("water",
         'max by (refDevice) (ioc_aggregate_currentLevel_last{aggregate="water_level_5m"})',
         "refDevice", 5 * M),
        ("overdue", 'sum by (agency) (ioc_aggregate_overdue{aggregate="case_backlog"})',
         "agency", 0),
        ("failed_logins",
         'sum by (organization_name) (ioc_aggregate_count{aggregate="auth_failures_5m"})',
         "organization_name", 5 * M),
    ]  # fmt: skip


def test_a_query_asks_for_24_hours_at_5_minutes_one_window_earlier() -> None:
    params = query_params(AQI, T0 + 1234)
    assert params == {
        "query": AQI.promql,
        "start": f"{(T0 + 1234 - H - 24 * H + 5 * M) // 1000}.234",
        "end": f"{(T0 + 1234 - H) // 1000}.234",
        "step": "300s",
    }
    # 288 steps from start to end, both included
    start, end = float(params["start"]), float(params["end"])
    assert (end - start) / 300 + 1 == 288


# -- answers -----------------------------------------------------------------------------


def test_an_answer_becomes_series_at_window_ends() -> None:
    start = T0 // 1000
    body = matrix(
        ({"refDevice": "HD-AQ-002"}, [[start, "160"], [start + 300, "161.5"]]),
        ({"refDevice": "HD-AQ-001"}, [[start + 300, "87"], [start, "NaN"], [start + 600, "+Inf"]]),
        ({"areaServed": "Hải Châu"}, [[start, "1"]]),  # no key label: not a series
        ({"refDevice": "HD-AQ-003"}, [[start, "NaN"]]),  # nothing left: no series
    )
    assert parse_range(AQI, body) == {
        "aqi:HD-AQ-001": [(T0 + 300_000 + H, 87)],
        "aqi:HD-AQ-002": [(T0 + H, 160), (T0 + 300_000 + H, 161.5)],
    }
    (point,) = parse_range(AQI, body)["aqi:HD-AQ-001"]
    assert isinstance(point[1], int)


def test_fractional_timestamps_are_milliseconds() -> None:
    body = matrix(({"refDevice": "A"}, [[1795662000.123, "1"]]))
    assert parse_range(AQI, body) == {"aqi:A": [(T0 + 123 + H, 1)]}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>", "not JSON"),
        (b'{"status": "error", "errorType": "bad_data", "error": "parse error"}', "parse error"),
        (b'{"status": "success", "data": {"resultType": "vector", "result": []}}', "matrix"),
        (b'{"status": "success", "data": {"resultType": "matrix"}}', "result list"),
        (b'{"status": "success", "data": {"resultType": "matrix", "result": [1]}}', "object"),
        (b'{"status": "success", "data": {"resultType": "matrix", "result": [{}]}}', "lacks"),
        (matrix(({"refDevice": "A"}, [[1, 2, 3]])), "not \\[time, value\\]"),
        (matrix(({"refDevice": "A"}, [[1, "x"]])), "not \\[time, value\\]"),
        (b"[]", "no success status"),
    ],
)
def test_an_answer_that_is_not_a_range_result_is_an_error(body: bytes, why: str) -> None:
    with pytest.raises(TrendsError, match=why):
        parse_range(AQI, body)


def test_an_empty_result_is_no_series() -> None:
    assert parse_range(AQI, matrix()) == {}


# -- sources -----------------------------------------------------------------------------


def aqi_final(hour: int, value: int) -> WindowResult:
    start = T0 + hour * H
    group = {"refDevice": "HD-AQ-001", "areaServed": "Hải Châu"}
    return WindowResult("aqi_station_1h", "city", group, start, start + H, {"aqi": value}, 1, True)


def buffer_with_a_point() -> TrendBuffer:
    buffer = TrendBuffer()
    buffer.add(aqi_final(0, 40))
    return buffer


async def test_without_victoriametrics_the_trends_are_the_buffers() -> None:
    buffer = buffer_with_a_point()
    aggregates = default_aggregates()
    assert isinstance(trend_source(None, buffer, aggregates), BufferTrends)
    influx = TimeseriesConfig(kind="influxdb1", url="http://influx:8086", database="ioc")
    source = trend_source(influx, buffer, aggregates)
    assert isinstance(source, BufferTrends)
    await source.open()
    assert await source.trends() == {"aqi:HD-AQ-001": [(T0 + H, 40)]}
    await source.close()
    vm = TimeseriesConfig(url="http://vm:8428")
    assert isinstance(trend_source(vm, buffer, aggregates), VictoriaTrends)


class FakeVM:
    """VictoriaMetrics' query_range as far as the console uses it."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[dict[str, list[str]], str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        self.requests.append((query, request.headers.get("Authorization")))
        if self.status != 200:
            return web.Response(status=self.status, text="overloaded")
        start = int(float(query["start"][0]))
        promql = query["query"][0]
        if "ioc_aggregate_aqi" in promql:
            body = matrix(({"refDevice": "HD-AQ-001"}, [[start, "87"]]))
        elif "ioc_aggregate_overdue" in promql:
            body = matrix(({"agency": "SO-TTTT"}, [[start, "4"]]))
        else:
            body = matrix()
        return web.Response(body=body, content_type="application/json")


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[FakeVM, TestServer]]:
    """A fake VM on a free port of localhost, in the test's own event loop."""
    fake = FakeVM()
    app = web.Application()
    app.router.add_get("/api/v1/query_range", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, server
    finally:
        await server.close()


def victoria(server: TestServer, clock: list[float]) -> VictoriaTrends:
    url = str(server.make_url("")).rstrip("/")
    target = TimeseriesConfig(url=url, username="ioc", password="s3cret-pass")
    return VictoriaTrends(
        target,
        buffer_with_a_point(),
        window_sizes(default_aggregates()),
        clock=lambda: T0 / 1000,
        monotonic=lambda: clock[0],
    )


async def test_trends_from_victoriametrics() -> None:
    clock = [100.0]
    async with serving() as (fake, server):
        source = victoria(server, clock)
        await source.open()
        try:
            trends = await source.trends()
            start_ms = T0 - 24 * H + 5 * M
            assert trends == {
                "aqi:HD-AQ-001": [(start_ms, 87)],  # VM's window start + 1 h: its end
                "overdue:SO-TTTT": [(start_ms, 4)],
            }
            assert len(fake.requests) == 4
            assert {auth for _, auth in fake.requests} == {"Basic aW9jOnMzY3JldC1wYXNz"}
            clock[0] += 10  # within the cache: no new queries
            assert await source.trends() == trends and len(fake.requests) == 4
            clock[0] += 30
            await source.trends()
            assert len(fake.requests) == 8
        finally:
            await source.close()


async def test_a_failing_server_falls_back_to_the_buffer_and_logs_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streams.worker.console.trends")
    clock = [100.0]
    buffered = {"aqi:HD-AQ-001": [(T0 + H, 40)]}
    async with serving() as (fake, server):
        fake.status = 503
        source = victoria(server, clock)
        await source.open()
        try:
            assert await source.trends() == buffered
            assert source.last_error == "TrendsError: HTTP 503 overloaded"
            asked = len(fake.requests)
            clock[0] += 10  # VM is not asked again before retry_s
            assert await source.trends() == buffered and len(fake.requests) == asked
            clock[0] += 25  # retried, fails again: not logged again within the minute
            assert await source.trends() == buffered and len(fake.requests) > asked
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "HTTP 503" in warnings[0].getMessage()
            clock[0] += 60
            fake.status = 200
            assert "overdue:SO-TTTT" in await source.trends()
            assert source.last_error is None
            assert any("answers again" in r.getMessage() for r in caplog.records)
            assert all("s3cret" not in r.getMessage() for r in caplog.records)
        finally:
            await source.close()


async def test_an_unreachable_server_falls_back_to_the_buffer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Port 9 (discard) on localhost: nothing listens, the connection is refused.
    target = TimeseriesConfig(url="http://127.0.0.1:9", username="ioc", password="s3cret-pass")
    source = VictoriaTrends(target, buffer_with_a_point(), {}, timeout_s=0.5)
    await source.open()
    try:
        assert await source.trends() == {"aqi:HD-AQ-001": [(T0 + H, 40)]}
        assert source.last_error is not None and "s3cret" not in source.last_error
        assert "127.0.0.1:9/api/v1/query_range" in caplog.text
    finally:
        await source.close()
