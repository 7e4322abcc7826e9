"""The window result: the record of topic `ioc.aggregates` (`WindowResult`).

Written by the window stage for each declared aggregate (models.aggregates) and each
derived one (models.derived), read back by the rule stage and the time-series sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from models.timefmt import rfc3339

__all__ = ["WindowResult"]


def _identity_part(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("%", "%25").replace("|", "%7C")


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One window's figures: the record of topic `ioc.aggregates`.

    Kafka key: `identity`. Value (`to_json`), for example:

        {"identity": "air_station_5m|HD-AQ-017|TP Hải Dương|1795662000000",
         "aggregate": "air_station_5m", "family": "city",
         "group": {"refDevice": "HD-AQ-017", "areaServed": "TP Hải Dương"},
         "window_start": "2026-11-26T03:00:00Z", "window_end": "2026-11-26T03:05:00Z",
         "window_start_ms": 1795662000000, "window_end_ms": 1795662300000,
         "count": 5, "final": true,
         "statistics": {"count": 5, "pm25_count": 5, "pm25_mean": 61.2, "pm25_max": 70.1}}

    - `group`: the group_by field paths and this group's values ({} for a global group).
    - `count`: events of the group in the window; `statistics["count"]` repeats it.
    - `statistics["<value>_<stat>"]` for each value field and statistic; with `count`
      listed, `<value>_count` is the number of events that carried the value (the
      denominator of its mean). A value no event carried gives null (0 for `_count`
      and `_distinct`). `_mean` of a boolean is the share of true.
      `_p50/_p90/_p95/_p99` are estimates within 1 % relative error (see
      streams.core.windows.statistics).
    - `approximate`: the statistics that are estimates beyond their stated accuracy:
      `<value>_distinct` once a pane (or merged window) of the group held more than
      IOC_WINDOWS__MAX_DISTINCT_EXACT distinct values and became a HyperLogLog sketch
      (about 1.6 % standard error). Written only when not empty; percentiles, always
      estimates, are not listed.
    - `final`: false for a running update of a still open window, true for the one
      final result sent when the window closes. Running updates and the final share
      the identity, so a compacted topic keeps the final.
    - `identity`: `<aggregate>|<group values joined by |>|<window_start_ms>` (the
      middle part empty for a global group); group values are written as text
      (non-strings as JSON) with `%` and `|` percent-encoded.
      Deterministic, so a replay after a crash overwrites instead of duplicating.
    - Derived: `aqi_station_1h`, the hourly VN_AQI per station (Decision 1459/QĐ-TCMT),
      is declared in no pack but computed from each final of `air_station_1h`
      (models.derived): same family, group and window, always final, `count` the hour's;
      `statistics` are `aqi`, `dominant`, `band`, `band_vi`, a sub-index `aqi_<pollutant>`
      for pm25 pm10 o3 no2 so2 co (null when not computable) and the NowCast
      concentrations `nowcast_pm25`, `nowcast_pm10` (docs/AGGREGATES.md).
    """

    aggregate: str
    family: str
    group: dict[str, Any]
    window_start: int
    window_end: int
    statistics: dict[str, Any]
    count: int
    final: bool
    approximate: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        group = "|".join(map(_identity_part, self.group.values()))
        return f"{self.aggregate}|{group}|{self.window_start}"

    def to_json(self) -> bytes:
        record = {
            "identity": self.identity,
            "aggregate": self.aggregate,
            "family": self.family,
            "group": self.group,
            "window_start": rfc3339(self.window_start),
            "window_end": rfc3339(self.window_end),
            "window_start_ms": self.window_start,
            "window_end_ms": self.window_end,
            "count": self.count,
            "final": self.final,
            "statistics": self.statistics,
        }
        if self.approximate:
            record["approximate"] = list(self.approximate)
        return orjson.dumps(record)

    @classmethod
    def from_json(cls, data: bytes | str) -> WindowResult:
        record = orjson.loads(data)
        return cls(
            aggregate=record["aggregate"],
            family=record["family"],
            group=record["group"],
            window_start=record["window_start_ms"],
            window_end=record["window_end_ms"],
            statistics=record["statistics"],
            count=record["count"],
            final=record["final"],
            approximate=tuple(record.get("approximate", ())),
        )
