"""Bounded, finite, representable: what one record (or one attack) can do to window
state — distinct sets turn into sketches, sums stay finite, extreme times and missing
group fields are rejected or grouped explicitly, never a crash (issue 13)."""

from __future__ import annotations

import orjson
import pytest

from models.errors import EventTimeError, GroupFieldMissing
from models.results import WindowResult
from streams.core.windows import WATERMARK_KEY, WindowEngine
from streams.core.windows.plan import TIME_RANGE_MS
from streams.core.windows.statistics import DISTINCT_VALUE_CHARS, Layout
from tests.unit.core.windows.events import CITY, SECURITY, T0, M, S, aggregate, air, security

YEAR_1_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
YEAR_9999_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


def finals(outputs: list) -> list[WindowResult]:
    return [o for o in outputs if isinstance(o, WindowResult) and o.final]


def logins(**fields: object):
    spec = {
        "name": "auth",
        "family": "security",
        "filter": {"event.category": "authentication"},
        "group_by": ["organization.name"],
        "values": ["user.name"],
        "statistics": ["count", "distinct"],
        "window": {"size": "5m"},
    }
    return aggregate(**(spec | fields))


def failure(t: int, user: str) -> dict:
    return security(t, ["authentication"], user={"name": user})


def pane_payloads(engine: WindowEngine) -> dict[str, bytes]:
    return {k: v for k, v in engine.take_dirty(SECURITY) if k != WATERMARK_KEY and v}


# -- distinct: exact up to a limit, then a HyperLogLog sketch ------------------------------


def test_fifty_thousand_distinct_users_make_a_small_pane_and_an_approximate_count():
    engine = WindowEngine([logins()])
    for i in range(50_000):
        engine.process(SECURITY, failure(T0 + i % 1000, f"user-{i:05d}@so-tttt.gov.vn"), 0)
    [payload] = pane_payloads(engine).values()
    assert len(payload) < 64 * 1024  # a 36,000-name set was over 1 MiB
    [result] = finals(engine.advance(10**15))
    assert result.count == 50_000
    assert result.statistics["user.name_distinct"] == pytest.approx(50_000, rel=0.05)
    assert result.approximate == ("user.name_distinct",)
    assert orjson.loads(result.to_json())["approximate"] == ["user.name_distinct"]


def test_under_the_limit_distinct_is_exact_and_not_flagged():
    engine = WindowEngine([logins()], max_distinct_exact=1000)
    for i in range(1500):  # 1000 distinct names, half of them twice
        engine.process(SECURITY, failure(T0, f"user-{i % 1000}"), 0)
    [result] = finals(engine.advance(10**15))
    assert result.statistics["user.name_distinct"] == 1000
    assert result.approximate == ()
    assert "approximate" not in orjson.loads(result.to_json())


def test_a_sketch_survives_the_checkpoint_and_keeps_counting():
    events = [failure(T0 + i, f"u{i}") for i in range(3000)]
    straight = WindowEngine([logins()], max_distinct_exact=100)
    for event in events:
        straight.process(SECURITY, event, 0)
    [expected] = finals(straight.advance(10**15))

    first = WindowEngine([logins()], max_distinct_exact=100)
    for event in events[:2000]:
        first.process(SECURITY, event, 0)
    changelog = dict(first.take_dirty(SECURITY))
    [payload] = [v for k, v in changelog.items() if k != WATERMARK_KEY]
    assert b'{"hll":' in payload
    layout = Layout(logins(), ["user.name"], max_distinct_exact=100)
    assert orjson.dumps(layout.dump(layout.load(orjson.loads(payload)))) == payload
    second = WindowEngine([logins()], max_distinct_exact=100)
    second.restore(SECURITY, changelog.items())
    for event in events[2000:]:
        second.process(SECURITY, event, 0)
    assert finals(second.advance(10**15)) == [expected]  # the same registers, bit for bit
    assert expected.statistics["user.name_distinct"] == pytest.approx(3000, rel=0.05)


@pytest.mark.parametrize("limit", [0, 50, 10_000])
def test_hopping_windows_merge_sets_and_sketches_alike(limit: int):
    # Panes of 1 minute, one set of 40 names each, 20 of them shared with the next pane.
    agg = logins(window={"size": "3m", "step": "1m"})
    engine = WindowEngine([agg], max_distinct_exact=limit)
    for minute in range(3):
        for i in range(40):
            engine.process(SECURITY, failure(T0 + minute * M, f"u{minute * 20 + i}"), 0)
    results = {r.window_start: r for r in finals(engine.advance(10**15))}
    whole = results[T0]  # the window [T0, T0 + 3m) holds u0 … u79
    assert whole.statistics["user.name_distinct"] == pytest.approx(80, rel=0.05)
    assert bool(whole.approximate) is (limit < 80)
    if limit >= 80:
        assert whole.statistics["user.name_distinct"] == 80


