"""The window engine follows its sources' progress: skew between them makes nothing late."""

from __future__ import annotations

from models.results import WindowResult
from streams.core.progress import NEVER, Frontier
from streams.core.windows import WATERMARK_KEY, LateEvent, WindowEngine
from tests.unit.core.windows.events import CITY, T0, M, S, aggregate, air


def at(source: str, frontier: int, idle: bool = False) -> Frontier:
    return Frontier(source, "events", "city", frontier, idle)


def engine() -> WindowEngine:
    return WindowEngine(
        [aggregate(window={"size": "1m", "grace": "10s"})], allowed_lateness_ms=5 * S
    )


def test_one_source_ahead_does_not_make_the_others_events_late():
    made = engine()
    assert made.observe_progress(CITY, [at("src:0", NEVER), at("src:1", NEVER)]) == []
    # Source 0 delivers two hours ahead of source 1 (a backlog, another partitioner).
    assert made.process(CITY, air(T0 + 7200 * S, device="AQ-0"), 0) == []
    assert made.observe_progress(CITY, [at("src:0", T0 + 7200 * S)]) == []
    assert made.watermark(CITY) is None  # source 1 has not started: nothing moves
    outputs = made.process(CITY, air(T0 + S, device="AQ-1"), 0)
    assert not any(isinstance(o, LateEvent) for o in outputs)
    [final] = made.observe_progress(CITY, [at("src:1", T0 + M + 15 * S)])
    assert isinstance(final, WindowResult) and final.group == {"refDevice": "AQ-1"}
    assert made.watermark(CITY) == T0 + M + 10 * S  # the slower source − lateness


def test_events_themselves_do_not_move_time_once_progress_is_known():
    made = engine()
    made.observe_progress(CITY, [at("src:0", T0)])
    made.process(CITY, air(T0 + 3600 * S), 0)  # a clock far ahead, on this partition
    assert made.watermark(CITY) == T0 - 5 * S
    assert made.process(CITY, air(T0 + S, device="AQ-2"), 0) == []  # not late


def test_an_idle_source_stops_holding_back_and_all_idle_move_on():
    made = engine()
    made.observe_progress(CITY, [at("src:0", T0), at("src:1", T0 - 3600 * S)])
    made.process(CITY, air(T0 - 30 * S), 0)
    assert made.observe_progress(CITY, [at("src:1", T0 - 3600 * S, idle=True)]) == []
    assert made.watermark(CITY) == T0 - 5 * S
    [final] = made.observe_progress(CITY, [at("src:0", T0 + M, idle=True)])
    assert final.window_start == T0 - M


def test_an_event_late_within_its_own_source_is_still_late():
    made = engine()
    made.observe_progress(CITY, [at("src:0", T0 + 2 * M)])
    [late] = made.process(CITY, air(T0 + S), 0)
    assert isinstance(late, LateEvent) and late.window_start == T0


def test_sources_are_checkpointed_with_the_watermark():
    made = engine()
    made.observe_progress(CITY, [at("src:0", T0), at("src:1", NEVER)])
    made.process(CITY, air(T0 + S), 0)
    state = made.take_dirty(CITY)
    assert WATERMARK_KEY in dict(state)
    restored = engine()
    restored.restore(CITY, state)
    # Still waiting for source 1: its own later progress, not source 0's, closes.
    assert restored.observe_progress(CITY, [at("src:0", T0 + 3 * M)]) == []
    assert len(restored.observe_progress(CITY, [at("src:1", T0 + 3 * M)])) == 1


def test_aggregate_frontiers_trail_the_watermark_by_the_grace():
    # Finals to come are of windows ending after it: what closes next ends there + grace.
    made = engine()
    assert made.aggregate_frontiers(CITY) == [("air", NEVER)]  # known, before its watermark
    made.observe_progress(CITY, [at("src:0", T0)])
    assert made.aggregate_frontiers(CITY) == [("air", T0 - 5 * S - 10 * S)]
