"""The figures beside the alerts on the console (docs/CONSOLE.md, "Figures"). Pure.

`build_figures` turns the latest window finals a worker holds into the JSON of
`GET /api/figures`; `TrendBuffer` keeps the latest `TREND_POINTS` points per series
from the finals as they come, the trends when VictoriaMetrics is not configured.

Which final feeds which figure (`Sources`; the defaults are the default pack's):

    figure          aggregate          key (group label)   value (statistic)
    aqi.stations    aqi_station_1h     refDevice           aqi; band, colour: Table 1
    aqi.districts   aqi_station_1h     areaServed          the worst (highest) station
    water           water_level_5m     refDevice           currentLevel_last
    overdue         case_backlog       agency              overdue, summed (below)
    failed_logins   auth_failures_5m   organization.name   count, summed (below)

- **District AQI**: the worst station of the district. No aggregate carries a district
  AQI: `air_district_1h` has hourly means only, and an AQI of district means would be
  no station's NowCast (the decision computes it per station).
- **Water**: `level_m` is `currentLevel_last` (else `_max`, `_mean`, for a pack without
  `last`); `alert_m` and `danger_m` likewise from `alertLevel_*` and `dangerLevel_*`
  when the water aggregate has them. The default pack's `water_level_5m` takes only
  `currentLevel`, so they are null: the levels travel on the events (the threshold
  rules read them there), not in the finals.
- **Overdue**: `case_backlog` is one record per (agency, kind, input partition); an
  agency's figure is the sum of the latest record of each (kind, partition), `at_ms`
  the newest of them (docs/AGGREGATES.md, "Case backlog").
- **Failed logins**: each validated partition reports its own share of an agency's
  window under the same identity (docs/AGGREGATES.md, "Groups wider than a device"),
  so an agency's figure is the sum over input partitions of the shares of its latest
  window. Hence the finals come with the partition that produced them.

Latest window per key only: a key's final with the greatest `window_start` wins
(running updates, `final: false`, are ignored). A statistic that is not a finite
number (a foreign producer's) counts as missing: null in the figure, no trend point.

Series names (trends), values at the window end (`window_end_ms`):

    aqi:<refDevice>                     the station's hourly VN_AQI
    water:<refDevice>                   the station's water level (m)
    overdue:<agency>                    the agency's overdue dossiers and feedback
    failed_logins:<organization.name>   the agency's failed logins in 5 minutes
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from models.derived import AQI_AGGREGATE, BACKLOG_AGGREGATE
from models.results import WindowResult
from streams.core.aqi import AqiBand, band_of

__all__ = [
    "AQI_SERIES",
    "FAILED_LOGINS_SERIES",
    "MAX_SERIES",
    "OVERDUE_SERIES",
    "SOURCES",
    "TREND_POINTS",
    "WATER_SERIES",
    "Point",
    "Reading",
    "Sources",
    "TrendBuffer",
    "build_figures",
    "colour",
    "reading",
    "series_name",
]

#: Series prefixes: a series is named `<prefix>:<key>`.
AQI_SERIES: Final = "aqi"
WATER_SERIES: Final = "water"
OVERDUE_SERIES: Final = "overdue"
FAILED_LOGINS_SERIES: Final = "failed_logins"

#: Points per series in a `TrendBuffer` (24 h of 5-minute windows).
TREND_POINTS: Final = 288
#: Series a `TrendBuffer` keeps; the finals of further ones are counted in `dropped`.
MAX_SERIES: Final = 2000

_STATION: Final = "refDevice"
_DISTRICT: Final = "areaServed"
_AGENCY: Final = "agency"
_ORGANIZATION: Final = "organization.name"
_LEVEL_STATISTICS: Final = ("_last", "_max", "_mean")

#: A trend point: (window end in ms, value).
Point = tuple[int, float]


@dataclass(frozen=True, slots=True)
class Sources:
    """The aggregates the figures are read from."""

    aqi: str = AQI_AGGREGATE
    water: str = "water_level_5m"
    overdue: str = BACKLOG_AGGREGATE
    failed_logins: str = "auth_failures_5m"


SOURCES: Final = Sources()


def series_name(prefix: str, key: str) -> str:
    """The trend series of a figure's key: `aqi:HD-AQ-001`."""
    return f"{prefix}:{key}"


