"""The console's figures (streams.core.figures) from window finals, as the stages emit them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.results import WindowResult
from streams.core.figures import (
    SOURCES,
    TREND_POINTS,
    Sources,
    TrendBuffer,
    build_figures,
    reading,
)

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z
M = 60_000
H = 60 * M
CITY = "ioc.city.validated:0"
SEC = "ioc.security.validated"

STATION = {"refDevice": "HD-AQ-001", "areaServed": "Hải Châu"}
NEIGHBOUR = {"refDevice": "HD-AQ-002", "areaServed": "Hải Châu"}
AWAY = {"refDevice": "HD-AQ-003", "areaServed": "Cẩm Giàng"}
GAUGE = {"refDevice": "HD-WL-001", "areaServed": "Chí Linh"}


def aqi(group: dict[str, Any], hour: int, value: int | None, final: bool = True) -> WindowResult:
    """A record of the derived `aqi_station_1h` for the hour T0 + hour h."""
    start = T0 + hour * H
    statistics = {"aqi": value, "dominant": "pm25", "band": None, "band_vi": None}
    return WindowResult("aqi_station_1h", "city", group, start, start + H, statistics, 60, final)


def water(group: dict[str, Any], slot: int, **statistics: Any) -> WindowResult:
    """A final of `water_level_5m` for the 5 minutes T0 + slot·5m."""
    start = T0 + slot * 5 * M
    stats = {"count": 5, "currentLevel_count": 5, **statistics}
    return WindowResult("water_level_5m", "city", group, start, start + 5 * M, stats, 5, True)


def backlog(agency: str, kind: str, partition: int, at: int, overdue: int) -> WindowResult:
    """A `case_backlog` record as the case stage's `BacklogReporter` writes it."""
    group = {"agency": agency, "kind": kind, "partition": partition}
    statistics = {"open": overdue + 3, "overdue": overdue, "near_due": 1}
    return WindowResult("case_backlog", "services", group, at, at, statistics, overdue + 3, True)


def failures(agency: str, slot: int, count: int, final: bool = True) -> WindowResult:
    """A share of `auth_failures_5m` (one validated partition's) for T0 + slot·5m."""
    start = T0 + slot * 5 * M
    statistics = {"count": count, "source.ip_count": count, "source.ip_distinct": 1}
    group = {"organization.name": agency}
    return WindowResult("auth_failures_5m", "security", group, start, start + 5 * M, statistics,
                        count, final)  # fmt: skip


def on(partition: str, *results: WindowResult) -> list[tuple[str, WindowResult]]:
    return [(partition, result) for result in results]


# -- figures -----------------------------------------------------------------------------


def test_the_contract_example_shape() -> None:
    figures = build_figures(
        [
            *on(CITY, aqi(STATION, 0, 87), water(GAUGE, 0, currentLevel_last=3.2)),
            *on("ioc.services.validated:0", backlog("SO-TTTT", "dossier", 0, T0, 4)),
            *on(f"{SEC}:0", failures("SO-TTTT", 0, 12)),
        ],
        {"aqi:HD-AQ-001": [(T0 + H, 87)]},
    )
    assert figures == {
        "aqi": {
            "stations": [
                {"station": "HD-AQ-001", "district": "Hải Châu", "aqi": 87, "band": "moderate",
                 "colour": "#ffff00", "at_ms": T0 + H}
            ],
            "districts": [
                {"district": "Hải Châu", "aqi": 87, "band": "moderate", "colour": "#ffff00"}
            ],
        },
        "water": [
            {"station": "HD-WL-001", "district": "Chí Linh", "level_m": 3.2, "alert_m": None,
             "danger_m": None, "at_ms": T0 + 5 * M}
        ],
        "overdue": [{"agency": "SO-TTTT", "overdue": 4, "at_ms": T0}],
        "failed_logins": [{"agency": "SO-TTTT", "count": 12, "at_ms": T0 + 5 * M}],
        "trends": {"aqi:HD-AQ-001": [[T0 + H, 87]]},
    }  # fmt: skip
    orjson.dumps(figures)  # serialisable as it is


