"""The window engine, case by case: closing, lateness, idle partitions, running updates,
groups, filters and changelog state."""

from __future__ import annotations

import orjson
import pytest

from models.errors import EventTimeError
from models.results import WindowResult
from streams.core.windows import WATERMARK_KEY, LateEvent, WindowEngine
from tests.unit.core.windows.events import CITY, SECURITY, T0, M, S, aggregate, air, security


def finals(outputs: list) -> list[WindowResult]:
    return [o for o in outputs if isinstance(o, WindowResult) and o.final]


def test_a_tumbling_window_closes_once_the_watermark_passes_end_plus_grace():
    engine = WindowEngine([aggregate(window={"size": "1m", "grace": "10s"})])
    assert engine.process(CITY, air(T0 + 1 * S, pm25=10.0), 0) == []
    assert engine.process(CITY, air(T0 + 20 * S, pm25=30.0), 0) == []
    assert engine.process(CITY, air(T0 + 40 * S, pm25=20.0), 0) == []
    assert engine.process(CITY, air(T0 + M + 9 * S, pm25=99.0), 0) == []  # within grace
    [result] = engine.process(CITY, air(T0 + M + 10 * S, pm25=1.0), 0)
    assert result.final and result.aggregate == "air" and result.family == "city"
    assert result.group == {"refDevice": "AQ-1"}
    assert (result.window_start, result.window_end) == (T0, T0 + M)
    assert result.count == 3
    assert result.statistics == {
        "count": 3,
        "pm25_count": 3,
        "pm25_sum": 60.0,
        "pm25_min": 10.0,
        "pm25_max": 30.0,
        "pm25_mean": 20.0,
        "pm25_last": 20.0,
        "pm25_distinct": 3,
    }
    assert result.identity == f"air|AQ-1|{T0}"
    assert engine.open_windows() == 1  # only the next minute is left


def test_allowed_lateness_holds_the_watermark_back():
    engine = WindowEngine([aggregate()], allowed_lateness_ms=5 * S)
    engine.process(CITY, air(T0), 0)
    assert engine.process(CITY, air(T0 + M + 4 * S), 0) == []
    assert engine.watermark(CITY) == T0 + M - S
    assert len(engine.process(CITY, air(T0 + M + 5 * S), 0)) == 1


def test_a_late_event_is_reported_and_changes_nothing():
    engine = WindowEngine([aggregate(window={"size": "1m", "grace": "5s"})])
    engine.process(CITY, air(T0 + S), 0)
    [closed] = engine.process(CITY, air(T0 + M + 5 * S), 0)
    engine.take_dirty(CITY)
    before = engine.open_windows()
    [late] = engine.process(CITY, air(T0 + 30 * S, pm25=500.0), 0)
    assert late == LateEvent("air", {"refDevice": "AQ-1"}, T0, T0 + 30 * S)
    assert engine.late_events == {"air": 1}
    assert engine.open_windows() == before
    # Only the partition's activity clock moved; no window state was written.
    assert [key for key, _ in engine.take_dirty(CITY)] == [WATERMARK_KEY]
    assert closed.count == 1
    # An event still within grace of its window is on time.
    engine.process(CITY, air(T0 + M + 50 * S), 0)
    assert engine.process(CITY, air(T0 + M + 10 * S), 0) == []


def test_late_is_per_aggregate():
    engine = WindowEngine(
        [
            aggregate(name="short", window={"size": "1m"}),
            aggregate(name="long", window={"size": "1h"}),
        ]
    )
    engine.process(CITY, air(T0 + S), 0)
    engine.process(CITY, air(T0 + 2 * M), 0)
    outputs = engine.process(CITY, air(T0 + 2 * S), 0)
    assert [type(o).__name__ for o in outputs] == ["LateEvent"]
    assert outputs[0].aggregate == "short"
    assert engine.open_windows() == 2  # short's third minute, and the hour with 3 events


