"""LineProtocolSink against a real VictoriaMetrics, read back through /api/v1/export.

No broker: the sink is driven as the sink stage drives it (open, write, flush, close).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sinks.base import SinkRecord
from sinks.lineprotocol import is_integer_statistic, safe_name
from sinks.timeseries import LineProtocolSink, TimeseriesConfig
from streams.devtools.servers import LocalVictoriaMetrics

pytestmark = [
    pytest.mark.integration,
]

HOUR = 3_600_000
FIVE_MINUTES = 300_000
# Windows a day ago, on an hour boundary: inside any retention, never in the future.
T0 = (int(time.time() * 1000) - 24 * HOUR) // HOUR * HOUR

STATIONS = [
    ("HD-AQ-017", "TP Hải Dương"),
    ("HD-AQ-021", "Chí Linh"),
    ("AQ,1=2 x", 'Quận "Mới", khu=A'),  # every character line protocol escapes
    ("AQ\\back", "Kinh Môn"),
]
AGENCIES = ["SO-TNMT", "SO-TTTT", "UBND Huyện Gia Lộc"]


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVictoriaMetrics]:
    server = LocalVictoriaMetrics(
        tmp_path_factory.mktemp("victoria-metrics"), search_cache=False
    ).start()
    yield server
    server.stop()


def result(
    aggregate: str,
    group: dict[str, Any],
    start: int,
    size: int,
    statistics: dict[str, Any],
    *,
    final: bool = True,
    family: str = "city",
) -> dict[str, Any]:
    values = "|".join(str(v) for v in group.values())
    return {
        "identity": f"{aggregate}|{values}|{start}",
        "aggregate": aggregate,
        "family": family,
        "group": group,
        "window_start": "",
        "window_end": "",
        "window_start_ms": start,
        "window_end_ms": start + size,
        "count": statistics.get("count", 7),
        "final": final,
        "statistics": statistics,
    }


def synthetic(run: str) -> list[dict[str, Any]]:
    """A few hundred results of several aggregates, finals and running updates, with
    integers, floats, nulls and text; aggregate names start with `run`."""
    records: list[dict[str, Any]] = []
    for w in range(12):
        start = T0 + w * FIVE_MINUTES
        for s, (device, area) in enumerate(STATIONS):
            group = {"refDevice": device, "areaServed": area}
            mean = round(40 + 3.7 * w + s, 2)
            for step in range(3):  # running updates, then the final
                records.append(
                    result(
                        f"{run}_air_station_5m",
                        group,
                        start,
                        FIVE_MINUTES,
                        {
                            "count": step + 1,
                            "pm25_count": step + 1,
                            "pm25_mean": mean + 100 + step,
                            "pm25_max": None,
                        },
                        final=False,
                    )
                )
            records.append(
                result(
                    f"{run}_air_station_5m",
                    group,
                    start,
                    FIVE_MINUTES,
                    {
                        "count": 10 + s,
                        "pm25_count": 10 + s,
                        "pm25_mean": mean,
                        "pm25_max": round(mean * 1.5, 1),
                        "o3_count": 0,
                        "o3_mean": None,  # no event carried o3: no point
                        "o3_max": None,
                    },
                )
            )
    for h in range(6):
        for device, area in STATIONS:
            aqi = 40 + 11 * h
            records.append(
                result(
                    f"{run}_aqi_station_1h",
                    {"refDevice": device, "areaServed": area},
                    T0 + h * HOUR,
                    HOUR,
                    {
                        "aqi": aqi if h else None,
                        "dominant": "pm25" if h else None,
                        "band": "moderate" if h else None,
                        "band_vi": "Trung bình" if h else None,
                        "aqi_pm25": aqi if h else None,
                        "aqi_so2": None,
                        "nowcast_pm25": round(20.5 + h, 2) if h else None,
                    },
                )
            )
    for m in range(10):
        for p in range(2):
            for agency in AGENCIES:
                records.append(
                    result(
                        f"{run}_case_backlog",
                        {"agency": agency, "kind": "dossier", "partition": p},
                        T0 + m * 60_000,
                        0,
                        {"open": 40 + m + p, "overdue": m % 3, "near_due": 7},
                        family="services",
                    )
                )
    for w in range(8):
        for agency in AGENCIES:
            records.append(
                result(
                    f"{run}_auth_failures_5m",
                    {"organization.name": agency},
                    T0 + w * FIVE_MINUTES,
                    FIVE_MINUTES,
                    {"count": 5 + w, "source.ip_count": 5 + w, "source.ip_distinct": 1 + w % 4},
                    family="security",
                )
            )
            # per source IP: unbounded, never written
            records.append(
                result(
                    f"{run}_auth_by_ip_5m",
                    {"source.ip": f"203.0.113.{w}"},
                    T0 + w * FIVE_MINUTES,
                    FIVE_MINUTES,
                    {"count": 3},
                    family="security",
                )
            )
    # a running update of a window whose final never came: not written either
    records.append(
        result(
            f"{run}_air_station_5m",
            {"refDevice": "HD-AQ-017", "areaServed": "TP Hải Dương"},
            T0 + 99 * FIVE_MINUTES,
            FIVE_MINUTES,
            {"count": 1, "pm25_mean": 1.0},
            final=False,
        )
    )
    return records


def sink_records(records: list[dict[str, Any]]) -> list[SinkRecord]:
    return [
        SinkRecord(
            topic="ioc.aggregates",
            partition=0,
            offset=offset,
            key=record["identity"].encode(),
            value=json.dumps(record).encode(),
            decoded=record,
        )
        for offset, record in enumerate(records)
    ]


Series = tuple[tuple[str, str], ...]


def expected(records: list[dict[str, Any]]) -> dict[Series, dict[int, float]]:
    """What VictoriaMetrics must hold: each final's numeric statistics, one per series."""
    points: dict[Series, dict[int, float]] = {}
    for record in records:
        if not record["final"] or "source.ip" in record["group"]:
            continue
        labels = {"aggregate": record["aggregate"]}
        labels.update({safe_name(k): str(v) for k, v in record["group"].items()})
        statistics = dict(record["statistics"])
        statistics.setdefault("count", record["count"])
        for name, value in statistics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                metric = {**labels, "__name__": f"ioc_aggregate_{safe_name(name)}"}
                series = tuple(sorted(metric.items()))
                points.setdefault(series, {})
                assert record["window_start_ms"] not in points[series]
                points[series][record["window_start_ms"]] = float(value)
    return points