def test_no_finals_no_figures() -> None:
    assert build_figures([]) == {
        "aqi": {"stations": [], "districts": []},
        "water": [],
        "overdue": [],
        "failed_logins": [],
        "trends": {},
    }


@pytest.mark.parametrize(
    ("value", "band", "colour"),
    [
        (0, "good", "#00e400"),
        (50, "good", "#00e400"),
        (51, "moderate", "#ffff00"),
        (101, "poor", "#ff7e00"),
        (151, "bad", "#ff0000"),
        (201, "very bad", "#8f3f97"),
        (301, "hazardous", "#7e0023"),
        (500, "hazardous", "#7e0023"),
    ],
)
def test_band_and_official_colour_of_decision_1459(value: int, band: str, colour: str) -> None:
    (station,) = build_figures(on(CITY, aqi(STATION, 0, value)))["aqi"]["stations"]
    assert (station["aqi"], station["band"], station["colour"]) == (value, band, colour)


def test_latest_window_per_station_whatever_the_order() -> None:
    results = [aqi(STATION, 2, 120), aqi(STATION, 0, 40), aqi(STATION, 1, 60)]
    (station,) = build_figures(on(CITY, *results))["aqi"]["stations"]
    assert station["aqi"] == 120 and station["at_ms"] == T0 + 3 * H


def test_running_updates_and_other_aggregates_are_not_figures() -> None:
    other = WindowResult("air_station_5m", "city", STATION, T0, T0 + 5 * M, {"aqi": 3}, 1, True)
    results = [aqi(STATION, 0, 40), aqi(STATION, 1, 300, final=False), other]
    (station,) = build_figures(on(CITY, *results))["aqi"]["stations"]
    assert station["aqi"] == 40


def test_district_is_its_worst_station() -> None:
    results = [aqi(STATION, 0, 87), aqi(NEIGHBOUR, 0, 160), aqi(AWAY, 0, 30)]
    figures = build_figures(on(CITY, *results))["aqi"]
    assert [s["station"] for s in figures["stations"]] == ["HD-AQ-001", "HD-AQ-002", "HD-AQ-003"]
    assert figures["districts"] == [
        {"district": "Cẩm Giàng", "aqi": 30, "band": "good", "colour": "#00e400"},
        {"district": "Hải Châu", "aqi": 160, "band": "bad", "colour": "#ff0000"},
    ]


def test_a_station_without_an_aqi_shows_null_and_does_not_lower_its_district() -> None:
    # aqi_station_1h has aqi null when neither PM2.5 nor PM10 has a NowCast.
    results = [aqi(STATION, 0, None), aqi(NEIGHBOUR, 0, 70), aqi(AWAY, 0, None)]
    figures = build_figures(on(CITY, *results))["aqi"]
    assert figures["stations"][0] == {
        "station": "HD-AQ-001", "district": "Hải Châu", "aqi": None, "band": None,
        "colour": None, "at_ms": T0 + H,
    }  # fmt: skip
    assert [(d["district"], d["aqi"], d["band"]) for d in figures["districts"]] == [
        ("Cẩm Giàng", None, None),
        ("Hải Châu", 70, "moderate"),
    ]


@pytest.mark.parametrize("bad", [87.5, -1, 501, float("nan"), "87", True])
def test_an_aqi_that_is_no_index_counts_as_missing(bad: Any) -> None:
    (station,) = build_figures(on(CITY, aqi(STATION, 0, bad)))["aqi"]["stations"]
    assert station["aqi"] is None and station["band"] is None


def test_a_station_without_district_has_no_district_row() -> None:
    figures = build_figures(on(CITY, aqi({"refDevice": "HD-AQ-009"}, 0, 10)))["aqi"]
    assert figures["stations"][0]["district"] is None and figures["districts"] == []