def test_hopping_windows_hold_each_event_size_over_step_times():
    engine = WindowEngine(
        [aggregate(window={"size": "3m", "step": "1m"}, statistics=["count", "min", "max"])]
    )
    outputs = []
    for minute, level in enumerate([1.0, 5.0, 3.0, 2.0]):
        outputs += engine.process(CITY, air(T0 + minute * M + S, pm25=level), 0)
    results = sorted(finals(outputs + engine.advance(10**15)), key=lambda r: r.window_start)
    assert [(r.window_start - T0) // M for r in results] == [-2, -1, 0, 1, 2, 3]
    assert [r.count for r in results] == [1, 2, 3, 3, 2, 1]
    assert [(r.statistics["pm25_min"], r.statistics["pm25_max"]) for r in results] == [
        (1.0, 1.0), (1.0, 5.0), (1.0, 5.0), (2.0, 5.0), (2.0, 3.0), (2.0, 2.0),
    ]  # fmt: skip
    assert all(r.window_end - r.window_start == 3 * M for r in results)


def test_a_hopping_event_late_for_some_windows_still_joins_the_open_ones():
    engine = WindowEngine([aggregate(window={"size": "3m", "step": "1m"})])
    engine.process(CITY, air(T0 + 30 * S, pm25=1.0), 0)
    closed = engine.process(CITY, air(T0 + 2 * M + 30 * S, pm25=2.0), 0)
    assert [r.window_start for r in closed] == [T0 - 2 * M, T0 - M]
    assert engine.process(CITY, air(T0 + 40 * S, pm25=3.0), 0) == []  # window T0 is open
    results = {r.window_start: r.count for r in finals(engine.advance(10**15))}
    assert results == {T0: 3, T0 + M: 1, T0 + 2 * M: 1}


def test_window_offset_aligns_windows():
    engine = WindowEngine([aggregate(window={"size": "1d", "offset": "-7h"})])
    engine.process(CITY, air(T0), 0)  # 10:00 in Việt Nam
    [result] = finals(engine.advance(10**15))
    assert result.window_start == T0 - 10 * 3600 * S  # local midnight, 17:00 UTC


def test_an_idle_partition_closes_its_windows_by_wall_clock():
    engine = WindowEngine([aggregate()], allowed_lateness_ms=5 * S, idle_timeout_ms=30 * S)
    wall = 1_000_000
    engine.process(CITY, air(T0 + 50 * S), wall)
    assert engine.advance(wall + 30 * S) == []  # not idle yet
    assert engine.advance(wall + 30 * S + 14 * S) == []  # watermark at T0 + 59 s
    [result] = engine.advance(wall + 30 * S + 15 * S)
    assert result.final and result.window_start == T0
    assert engine.open_windows() == 0
    assert engine.advance(wall + 10 * M) == []
    # Another partition's traffic does not hold an idle one back, nor the reverse.
    other = "ioc.city.validated:1"
    engine.process(other, air(T0 + 5 * M, device="AQ-2"), wall + 10 * M)
    assert engine.watermark(other) == T0 + 5 * M - 5 * S


def test_running_updates_only_for_changed_windows_at_most_once_per_interval():
    engine = WindowEngine([aggregate(emit={"running_every": "10s"})])
    engine.process(CITY, air(T0 + S, pm25=1.0), 0)
    engine.process(CITY, air(T0 + S, device="AQ-2", pm25=2.0), 0)
    first = engine.advance(1000)
    assert sorted((r.group["refDevice"], r.count, r.final) for r in first) == [
        ("AQ-1", 1, False),
        ("AQ-2", 1, False),
    ]
    engine.process(CITY, air(T0 + 2 * S, pm25=3.0), 1000)
    assert engine.advance(5000) == []  # not due yet
    [update] = engine.advance(11_000)  # due; only AQ-1 changed
    assert (update.group["refDevice"], update.count, update.final) == ("AQ-1", 2, False)
    assert update.identity == f"air|AQ-1|{T0}"
    assert engine.advance(21_000) == []  # nothing changed


def test_running_updates_of_hopping_windows_cover_every_open_window():
    engine = WindowEngine(
        [aggregate(window={"size": "3m", "step": "1m"}, emit={"running_every": "1s"})]
    )
    engine.process(CITY, air(T0 + 2 * M + S), 0)
    updates = engine.advance(0)
    assert sorted(r.window_start for r in updates) == [T0, T0 + M, T0 + 2 * M]
    assert not any(r.final for r in updates)


def test_missing_group_field_groups_the_event_under_unknown():
    engine = WindowEngine(
        [
            aggregate(name="by_area", group_by=["areaServed"]),
            aggregate(name="everything", group_by=[]),
        ]
    )
    event = air(T0)
    del event["areaServed"]
    engine.process(CITY, event, 0)
    engine.process(CITY, air(T0, pm25=None), 0)  # no pm25: counted, no value
    results = {(r.aggregate, *r.group.values()): r for r in finals(engine.advance(10**15))}
    unknown = results["by_area", "unknown"]
    assert unknown.count == 1 and unknown.statistics["pm25_count"] == 1
    known = results["by_area", "TP Hải Dương"]
    assert known.count == 1 and known.statistics["pm25_count"] == 0
    assert known.statistics["pm25_mean"] is None
    assert results["everything",].count == 2 and results["everything",].group == {}
    assert results["everything",].identity == f"everything||{T0}"


def test_grouping_by_a_list_field_gives_one_group_per_element():
    engine = WindowEngine(
        [
            aggregate(
                name="by_category",
                family="security",
                filter={},
                group_by=["organization.name", "event.category"],
                values=[],
                statistics=["count"],
            )
        ]
    )
    engine.process(SECURITY, security(T0, ["authentication", "iam"]), 0)
    engine.process(SECURITY, security(T0, ["authentication", "authentication"]), 0)
    results = {r.group["event.category"]: r for r in finals(engine.advance(10**15))}
    assert {k: r.count for k, r in results.items()} == {"authentication": 2, "iam": 1}
    assert results["iam"].group == {"organization.name": "SO-TTTT", "event.category": "iam"}
    assert results["iam"].identity == f"by_category|SO-TTTT|iam|{T0}"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"event.category": "authentication"}, 2),  # contains
        ({"event.category": {"in": ["iam", "web"]}}, 1),
        ({"event.category": {"not_in": ["iam"]}}, 2),
        ({"event.category": {"ne": "iam"}}, 2),
        ({"event.outcome": {"in": ["failure"]}, "event.severity": {"gte": 3}}, 1),
        ({"event.severity": {"lt": 3}}, 1),
        ({"event.severity": {"exists": False}}, 1),
        ({"user.name": {"exists": True}}, 2),
        ({"user.name": "root"}, 1),
    ],
)
def test_filters(condition, expected):
    engine = WindowEngine(
        [
            aggregate(
                family="security", filter=condition, group_by=[], values=[], statistics=["count"]
            )
        ]
    )
    engine.process(SECURITY, security(T0, ["authentication"], user={"name": "root"}), 0)
    event = security(T0, ["authentication", "iam"], user={"name": "admin"})
    event["event"]["severity"] = 3
    engine.process(SECURITY, event, 0)
    event = security(T0, ["network"])
    event["event"]["severity"] = 1
    engine.process(SECURITY, event, 0)
    [result] = finals(engine.advance(10**15))
    assert result.count == expected