def exported(victoria: LocalVictoriaMetrics, run: str) -> dict[Series, dict[int, float]]:
    """Every series of the run; fails on two samples of one series at one timestamp."""
    points: dict[Series, dict[int, float]] = {}
    for line in victoria.export(f'{{aggregate=~"{run}_.*"}}'):
        series = tuple(sorted(line["metric"].items()))
        timestamps = line["timestamps"]
        assert len(timestamps) == len(set(timestamps)), (series, timestamps)
        assert series not in points
        points[series] = dict(zip(timestamps, line["values"], strict=True))
    return points


async def write_all(sink: LineProtocolSink, records: list[SinkRecord], batch: int = 64) -> list:
    rejections = []
    for i in range(0, len(records), batch):
        await sink.write(records[i : i + batch])
        rejections += await sink.flush()
    return rejections


def vm_target(victoria: LocalVictoriaMetrics, **changes: Any) -> TimeseriesConfig:
    return TimeseriesConfig(kind="victoriametrics", url=victoria.url, **changes)


async def test_every_final_is_written_once_with_its_values(victoria: LocalVictoriaMetrics) -> None:
    run = f"t{uuid.uuid4().hex[:8]}"
    records = synthetic(run)
    assert len(records) > 300
    sink = LineProtocolSink(vm_target(victoria, batch_lines=100))
    await sink.open()
    try:
        assert await write_all(sink, sink_records(records)) == []
        want = expected(records)
        got = exported(victoria, run)
        assert got.keys() == want.keys()
        for series, values in want.items():
            assert got[series] == pytest.approx(values, rel=1e-12), series
        # text statistics are not stored as zeros; integer statistics came through whole
        assert not [s for s in got if dict(s)["__name__"].endswith(("_band", "_dominant"))]
        for series, values in got.items():
            name = dict(series)["__name__"].removeprefix("ioc_aggregate_")
            if is_integer_statistic(name):
                assert all(float(v).is_integer() for v in values.values())
        finals = sum(1 for r in records if r["final"] and "source.ip" not in r["group"])
        assert sink.status.written == finals
        assert sink.status.queued == 0
        assert sink.status.extra["skipped"] == sum(1 for r in records if "source.ip" in r["group"])
        assert sink.status.state == "up"
        # labels as written, escaping undone
        areas = {dict(s).get("areaServed") for s in got}
        assert {"TP Hải Dương", 'Quận "Mới", khu=A'} <= areas
        assert {"AQ,1=2 x", "AQ\\back"} <= {dict(s).get("refDevice") for s in got}
        assert {"organization_name"} <= {k for s in got for k, _ in s}

        # the same results again, in other batches: the same export
        assert await write_all(sink, sink_records(records), batch=37) == []
        assert exported(victoria, run) == got
    finally:
        await sink.close()
    assert sink.status.state == "stopped"