def test_long_distinct_values_are_kept_as_digests():
    engine = WindowEngine([logins()])
    long_names = [f"{i}-" + "x" * 100_000 for i in range(100)]
    for name in long_names * 2:
        engine.process(SECURITY, failure(T0, name), 0)
    [payload] = pane_payloads(engine).values()
    assert len(payload) < 100 * (DISTINCT_VALUE_CHARS + 8)
    [result] = finals(engine.advance(10**15))
    assert result.statistics["user.name_distinct"] == 100 and not result.approximate


# -- sums and means stay finite ---------------------------------------------------------------


def test_a_value_that_would_overflow_the_sum_is_left_out_and_counted():
    engine = WindowEngine([aggregate()])
    for pm25 in (1e308, 1e308, 5.0):
        engine.process(CITY, air(T0, pm25=pm25), 0)
    state = dict(engine.take_dirty(CITY))
    [payload] = [v for k, v in state.items() if k != WATERMARK_KEY]
    assert b"null" not in payload.replace(b"null]", b"")  # no slot became null
    [result] = finals(engine.advance(10**15))
    stats = result.statistics
    assert stats["pm25_sum"] == 1e308 + 5.0 and stats["pm25_mean"] == (1e308 + 5.0) / 2
    assert stats["pm25_count"] == 2 and stats["pm25_max"] == 1e308  # the figures agree
    assert result.count == 3
    assert engine.skipped_values() == {"air": 1}
    assert b"Infinity" not in result.to_json() and b"null" not in result.to_json()


def test_panes_whose_sum_overflows_merge_to_a_finite_sum():
    agg = aggregate(window={"size": "2m", "step": "1m"}, statistics=["sum", "mean"])
    engine = WindowEngine([agg])
    engine.process(CITY, air(T0, pm25=1.5e308), 0)
    engine.process(CITY, air(T0 + M, pm25=1.5e308), 0)
    results = {r.window_start: r for r in finals(engine.advance(10**15))}
    assert results[T0].statistics["pm25_sum"] == pytest.approx(1.7976931348623157e308)


def test_a_sum_beyond_64_bits_is_written_as_a_float():
    engine = WindowEngine([aggregate(statistics=["sum"])])
    for _ in range(3):
        engine.process(CITY, air(T0, pm25=2**63), 0)
    assert all(v is None or orjson.loads(v) for _, v in engine.take_dirty(CITY))
    [result] = finals(engine.advance(10**15))
    assert result.statistics["pm25_sum"] == float(3 * 2**63)
    result.to_json()  # orjson writes no integer beyond 64 bits


def test_a_null_sum_from_an_old_checkpoint_does_not_break_the_next_reading():
    engine = WindowEngine([aggregate()])
    engine.process(CITY, air(T0, pm25=1.0), 0)
    state = dict(engine.take_dirty(CITY))
    [(key, payload)] = [(k, v) for k, v in state.items() if k != WATERMARK_KEY]
    slots = orjson.loads(payload)
    slots[2] = None  # the sum, as an older version wrote an infinite one
    state[key] = orjson.dumps(slots)

    restored = WindowEngine([aggregate()])
    restored.restore(CITY, state.items())
    restored.process(CITY, air(T0 + S, pm25=3.0), 0)
    [result] = finals(restored.advance(10**15))
    assert result.count == 2 and result.statistics["pm25_max"] == 3.0


# -- event times a window bound cannot be written for ------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        YEAR_1_MS,
        YEAR_9999_MS,
        "0001-01-01T00:00:00Z",
        "0001-01-01T03:00:00+07:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-07:00",
        10**20,
        -(10**20),
    ],
)
def test_extreme_event_times_are_rejected_not_raised(when: object):
    daily = aggregate(name="daily", window={"size": "1d", "offset": "-7h"})
    engine = WindowEngine([aggregate(), daily])
    with pytest.raises(EventTimeError, match="outside the times windows can represent"):
        engine.process(CITY, air(T0) | {"dateObserved": when}, 0)
    assert engine.state_entries() == 0  # nothing changed
    engine.process(CITY, air(T0), 0)  # and the next event goes on as ever
    for result in finals(engine.advance(10**15)):
        result.to_json()


