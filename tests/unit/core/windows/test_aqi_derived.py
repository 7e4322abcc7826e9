"""`aqi_station_1h`, the hourly VN_AQI derived from the finals of `air_station_1h`.

Every expected value is worked out by hand from Table 2 of Decision 1459/QĐ-TCMT in
the comment beside it (PM2.5 25–50 µg/m³ ↦ 50–100, so 2 index points per µg/m³ there).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from models.derived import AQI_AGGREGATE
from models.results import WindowResult
from streams.core.windows import HourlyAqi, default_aggregates
from streams.core.windows.hourly_aqi import STATE_PREFIX
from tests.unit.core.windows.events import T0, aggregate

H = 3_600_000
P = "ioc.city.validated:0"
STATION = {"refDevice": "HD-AQ-001", "areaServed": "TP Hải Dương"}
OTHER = {"refDevice": "HD-AQ-002", "areaServed": "Cẩm Giàng"}


def hourly(
    hour: int,
    group: dict[str, Any] = STATION,
    count: int = 60,
    aggregate: str = "air_station_1h",
    **means: float | None,
) -> WindowResult:
    """A final of air_station_1h for the hour T0 + hour h, as the engine reports it."""
    statistics: dict[str, Any] = {"count": count}
    for pollutant in ("pm25", "pm10", "no2", "o3"):
        mean = means.get(pollutant)
        statistics |= {
            f"{pollutant}_count": 0 if mean is None else count,
            f"{pollutant}_mean": mean,
            f"{pollutant}_max": mean,
        }
    return WindowResult(
        aggregate=aggregate, family="city", group=group, window_start=T0 + hour * H,
        window_end=T0 + (hour + 1) * H, statistics=statistics, count=count, final=True,
    )  # fmt: skip


def feed(aqi: HourlyAqi, *finals: WindowResult, partition: str = P) -> list[WindowResult]:
    return aqi.derive(partition, list(finals))


@pytest.fixture
def aqi() -> HourlyAqi:
    return HourlyAqi(default_aggregates())


# --- the record ----------------------------------------------------------------------


def test_one_record_per_final_with_the_group_window_and_count_of_the_hour(aqi):
    [first] = feed(aqi, hourly(0, count=58, pm25=40.0, pm10=100.0, no2=50.0, o3=80.0))
    assert first.aggregate == AQI_AGGREGATE == "aqi_station_1h"
    assert first.family == "city" and first.final
    assert first.group == STATION
    assert (first.window_start, first.window_end) == (T0, T0 + H)
    assert first.count == 58
    assert first.identity == f"aqi_station_1h|HD-AQ-001|TP Hải Dương|{T0}"
    assert WindowResult.from_json(first.to_json()) == first


def test_the_first_hour_has_gas_sub_indices_but_no_aqi(aqi):
    # One hour is not a NowCast (2 of the 3 latest hours needed), and without a PM
    # sub-index the decision gives no AQI.
    [first] = feed(aqi, hourly(0, pm25=40.0, pm10=100.0, no2=50.0, o3=80.0))
    assert first.statistics == {
        "aqi": None, "dominant": None, "band": None, "band_vi": None,
        "aqi_pm25": None, "aqi_pm10": None,
        "aqi_o3": 25,  # 0 + 50/160 · 80 = 25
        "aqi_no2": 25,  # 0 + 50/100 · 50 = 25
        "aqi_so2": None, "aqi_co": None,  # not in air_station_1h
        "nowcast_pm25": None, "nowcast_pm10": None,
    }  # fmt: skip


def test_two_steady_hours(aqi):
    feed(aqi, hourly(0, pm25=40.0, pm10=100.0, no2=50.0, o3=80.0))
    [second] = feed(aqi, hourly(1, pm25=40.0, pm10=100.0, no2=50.0, o3=80.0))
    # Equal hours: w* = 1, NowCast = 40 and 100.
    assert second.statistics == {
        "aqi": 80, "dominant": "pm25", "band": "moderate", "band_vi": "Trung bình",
        "aqi_pm25": 80,  # 50 + 50/25 · (40 − 25) = 80
        "aqi_pm10": 75,  # 50 + 50/100 · (100 − 50) = 75
        "aqi_o3": 25, "aqi_no2": 25, "aqi_so2": None, "aqi_co": None,
        "nowcast_pm25": 40.0, "nowcast_pm10": 100.0,
    }  # fmt: skip


def test_nowcast_weights_the_latest_hours(aqi):
    for hour, pm25 in enumerate([30.0, 50.0]):
        feed(aqi, hourly(hour, pm25=pm25))
    [third] = feed(aqi, hourly(2, pm25=40.0))
    # Latest first: 40, 50, 30. w* = 30/50 = 0.6 > 1/2, so w = 0.6:
    # (40 + 0.6·50 + 0.36·30) / (1 + 0.6 + 0.36) = 80.8 / 1.96 = 41.2245
    # PM2.5: 50 + 2 · (41.2245 − 25) = 82.449 → 82
    assert third.statistics["nowcast_pm25"] == pytest.approx(80.8 / 1.96)
    assert third.statistics["aqi_pm25"] == 82
    assert third.statistics["aqi"] == 82 and third.statistics["dominant"] == "pm25"
    assert third.statistics["aqi_pm10"] is None


def test_gases_take_the_current_hour_and_can_set_the_aqi(aqi):
    feed(aqi, hourly(0, pm25=40.0, o3=80.0))
    [second] = feed(aqi, hourly(1, pm25=40.0, o3=600.0))
    # O3 (1h) 600: 200 + 100/400 · (600 − 400) = 250, above PM2.5's 80.
    assert second.statistics["aqi_o3"] == 250
    assert second.statistics["aqi"] == 250
    assert second.statistics["dominant"] == "o3"
    assert (second.statistics["band"], second.statistics["band_vi"]) == ("very bad", "Rất xấu")


# --- gaps and replays ----------------------------------------------------------------


def test_a_missing_hour_is_a_gap_not_the_previous_hour(aqi):
    feed(aqi, hourly(0, pm25=30.0))
    [record] = feed(aqi, hourly(2, pm25=40.0))  # no final for hour 1
    # Latest first: 40, gap, 30. w* = 30/40 = 0.75; the gap has weight 0:
    # (40 + 0.75²·30) / (1 + 0.75²) = 56.875 / 1.5625 = 36.4
    # PM2.5: 50 + 2 · (36.4 − 25) = 72.8 → 73 (without the gap: 35.71 → 71)
    assert record.statistics["nowcast_pm25"] == pytest.approx(36.4)
    assert record.statistics["aqi"] == 73


def test_two_missing_hours_of_three_leave_no_nowcast(aqi):
    feed(aqi, hourly(0, pm25=30.0, pm10=60.0))
    [record] = feed(aqi, hourly(3, pm25=40.0, pm10=60.0, no2=50.0))
    assert record.statistics["nowcast_pm25"] is None
    assert record.statistics["aqi"] is None
    assert record.statistics["aqi_no2"] == 25


def test_an_hour_without_the_pollutant_is_a_gap_for_it_alone(aqi):
    feed(aqi, hourly(0, pm25=30.0, pm10=100.0))
    feed(aqi, hourly(1, pm25=None, pm10=100.0))  # the PM2.5 sensor was down
    [record] = feed(aqi, hourly(2, pm25=40.0, pm10=100.0))
    assert record.statistics["nowcast_pm25"] == pytest.approx(36.4)  # as with a gap hour
    assert record.statistics["nowcast_pm10"] == 100.0


def test_a_replayed_final_overwrites_its_hour(aqi):
    feed(aqi, hourly(0, pm25=30.0))
    [once] = feed(aqi, hourly(1, pm25=50.0))
    [again] = feed(aqi, hourly(1, pm25=50.0))  # re-read after a crash
    assert again == once
    assert aqi.state_entries() == 2
    [third] = feed(aqi, hourly(2, pm25=40.0))
    assert third.statistics["aqi"] == 82  # as without the replay


def test_a_replayed_final_with_other_figures_replaces_the_first(aqi):
    feed(aqi, hourly(0, pm25=30.0))
    feed(aqi, hourly(1, pm25=20.0))
    feed(aqi, hourly(1, pm25=50.0))
    [third] = feed(aqi, hourly(2, pm25=40.0))
    assert third.statistics["aqi"] == 82  # 40, 50, 30 as before; the 20 is gone


def test_stations_and_partitions_are_kept_apart(aqi):
    feed(aqi, hourly(0, pm25=30.0))
    feed(aqi, hourly(1, OTHER, pm25=400.0), hourly(1, pm25=50.0))
    feed(aqi, hourly(0, pm25=400.0), partition="ioc.city.validated:1")
    [third] = feed(aqi, hourly(2, pm25=40.0))
    assert third.statistics["aqi"] == 82


def test_only_finals_of_the_source_are_derived(aqi):
    assert feed(aqi, hourly(0, aggregate="air_district_1h", pm25=30.0)) == []
    open_window = WindowResult(
        aggregate="air_station_1h", family="city", group=STATION, window_start=T0,
        window_end=T0 + H, statistics={"pm25_mean": 30.0}, count=1, final=False,
    )  # fmt: skip
    assert feed(aqi, open_window) == []
    assert aqi.state_entries() == 0


def test_a_foreign_negative_mean_counts_as_missing(aqi):
    feed(aqi, hourly(0, pm25=30.0))
    [record] = feed(aqi, hourly(1, pm25=-5.0))
    assert record.statistics["aqi"] is None  # c1 missing, c3 missing: no NowCast


# --- eviction ------------------------------------------------------------------------


def test_the_twelfth_hour_back_counts_and_the_thirteenth_is_evicted(aqi):
    feed(aqi, hourly(0, OTHER, pm25=10.0))  # a station that then falls silent
    feed(aqi, hourly(0, pm25=80.0))
    for hour in range(1, 11):
        feed(aqi, hourly(hour, pm25=40.0))
    [eleventh] = feed(aqi, hourly(11, pm25=40.0))
    # Hour 0 is the 12th: w* = 40/80 = 1/2, not above it, so w = 1/2:
    # (40 · (2 − 2⁻¹⁰) + 80 · 2⁻¹¹) / (2 − 2⁻¹¹) = 80 / (4095/2048) = 163840/4095
    assert eleventh.statistics["nowcast_pm25"] == pytest.approx(163840 / 4095)
    assert aqi.state_entries() == 13
    aqi.take_dirty(P)
    [twelfth] = feed(aqi, hourly(12, pm25=40.0))
    assert twelfth.statistics["nowcast_pm25"] == 40.0  # twelve hours of 40
    assert aqi.state_entries() == 12
    station, other = (orjson.dumps(group).decode() for group in (STATION, OTHER))
    assert dict(aqi.take_dirty(P)) == {
        f"aqi|{station}|{T0}": None,  # evicted: tombstoned
        f"aqi|{other}|{T0}": None,  # silent since hour 0: evicted all the same
        f"aqi|{station}|{T0 + 12 * H}": b'{"pm25":40.0,"pm10":null,"o3":null,"no2":null}',
    }


def test_a_final_older_than_the_kept_history_gives_nothing(aqi):
    feed(aqi, hourly(12, pm25=40.0))
    assert feed(aqi, hourly(0, pm25=40.0)) == []
    assert feed(aqi, hourly(1, pm25=40.0)) != []  # 11 hours back: still kept


# --- state for the changelog ---------------------------------------------------------


def test_keys_do_not_collide_with_the_engines():
    assert HourlyAqi.owns("aqi|{}|0") and STATE_PREFIX == "aqi|"
    assert not HourlyAqi.owns("aqi#0123abcd.1|[]|0")  # an aggregate named "aqi"
    assert not HourlyAqi.owns("@watermark")


def test_restoring_from_take_dirty_gives_the_same_output():
    def hour(h: int) -> list[WindowResult]:
        # Two stations, gaps, a replay and missing pollutants, over 20 hours.
        finals = [hourly(h, pm25=20.0 + (h * 7) % 30, pm10=60.0 + h, o3=100.0 + 10 * h)]
        if h % 3:
            finals.append(hourly(h, OTHER, pm25=None if h % 5 == 0 else 10.0 + h, no2=80.0))
        return finals + finals[:1] if h == 7 else finals

    straight = HourlyAqi(default_aggregates())
    checkpointed = HourlyAqi(default_aggregates())
    changelog: dict[str, bytes | None] = {}
    outputs, outputs_checkpointed = [], []
    for h in range(20):
        outputs += feed(straight, *hour(h))
        outputs_checkpointed += feed(checkpointed, *hour(h))
        changelog.update(checkpointed.take_dirty(P))
        if h in (5, 14):  # a crash right after a checkpoint
            checkpointed = HourlyAqi(default_aggregates())
            checkpointed.restore(P, changelog.items())
            assert checkpointed.take_dirty(P) == []
    assert outputs_checkpointed == outputs
    assert len({r.statistics["aqi"] for r in outputs}) > 5  # the figures do vary
    # Again from hour 10, with the state of hour 9 restored; the same from then on.
    restarted = HourlyAqi(default_aggregates())
    replayed = HourlyAqi(default_aggregates())
    for h in range(10):
        feed(restarted, *hour(h))
    replayed.restore(P, restarted.take_dirty(P))
    later = [r for h in range(10, 20) for r in feed(replayed, *hour(h))]
    assert later == outputs[-len(later) :]
    assert straight.state_entries() == checkpointed.state_entries() == replayed.state_entries()


def test_restore_tombstones_state_of_another_group_by():
    old = HourlyAqi([aggregate(name="air_station_1h", group_by=["refDevice"], values=["pm25"],
                               statistics=["mean"], window={"size": "1h"})])  # fmt: skip
    feed(old, hourly(0, {"refDevice": "HD-AQ-001"}, pm25=30.0))
    items = old.take_dirty(P)
    new = HourlyAqi(default_aggregates())
    new.restore(P, items)
    assert new.state_entries() == 0
    assert new.take_dirty(P) == [(items[0][0], None)]


def test_restore_refuses_the_engines_keys(aqi):
    with pytest.raises(ValueError, match="not an aqi_station_1h state key"):
        aqi.restore(P, [("@watermark", b"[0,0,0]")])


def test_drop_forgets_a_partition(aqi):
    feed(aqi, hourly(0, pm25=30.0))
    aqi.drop(P)
    assert aqi.state_entries() == 0 and aqi.take_dirty(P) == []


# --- which packs derive it -----------------------------------------------------------


def source(**fields: Any):
    spec: dict[str, Any] = {
        "name": "air_station_1h", "group_by": ["refDevice", "areaServed"],
        "values": ["pm25", "pm10", "no2", "o3"], "statistics": ["count", "mean"],
        "window": {"size": "1h", "grace": "5m"},
    } | fields  # fmt: skip
    return aggregate(**spec)


def test_the_default_pack_derives_it():
    assert HourlyAqi.for_pack(default_aggregates()) is not None


def test_the_source_is_a_constructor_argument():
    aqi = HourlyAqi([source(name="pm_hourly", values=["pm10"])], source="pm_hourly")
    feed(aqi, hourly(0, aggregate="pm_hourly", pm10=100.0))
    [record] = feed(aqi, hourly(1, aggregate="pm_hourly", pm10=100.0))
    assert record.statistics["aqi"] == 75 and record.statistics["dominant"] == "pm10"
    assert record.statistics["aqi_pm25"] is None


@pytest.mark.parametrize(
    ("pack", "why"),
    [
        ([source(name="air_hourly")], None),  # nothing named air_station_1h: silently none
        ([source(values=["no2", "o3"])], "neither pm25 nor pm10"),
        ([source(statistics=["count", "max"])], "lack mean"),
        ([source(window={"size": "5m"})], "not tumbling over 1h"),
        ([source(window={"size": "1h", "step": "30m"})], "not tumbling over 1h"),
        ([source(), source(name="aqi_station_1h")], "already named aqi_station_1h"),
    ],
)
def test_packs_that_cannot_derive_it(pack, why, caplog):
    with caplog.at_level(logging.WARNING, logger="streams.core.windows.hourly_aqi"):
        assert HourlyAqi.for_pack(pack) is None
    if why is None:
        assert caplog.records == []
    else:
        [warning] = caplog.records
        assert why in warning.getMessage()
        with pytest.raises(ValueError, match=why):
            HourlyAqi(pack)
