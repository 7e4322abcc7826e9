"""Event-time progress across stage boundaries (streams.core.progress)."""

from __future__ import annotations

import pytest

from streams.core.progress import (
    HEARTBEAT_S,
    NEVER,
    Frontier,
    Heartbeat,
    Progress,
    SourceClock,
    decode,
    encode,
)

S = 1000
NOW = 1_795_662_000_000


def events(source: str, frontier: int, idle: bool = False, feed: str = "city") -> Frontier:
    return Frontier(source, "events", feed, frontier, idle)


def test_a_frontier_is_the_newest_event_time_never_ahead_of_the_wall_clock():
    clock = SourceClock(NOW)
    assert clock.frontier(NOW, 30 * S) == (NEVER, False)
    clock.saw(NOW - 60 * S, NOW)
    clock.saw(NOW - 90 * S, NOW)  # older: the frontier stays
    assert clock.frontier(NOW, 30 * S) == (NOW - 60 * S, False)
    clock.saw(NOW + 290 * S, NOW)  # a clock ahead by almost IOC_INGEST__MAX_FUTURE_S
    assert clock.frontier(NOW, 30 * S) == (NOW, False)


def test_a_caught_up_silent_source_goes_idle_and_runs_on_with_the_wall_clock():
    clock = SourceClock(NOW)
    clock.saw(NOW - 600 * S, NOW)
    assert clock.frontier(NOW + 30 * S, 30 * S) == (NOW - 600 * S, False)
    assert clock.frontier(NOW + 40 * S, 30 * S) == (NOW - 590 * S, True)
    clock.busy(NOW + 40 * S)  # records waiting again: catching up is not idle
    assert clock.frontier(NOW + 50 * S, 30 * S) == (NOW - 600 * S, False)


def test_a_source_silent_since_it_was_assigned_is_idle_without_a_time_of_its_own():
    clock = SourceClock(NOW)
    assert clock.frontier(NOW + 31 * S, 30 * S) == (NEVER, True)


def test_the_frontier_is_the_slowest_busy_source_and_idle_ones_hold_nothing_back():
    progress = Progress()
    progress.observe([events("a:0", NOW), events("a:1", NOW - 7200 * S)])
    assert progress.frontier() == NOW - 7200 * S  # a two-hour backlog holds the rest back
    progress.observe([events("a:1", NOW - 7200 * S, idle=True), events("a:2", NEVER, idle=True)])
    assert progress.frontier() == NOW and not progress.idle()
    progress.observe([events("a:0", NOW + S, idle=True)])
    assert progress.idle() and progress.frontier() == NOW + S  # all idle: the furthest


def test_a_source_not_yet_started_holds_the_others_back():
    progress = Progress()
    progress.observe([events("a:0", NOW), events("a:1", NEVER)])
    assert progress.frontier() == NEVER


def test_frontiers_never_go_back_and_report_whether_they_moved():
    progress = Progress()
    assert progress.observe([events("a:0", NOW)])
    assert not progress.observe([events("a:0", NOW - S)])  # a replayed, older record
    assert progress.frontier() == NOW
    assert progress.observe([events("a:0", NOW - S, idle=True)])  # idleness still counts
    assert progress.frontier() == NOW and progress.idle()


def test_kinds_and_feeds_are_apart():
    progress = Progress()
    progress.observe([
        events("v:0", NOW, feed="city"),
        events("v:1", NOW - 3600 * S, feed="security"),
        Frontier("g:0/air_5m", "aggregates", "air_5m", NOW - 600 * S, False),
    ])  # fmt: skip
    assert progress.frontier("events", "city") == NOW
    assert progress.frontier("events", "security") == NOW - 3600 * S
    assert progress.frontier("aggregates", "air_5m") == NOW - 600 * S
    assert progress.frontier("aggregates", "other") is None
    assert progress.frontier("events", "services") is None


def test_records_round_trip_and_anything_else_is_refused():
    frontiers = [events("ioc.city.observations:2", NOW), events("x:0", NEVER, idle=True)]
    assert decode(encode(frontiers)) == frontiers
    for bad in (
        b"",
        b"{}",
        b'{"progress": [[1, 2]]}',
        b'{"progress": [["a", "events", "c", 1.5, false]]}',
        None,
    ):
        with pytest.raises(ValueError, match="not a progress record"):
            decode(bad)


def test_state_dumps_and_loads():
    progress = Progress()
    progress.observe([events("a:0", NOW), events("a:1", NEVER, idle=True)])
    restored = Progress()
    restored.load(progress.dump())
    assert restored.sources == progress.sources


def test_a_heartbeat_is_due_at_once_then_every_interval():
    beat = Heartbeat()
    assert beat.due(100.0) and not beat.due(100.0 + HEARTBEAT_S - 0.1)
    assert beat.due(100.0 + HEARTBEAT_S)


def test_a_source_busy_again_or_new_wakes_and_one_moving_on_does_not():
    progress = Progress()
    assert progress.wakes([Frontier("s:0", "events", "city", NEVER, False)])  # new, busy
    assert not progress.wakes([Frontier("s:0", "events", "city", NEVER, True)])  # new, idle
    progress.observe([Frontier("s:0", "events", "city", NEVER, True)])
    assert progress.wakes([Frontier("s:0", "events", "city", NEVER, False)])  # idle → busy
    progress.observe([Frontier("s:0", "events", "city", 5, False)])
    assert not progress.wakes([Frontier("s:0", "events", "city", 9, False)])  # moved on