def test_times_near_the_ends_of_the_range_still_give_writable_windows():
    low, high = TIME_RANGE_MS
    daily = aggregate(name="daily", window={"size": "1d", "offset": "-7h"})
    for t in (low + 3 * 86_400_000, high - 3 * 86_400_000):
        engine = WindowEngine([daily])
        engine.process(CITY, air(0) | {"dateObserved": t}, 0)
        [result] = finals(engine.advance(10**15) + engine.process(CITY, air(high - 10**10), 0))
        assert orjson.loads(result.to_json())["window_start"]


# -- missing group fields are explicit ----------------------------------------------------------


def test_missing_group_reject_dead_letters_the_event_and_changes_nothing():
    strict = aggregate(name="strict", group_by=["areaServed"], missing_group="reject")
    engine = WindowEngine([aggregate(name="lenient", group_by=["areaServed"]), strict])
    event = air(T0)
    del event["areaServed"]
    with pytest.raises(GroupFieldMissing, match="areaServed: missing; aggregate strict"):
        engine.process(CITY, event, 0)
    assert engine.state_entries() == 0
    for absent in (None, {"not": "a value"}, []):
        with pytest.raises(GroupFieldMissing):
            engine.process(CITY, air(T0) | {"areaServed": absent}, 0)
    engine.process(CITY, air(T0), 0)
    assert {r.aggregate for r in finals(engine.advance(10**15))} == {"lenient", "strict"}


def test_missing_group_reject_applies_only_to_events_its_filter_takes():
    high = {"type": "AirQualityObserved", "pm25": {"gt": 500}}
    strict = aggregate(name="strict", group_by=["areaServed"], missing_group="reject", filter=high)
    engine = WindowEngine([aggregate(group_by=["areaServed"]), strict])
    event = air(T0)
    del event["areaServed"]
    engine.process(CITY, event, 0)
    [result] = finals(engine.advance(10**15))
    assert result.group == {"areaServed": "unknown"}


def test_unknown_stands_for_each_missing_field_and_for_empty_lists():
    by_two = aggregate(group_by=["refDevice", "areaServed"])
    engine = WindowEngine([by_two])
    event = air(T0)
    del event["areaServed"]
    engine.process(CITY, event, 0)
    engine.process(CITY, air(T0) | {"refDevice": None}, 0)
    groups = sorted(tuple(r.group.values()) for r in finals(engine.advance(10**15)))
    assert groups == [("AQ-1", "unknown"), ("unknown", "TP Hải Dương")]

    by_category = aggregate(
        name="cats", family="security", filter={}, group_by=["event.category"], values=[],
        statistics=["count"],
    )  # fmt: skip
    engine = WindowEngine([by_category])
    engine.process(SECURITY, security(T0, []), 0)
    [result] = finals(engine.advance(10**15))
    assert result.group == {"event.category": "unknown"}


def test_the_default_keeps_the_fingerprint_of_existing_state():
    assert aggregate().fingerprint() == aggregate(missing_group="unknown").fingerprint()
    assert aggregate().fingerprint() != aggregate(missing_group="reject").fingerprint()


def test_sketches_and_sets_spill_to_rocksdb_and_back(make_engine):
    # Three groups, two past the limit: with a cache of three panes or fewer, every
    # pane goes through its RocksDB payload (the changelog's) between events.
    engine = make_engine([logins()], max_distinct_exact=50)
    for i in range(600):
        org = f"ORG-{i % 3}"
        user = f"u{i}" if org != "ORG-0" else f"u{(i // 3) % 30}"
        event = failure(T0 + i, user) | {"organization": {"name": org}}
        engine.process(SECURITY, event, 0)
        if i % 100 == 99:
            engine.take_dirty(SECURITY)
    results = {r.group["organization.name"]: r for r in finals(engine.advance(10**15))}
    engine.close()
    assert results["ORG-0"].statistics["user.name_distinct"] == 30
    assert not results["ORG-0"].approximate
    for org in ("ORG-1", "ORG-2"):
        assert results[org].statistics["user.name_distinct"] == pytest.approx(200, rel=0.05)
        assert results[org].approximate == ("user.name_distinct",)


def test_missing_group_takes_only_unknown_or_reject():
    with pytest.raises(ValueError, match="missing_group"):
        aggregate(missing_group="skip")