def colour(band: AqiBand) -> str:
    """The band's official colour as `#rrggbb` (Table 1 of Decision 1459)."""
    return "#{:02x}{:02x}{:02x}".format(*band.rgb)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one final tells a figure: its series, which share of a summed figure it is,
    when (window start and end) and the value (None when missing)."""

    prefix: str
    key: str
    share: tuple[Any, ...]
    start_ms: int
    at_ms: int
    value: float | None
    result: WindowResult

    @property
    def series(self) -> str:
        return series_name(self.prefix, self.key)


def _text(value: Any) -> str | None:
    """A group value as the figure's key (non-strings as JSON); None when absent."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _aqi(value: Any) -> int | None:
    number = _number(value)
    if number is None or not float(number).is_integer() or not 0 <= number <= 500:
        return None
    return int(number)


def _level(statistics: Mapping[str, Any], value: str) -> float | None:
    for suffix in _LEVEL_STATISTICS:
        number = _number(statistics.get(value + suffix))
        if number is not None:
            return number
    return None


def reading(
    result: WindowResult, partition: str = "", sources: Sources = SOURCES
) -> Reading | None:
    """The figure a final feeds, or None (another aggregate, a running update, no key).

    `partition`: the input partition that produced the final (any stable name, such as
    `ioc.security.validated:3`); it tells the shares of a failed-logins window apart.
    """
    if not result.final:
        return None
    aggregate, group, statistics = result.aggregate, result.group, result.statistics
    share: tuple[Any, ...] = ()
    value: float | None
    if aggregate == sources.aqi:
        prefix, key = AQI_SERIES, _text(group.get(_STATION))
        value = _aqi(statistics.get("aqi"))
    elif aggregate == sources.water:
        prefix, key = WATER_SERIES, _text(group.get(_STATION))
        value = _level(statistics, "currentLevel")
    elif aggregate == sources.overdue:
        prefix, key = OVERDUE_SERIES, _text(group.get(_AGENCY))
        share = (_text(group.get("kind")), _text(group.get("partition")))
        value = _number(statistics.get("overdue"))
    elif aggregate == sources.failed_logins:
        prefix, key = FAILED_LOGINS_SERIES, _text(group.get(_ORGANIZATION))
        share = (partition,)
        value = _number(statistics.get("count", result.count))
    else:
        return None
    if key is None:
        return None
    return Reading(prefix, key, share, result.window_start, result.window_end, value, result)


def _latest(
    finals: Iterable[tuple[str, WindowResult]], sources: Sources
) -> dict[str, dict[str, list[Reading]]]:
    """prefix → key → the latest reading of each share."""
    held: dict[tuple[str, str, tuple[Any, ...]], Reading] = {}
    for partition, result in finals:
        found = reading(result, partition, sources)
        if found is None:
            continue
        slot = (found.prefix, found.key, found.share)
        kept = held.get(slot)
        if kept is None or found.start_ms >= kept.start_ms:
            held[slot] = found
    out: dict[str, dict[str, list[Reading]]] = {
        prefix: {} for prefix in (AQI_SERIES, WATER_SERIES, OVERDUE_SERIES, FAILED_LOGINS_SERIES)
    }
    for (prefix, key, _), found in held.items():
        out[prefix].setdefault(key, []).append(found)
    return out


def _band(aqi: int | None) -> tuple[str | None, str | None]:
    if aqi is None:
        return None, None
    band = band_of(aqi)
    return band.label_en, colour(band)


def _aqi_figures(latest: Mapping[str, list[Reading]]) -> dict[str, list[dict[str, Any]]]:
    stations = []
    worst: dict[str, int | None] = {}
    for station in sorted(latest):
        (found,) = latest[station]  # one share per station
        aqi = None if found.value is None else int(found.value)
        district = _text(found.result.group.get(_DISTRICT))
        band, shown = _band(aqi)
        stations.append(
            {"station": station, "district": district, "aqi": aqi, "band": band,
             "colour": shown, "at_ms": found.at_ms}
        )  # fmt: skip
        if district is not None:
            held = worst.get(district)
            worst[district] = aqi if held is None else held if aqi is None else max(held, aqi)
    districts = []
    for district in sorted(worst):
        aqi = worst[district]
        band, shown = _band(aqi)
        districts.append({"district": district, "aqi": aqi, "band": band, "colour": shown})
    return {"stations": stations, "districts": districts}


def _water_figures(latest: Mapping[str, list[Reading]]) -> list[dict[str, Any]]:
    rows = []
    for station in sorted(latest):
        (found,) = latest[station]
        statistics = found.result.statistics
        rows.append(
            {"station": station, "district": _text(found.result.group.get(_DISTRICT)),
             "level_m": found.value, "alert_m": _level(statistics, "alertLevel"),
             "danger_m": _level(statistics, "dangerLevel"), "at_ms": found.at_ms}
        )  # fmt: skip
    return rows