def test_percentiles_and_bool_means():
    engine = WindowEngine(
        [
            aggregate(statistics=["p50", "p90", "p99"]),
            aggregate(
                name="on_time", family="services", filter={"kind": "dossier"}, group_by=["agency"],
                values=["on_time", "fee_vnd"], statistics=["count", "mean", "sum"],
            ),
        ]
    )  # fmt: skip
    for value in range(1, 101):
        engine.process(CITY, air(T0 + value, pm25=float(value)), 0)
    for on_time, fee in [(True, 0), (True, 50_000), (False, 50_000), (None, 0)]:
        event = {"kind": "dossier", "agency": "SO-TP", "occurred_at": "2026-11-26T03:00:00Z"}
        event.update({"fee_vnd": fee} | ({"on_time": on_time} if on_time is not None else {}))
        engine.process("ioc.services.validated:0", event, 0)
    results = {r.aggregate: r.statistics for r in finals(engine.advance(10**15))}
    for stat, exact in (("pm25_p50", 50), ("pm25_p90", 90), ("pm25_p99", 99)):
        assert abs(results["air"][stat] - exact) <= 0.01 * exact
    assert results["on_time"]["on_time_mean"] == pytest.approx(2 / 3)
    assert results["on_time"]["on_time_count"] == 3 and results["on_time"]["fee_vnd_sum"] == 100_000