def test_a_final_without_its_key_is_no_figure() -> None:
    results = [aqi({"areaServed": "Hải Châu"}, 0, 10), failures("", 0, 3)]
    figures = build_figures(on(CITY, *results))
    assert figures["aqi"]["stations"] == [] and figures["failed_logins"] == []


def test_water_levels_take_alert_and_danger_when_the_aggregate_carries_them() -> None:
    default = water(GAUGE, 0, currentLevel_last=3.2, currentLevel_min=3.0, currentLevel_max=3.3)
    richer = water(
        {"refDevice": "HD-WL-002", "areaServed": "Kinh Môn"},
        1,
        currentLevel_last=4.6,
        alertLevel_last=3.5,
        dangerLevel_max=4.5,
    )
    rows = build_figures(on(CITY, default, richer))["water"]
    assert [(r["station"], r["level_m"], r["alert_m"], r["danger_m"]) for r in rows] == [
        ("HD-WL-001", 3.2, None, None),
        ("HD-WL-002", 4.6, 3.5, 4.5),
    ]


def test_water_level_latest_window_and_missing_last() -> None:
    results = [water(GAUGE, 3, currentLevel_last=None), water(GAUGE, 2, currentLevel_last=2.0)]
    (row,) = build_figures(on(CITY, *results))["water"]
    assert row["level_m"] is None and row["at_ms"] == T0 + 20 * M


def test_overdue_sums_the_latest_record_of_each_kind_and_partition() -> None:
    results = [
        backlog("SO-TTTT", "dossier", 0, T0, 4),
        backlog("SO-TTTT", "dossier", 0, T0 + M, 5),  # newer: replaces the one above
        backlog("SO-TTTT", "dossier", 1, T0, 2),  # partition 1 has not reported T0 + M yet
        backlog("SO-TTTT", "feedback", 0, T0 + M, 1),
        backlog("SO-TNMT", "dossier", 2, T0 + M, 0),  # gone to zero
    ]
    figures = build_figures(on("x", *results))
    assert figures["overdue"] == [
        {"agency": "SO-TNMT", "overdue": 0, "at_ms": T0 + M},
        {"agency": "SO-TTTT", "overdue": 8, "at_ms": T0 + M},
    ]


def test_failed_logins_sum_the_partitions_shares_of_the_latest_window() -> None:
    results = [
        *on(f"{SEC}:0", failures("SO-TTTT", 0, 7), failures("SO-TTTT", 1, 4)),
        *on(f"{SEC}:1", failures("SO-TTTT", 1, 6)),
        *on(f"{SEC}:2", failures("SO-TTTT", 0, 50)),  # an older window: not added
        *on(f"{SEC}:1", failures("SO-TTTT", 1, 6)),  # delivered twice: counts once
        *on(f"{SEC}:0", failures("SO-YTE", 0, 3)),
    ]
    assert build_figures(results)["failed_logins"] == [
        {"agency": "SO-TTTT", "count": 10, "at_ms": T0 + 10 * M},
        {"agency": "SO-YTE", "count": 3, "at_ms": T0 + 5 * M},
    ]


def test_sources_name_other_aggregates() -> None:
    result = WindowResult(
        "level_1m", "city", GAUGE, T0, T0 + M, {"currentLevel_last": 1.5}, 1, True
    )
    sources = Sources(water="level_1m")
    assert build_figures(on(CITY, result))["water"] == []
    assert build_figures(on(CITY, result), sources=sources)["water"][0]["level_m"] == 1.5


def test_readings_name_their_series() -> None:
    names = [
        reading(aqi(STATION, 0, 10)),
        reading(water(GAUGE, 0, currentLevel_last=1.0)),
        reading(backlog("SO-TTTT", "dossier", 0, T0, 1)),
        reading(failures("SO-TTTT", 0, 1), f"{SEC}:0"),
    ]
    assert [r.series for r in names if r is not None] == [
        "aqi:HD-AQ-001",
        "water:HD-WL-001",
        "overdue:SO-TTTT",
        "failed_logins:SO-TTTT",
    ]
    assert reading(aqi(STATION, 0, 10, final=False)) is None
    assert SOURCES.aqi == "aqi_station_1h"