def _by_key(item: tuple[str, list[Reading]]) -> str:
    return item[0]


def _sum(readings: Sequence[Reading]) -> float | int:
    return sum(r.value for r in readings if r.value is not None)


def _overdue_figures(latest: Mapping[str, list[Reading]]) -> list[dict[str, Any]]:
    # A backlog is a level: every share's latest record counts, whatever its interval.
    return [
        {"agency": agency, "overdue": _sum(shares), "at_ms": max(r.at_ms for r in shares)}
        for agency, shares in sorted(latest.items(), key=_by_key)
    ]


def _failed_login_figures(latest: Mapping[str, list[Reading]]) -> list[dict[str, Any]]:
    # A count over a window: only the shares of the agency's latest window add up (a
    # partition with no failure in it reported nothing, i.e. zero).
    rows = []
    for agency, shares in sorted(latest.items(), key=_by_key):
        start = max(r.start_ms for r in shares)
        newest = [r for r in shares if r.start_ms == start]
        rows.append({"agency": agency, "count": _sum(newest), "at_ms": newest[0].at_ms})
    return rows


def build_figures(
    finals: Iterable[tuple[str, WindowResult]],
    trends: Mapping[str, Sequence[Point]] | None = None,
    sources: Sources = SOURCES,
) -> dict[str, Any]:
    """The body of `GET /api/figures` from the finals a worker holds.

    `finals`: (input partition, final) pairs, e.g. what the window stage's
    `LatestFinals` keeps, in any order and with older windows mixed in (only the
    latest per key counts); `trends`: series name → points, oldest first (from
    VictoriaMetrics or a `TrendBuffer`), passed through as lists.
    """
    latest = _latest(finals, sources)
    return {
        "aqi": _aqi_figures(latest[AQI_SERIES]),
        "water": _water_figures(latest[WATER_SERIES]),
        "overdue": _overdue_figures(latest[OVERDUE_SERIES]),
        "failed_logins": _failed_login_figures(latest[FAILED_LOGINS_SERIES]),
        "trends": {name: [list(p) for p in points] for name, points in (trends or {}).items()},
    }


class _Series:
    __slots__ = ("parts", "points")

    def __init__(self, points: int) -> None:
        self.points: deque[Point] = deque(maxlen=points)
        self.parts: dict[tuple[Any, ...], float] = {}  # the shares of the newest point


class TrendBuffer:
    """The latest `points` points per series, from the finals as they come: the
    console's trends when VictoriaMetrics is not configured.

    Feed it every final (`add`); it keeps what `reading` maps to a series, one point
    per window end. The shares of a summed figure (overdue, failed logins) that end at
    the same time add up into one point; a share arriving again replaces itself (a
    replay counts once). A final ending before a series' newest point is ignored (a
    replay, or a share that lost the race to the next window), so a series only grows
    forward. At most `max_series` series; the finals of further ones are counted in
    `dropped`. Not thread-safe.
    """

    def __init__(
        self, points: int = TREND_POINTS, max_series: int = MAX_SERIES, sources: Sources = SOURCES
    ) -> None:
        if points < 1 or max_series < 1:
            raise ValueError(f"points and max_series must be >= 1 (got {points}, {max_series})")
        self.points = points
        self.max_series = max_series
        self.sources = sources
        self.dropped = 0
        self._series: dict[str, _Series] = {}

    def __len__(self) -> int:
        return len(self._series)

    def add(self, result: WindowResult, partition: str = "") -> None:
        """Take one result (running updates and other aggregates are passed over);
        `partition`: the input partition that produced it, as for `reading`."""
        found = reading(result, partition, self.sources)
        if found is None or found.value is None:
            return
        name = found.series
        series = self._series.get(name)
        if series is None:
            if len(self._series) >= self.max_series:
                self.dropped += 1
                return
            series = self._series[name] = _Series(self.points)
        points, at = series.points, found.at_ms
        if points and at < points[-1][0]:
            return
        if points and at == points[-1][0]:
            series.parts[found.share] = found.value
            points[-1] = (at, sum(series.parts.values()))
        else:
            series.parts = {found.share: found.value}
            points.append((at, found.value))

    def trends(self) -> dict[str, list[Point]]:
        """Series name → points (window end ms, value), oldest first: a copy."""
        return {name: list(series.points) for name, series in sorted(self._series.items())}