def test_events_of_other_models_are_not_aggregated():
    engine = WindowEngine([aggregate()])
    flood = {"type": "FloodMonitoring", "refDevice": "WL-1", "dateObserved": "2026-11-26T03:00:00Z"}
    assert engine.process(CITY, flood | {"currentLevel": 2.5}, 0) == []
    assert engine.open_windows() == 0
    assert engine.watermark(CITY) == T0  # it still moves the watermark


def test_an_event_without_time_is_an_error():
    engine = WindowEngine([aggregate()])
    with pytest.raises(EventTimeError):
        engine.process(CITY, {"type": "AirQualityObserved", "refDevice": "x"}, 0)
    with pytest.raises(EventTimeError):
        engine.process(CITY, air(T0) | {"dateObserved": "yesterday"}, 0)


def test_take_dirty_restore_round_trip_continues_exactly():
    aggregates = [
        aggregate(statistics=["count", "mean", "last", "distinct", "p50"]),
        aggregate(name="hop", window={"size": "3m", "step": "1m"}, emit={"running_every": "5s"}),
    ]
    stream = [air(T0 + i * 7 * S, device=f"AQ-{i % 3}", pm25=float(i % 11)) for i in range(60)]

    straight = WindowEngine(aggregates)
    expected = [r for event in stream for r in straight.process(CITY, event, 0)]
    expected += finals(straight.advance(10**15))

    first = WindowEngine(aggregates)
    changelog: dict[str, bytes | None] = {}
    got = [r for event in stream[:25] for r in first.process(CITY, event, 0)]
    changelog.update(first.take_dirty(CITY))
    got += [r for event in stream[25:40] for r in first.process(CITY, event, 0)]
    changelog.update(first.take_dirty(CITY))
    assert first.take_dirty(CITY) == []  # nothing changed since
    assert any(value is None for value in changelog.values())  # closed windows: tombstones

    second = WindowEngine(aggregates)
    second.restore(CITY, changelog.items())
    assert second.open_windows(CITY) == first.open_windows(CITY)
    assert second.watermark(CITY) == first.watermark(CITY)
    got += [r for event in stream[40:] for r in second.process(CITY, event, 0)]
    got += finals(second.advance(10**15))
    assert sorted(got, key=lambda r: r.identity) == sorted(expected, key=lambda r: r.identity)


def test_restore_tombstones_state_of_aggregates_no_longer_defined():
    old = WindowEngine([aggregate(window={"size": "1m"})])
    old.process(CITY, air(T0), 0)
    state = dict(old.take_dirty(CITY))
    new = WindowEngine([aggregate(window={"size": "2m"})])  # redefined: new fingerprint
    new.restore(CITY, state.items())
    assert new.open_windows() == 0
    dirty = dict(new.take_dirty(CITY))
    assert [key for key, value in dirty.items() if value is None] == [
        key for key in state if key != WATERMARK_KEY
    ]
    assert orjson.loads(dirty[WATERMARK_KEY])[0] == T0


def test_drop_forgets_a_partition():
    engine = WindowEngine([aggregate()])
    engine.process(CITY, air(T0), 0)
    engine.process("ioc.city.validated:1", air(T0), 0)
    engine.drop(CITY)
    assert engine.open_windows() == 1 and engine.open_windows(CITY) == 0
    assert engine.take_dirty(CITY) == []
    assert engine.partitions == ["ioc.city.validated:1"]