# -- trends ------------------------------------------------------------------------------


def test_buffer_keeps_one_point_per_window_end() -> None:
    buffer = TrendBuffer()
    for hour, value in enumerate([40, 60, None, 120]):
        buffer.add(aqi(STATION, hour, value))
    buffer.add(aqi(STATION, 4, 130, final=False))  # a running update: no point
    buffer.add(water(GAUGE, 0, currentLevel_last=3.25))
    assert buffer.trends() == {
        "aqi:HD-AQ-001": [(T0 + H, 40), (T0 + 2 * H, 60), (T0 + 4 * H, 120)],
        "water:HD-WL-001": [(T0 + 5 * M, 3.25)],
    }


def test_buffer_keeps_the_latest_points_only() -> None:
    buffer = TrendBuffer()
    for slot in range(TREND_POINTS + 12):
        buffer.add(water(GAUGE, slot, currentLevel_last=float(slot)))
    points = buffer.trends()["water:HD-WL-001"]
    assert len(points) == TREND_POINTS
    assert points[0] == (T0 + 13 * 5 * M, 12.0) and points[-1][1] == TREND_POINTS + 11


def test_buffer_sums_the_shares_of_one_window_end_once_each() -> None:
    buffer = TrendBuffer()
    buffer.add(failures("SO-TTTT", 0, 7), f"{SEC}:0")
    buffer.add(failures("SO-TTTT", 0, 5), f"{SEC}:1")
    buffer.add(failures("SO-TTTT", 0, 5), f"{SEC}:1")  # a replay replaces its share
    buffer.add(failures("SO-TTTT", 1, 2), f"{SEC}:1")
    buffer.add(failures("SO-TTTT", 0, 9), f"{SEC}:2")  # late for a window already passed
    for kind, partition, overdue in [("dossier", 0, 4), ("dossier", 1, 2), ("feedback", 0, 1)]:
        buffer.add(backlog("SO-TTTT", kind, partition, T0, overdue))
    buffer.add(backlog("SO-TTTT", "dossier", 0, T0 + M, 3))
    assert buffer.trends() == {
        "failed_logins:SO-TTTT": [(T0 + 5 * M, 12), (T0 + 10 * M, 2)],
        "overdue:SO-TTTT": [(T0, 7), (T0 + M, 3)],
    }


def test_buffer_ignores_finals_older_than_a_series_newest_point() -> None:
    buffer = TrendBuffer()
    buffer.add(aqi(STATION, 1, 60))
    buffer.add(aqi(STATION, 0, 40))  # a replay of an earlier hour
    buffer.add(aqi(STATION, 1, 61))  # the same hour again: replaces its point
    assert buffer.trends() == {"aqi:HD-AQ-001": [(T0 + 2 * H, 61)]}


def test_buffer_is_bounded_in_series() -> None:
    buffer = TrendBuffer(points=2, max_series=2)
    for station in ("A", "B", "C"):
        buffer.add(aqi({"refDevice": station}, 0, 10))
    buffer.add(aqi({"refDevice": "A"}, 1, 11))
    assert sorted(buffer.trends()) == ["aqi:A", "aqi:B"] and len(buffer) == 2
    assert buffer.dropped == 1


def test_buffer_trends_are_a_copy_and_feed_the_figures() -> None:
    buffer = TrendBuffer()
    buffer.add(aqi(STATION, 0, 40))
    trends = buffer.trends()
    buffer.add(aqi(STATION, 1, 60))
    assert trends == {"aqi:HD-AQ-001": [(T0 + H, 40)]}
    figures = build_figures(on(CITY, aqi(STATION, 1, 60)), buffer.trends())
    assert orjson.loads(orjson.dumps(figures["trends"])) == {
        "aqi:HD-AQ-001": [[T0 + H, 40], [T0 + 2 * H, 60]]
    }


def test_buffer_needs_room() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        TrendBuffer(points=0)