async def test_a_server_down_for_a_while_gets_everything(tmp_path: Path) -> None:
    server = LocalVictoriaMetrics(tmp_path, search_cache=False).start()
    run = f"t{uuid.uuid4().hex[:8]}"
    records = synthetic(run)
    sink = LineProtocolSink(
        TimeseriesConfig(kind="victoriametrics", url=server.url, timeout_s=2, backoff_max_s=1.0)
    )
    states: list[str] = []
    await sink.open()
    try:
        server.stop()
        await sink.write(sink_records(records))
        flushing = asyncio.create_task(sink.flush())
        for _ in range(30):  # 3 s down
            await asyncio.sleep(0.1)
            states.append(sink.status.state)
        assert not flushing.done()
        assert sink.status.state == "retrying"
        assert sink.status.retries >= 2
        assert "127.0.0.1" in (sink.status.last_error or "")
        await asyncio.to_thread(server.start)
        assert await asyncio.wait_for(flushing, 30) == []
        states.append(sink.status.state)
        assert states[-1] == "up" and "retrying" in states
        assert sink.status.queued == 0
        want = expected(records)
        got = exported(server, run)
        assert got.keys() == want.keys()
        for series, values in want.items():
            assert got[series] == pytest.approx(values, rel=1e-12), series
    finally:
        await sink.close()
        server.stop()


# -- refused lines: LocalVictoriaMetrics never refuses (it answers 204 and logs a bad line),
# so a small server plays InfluxDB and refuses every line with a marker in it.


class Refusing:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.requests = 0

    async def write(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        lines = body.splitlines()
        for number, line in enumerate(lines, 1):
            if b"REFUSED" in line:
                # what InfluxDB 2.x answers to a partial write
                message = (
                    f"partial write has occurred, errors encountered on line(s): line {number}"
                )
                return web.json_response({"code": "invalid", "message": message}, status=400)
        self.lines += lines
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def refusing_server() -> AsyncIterator[tuple[Refusing, str]]:
    """Started in the test's own event loop (async fixtures run in the session's)."""
    server = Refusing()
    app = web.Application()
    app.router.add_post("/api/v2/write", server.write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_refused_records_become_rejections_and_the_rest_is_written() -> None:
    records = [r for r in synthetic("x") if r["final"] and "source.ip" not in r["group"]]
    bad = {17, 18, 120}
    for i in bad:
        records[i] = {**records[i], "group": {**records[i]["group"], "agency": "REFUSED"}}
    async with refusing_server() as (server, url):
        sink = LineProtocolSink(
            TimeseriesConfig(kind="influxdb2", url=url, org="ioc", bucket="b", token="s3cret")
        )
        await sink.open()
        try:
            await sink.write(sink_records(records))
            rejections = await sink.flush()
        finally:
            await sink.close()
    assert sorted(r.record.offset for r in rejections) == sorted(bad)
    assert all("HTTP 400" in r.reason and "partial write" in r.reason for r in rejections)
    assert len(server.lines) == len(records) - len(bad)
    assert not [line for line in server.lines if b"REFUSED" in line]
    assert sink.status.rejected == 3
    assert sink.status.written == len(records) - 3
    assert "s3cret" not in repr(sink.status) and "s3cret" not in repr(sink.target)
