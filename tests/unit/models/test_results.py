"""The window result record of `ioc.aggregates`."""

from __future__ import annotations

import orjson

from models.results import WindowResult
from models.timefmt import rfc3339


def test_window_result_record():
    result = WindowResult(
        aggregate="air_station_5m",
        family="city",
        group={"refDevice": "HD|AQ%1", "areaServed": "TP Hải Dương"},
        window_start=1_795_662_000_000,
        window_end=1_795_662_300_000,
        statistics={"count": 2, "pm25_mean": 61.25},
        count=2,
        final=True,
    )
    assert result.identity == "air_station_5m|HD%7CAQ%251|TP Hải Dương|1795662000000"
    record = orjson.loads(result.to_json())
    assert record["window_start"] == "2026-11-26T03:00:00Z"
    assert record["window_end"] == "2026-11-26T03:05:00Z"
    assert record["window_start_ms"] == 1_795_662_000_000 and record["final"] is True
    assert record["identity"] == result.identity
    assert WindowResult.from_json(result.to_json()) == result
    assert rfc3339(1_795_662_000_123) == "2026-11-26T03:00:00.123Z"
