"""The rule detectors on hand-made streams, and count against a brute-force reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.rules.detectors import (
    AbsenceDetector,
    BaselineDetector,
    CountDetector,
    DistinctDetector,
    LevelBand,
    MatchDetector,
    RateDetector,
    RatioDetector,
    SequenceDetector,
    ThresholdDetector,
)

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z = 10:00 in Hà Nội
S = 1000
M = 60 * S
H = 60 * M
IP = ("10.0.0.7",)


# -- count -----------------------------------------------------------------------------


def test_count_fires_exactly_at_the_threshold_event() -> None:
    detector = CountDetector(window_ms=5 * M, gte=3)
    assert detector.observe(IP, T0, "e1") is None
    assert detector.observe(IP, T0 + S, "e2") is None
    fired = detector.observe(IP, T0 + 2 * S, "e3")
    assert fired is not None
    assert (fired.active, fired.at_ms, fired.count, fired.value) == (True, T0 + 2 * S, 3, 3.0)
    assert fired.event_ids == ("e1", "e2", "e3")
    assert (fired.window_start_ms, fired.window_end_ms) == (T0 + 2 * S - 5 * M, T0 + 2 * S)
    assert detector.observe(IP, T0 + 3 * S, "e4") is None  # still active: no repeat


def test_count_just_below_the_threshold_never_fires() -> None:
    detector = CountDetector(window_ms=5 * M, gte=3)
    # Two per window, forever: the third is always just outside.
    out = [detector.observe(IP, T0 + i * 3 * M, f"e{i}") for i in range(20)]
    assert out == [None] * 20


def test_count_clears_when_the_window_slides_past_without_new_events() -> None:
    detector = CountDetector(window_ms=5 * M, gte=2)
    detector.observe(IP, T0, "e1")
    assert detector.observe(IP, T0 + M, "e2") is not None
    assert detector.advance(T0 + 5 * M - 1) == []
    cleared = detector.advance(T0 + 5 * M)  # e1 leaves (T0+5m − 5m, T0+5m]
    assert [(o.active, o.at_ms, o.count) for o in cleared] == [(False, T0 + 5 * M, 1)]
    assert len(detector) == 1
    assert detector.advance(T0 + 6 * M) == []  # e2 leaves: nothing to say, forgotten
    assert len(detector) == 0


def test_count_takes_an_out_of_order_event_inside_the_window_only() -> None:
    detector = CountDetector(window_ms=5 * M, gte=3)
    detector.observe(IP, T0 + 10 * M, "now")
    assert detector.observe(IP, T0 + 4 * M, "too-old") is None  # ≤ clock − window
    assert detector.observe(IP, T0 + 9 * M, "late") is None
    fired = detector.observe(IP, T0 + 8 * M, "later")
    assert fired is not None and fired.active and fired.at_ms == T0 + 10 * M
    assert fired.event_ids == ("later", "late", "now")  # in event-time order


def test_count_keeps_only_gte_events_per_group_whatever_the_rate() -> None:
    detector = CountDetector(window_ms=H, gte=5)
    for i in range(10_000):
        detector.observe(IP, T0 + i, f"e{i}")
    assert len(detector._groups[IP].events) == 5


def test_groups_that_go_quiet_are_forgotten() -> None:
    detectors: list[Any] = [
        CountDetector(window_ms=M, gte=3),
        DistinctDetector(window_ms=M, gte=3),
        RatioDetector(window_ms=M, below=0.5, min_events=2),
        RateDetector(window_ms=M, rise=10),
        SequenceDetector(within_ms=M, first_count=2),
        MatchDetector(hold_ms=M),
    ]
    for i in range(100_000):
        group = (f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",)
        t = T0 + i % 1000
        detectors[0].observe(group, t, "e")
        detectors[1].observe(group, t, "u", "e")
        detectors[2].observe(group, t, False, "e")
        detectors[3].observe(group, t, 1.0)
        detectors[4].observe_first(group, t, "e")
        detectors[5].observe(group, t, "e")
    assert all(len(detector) == 100_000 for detector in detectors)
    for detector in detectors:
        detector.advance(T0 + 2 * M)
    assert [len(detector) for detector in detectors] == [0] * len(detectors)
    assert all(not detector._heap for detector in detectors)


# -- distinct --------------------------------------------------------------------------


def test_distinct_fires_at_the_nth_distinct_value_not_at_repeats() -> None:
    detector = DistinctDetector(window_ms=10 * M, gte=3)
    assert detector.observe(IP, T0, "alice", "e1") is None
    assert detector.observe(IP, T0 + S, "bob", "e2") is None
    assert detector.observe(IP, T0 + 2 * S, "alice", "e3") is None
    assert detector.observe(IP, T0 + 3 * S, "bob", "e4") is None
    fired = detector.observe(IP, T0 + 4 * S, "carol", "e5")
    assert fired is not None and fired.active and fired.count == 3
    assert fired.event_ids == ("e3", "e4", "e5")  # the last event of each value


def test_distinct_clears_when_a_value_leaves_the_window() -> None:
    detector = DistinctDetector(window_ms=10 * M, gte=2)
    detector.observe(IP, T0, "alice", "e1")
    detector.observe(IP, T0 + M, "bob", "e2")
    detector.observe(IP, T0 + 5 * M, "bob", "e3")
    cleared = detector.advance(T0 + 11 * M)
    assert [(o.active, o.at_ms, o.count) for o in cleared] == [(False, T0 + 10 * M, 1)]


def test_distinct_out_of_order_values_count_by_their_event_time() -> None:
    detector = DistinctDetector(window_ms=10 * M, gte=3)
    detector.observe(IP, T0 + 20 * M, "a", "e1")
    detector.observe(IP, T0 + 21 * M, "b", "e2")
    assert detector.observe(IP, T0 + 5 * M, "c", "old") is None  # outside the window
    fired = detector.observe(IP, T0 + 15 * M, "c", "late")
    assert fired is not None and fired.active
    # "c" (seen at 15m) is the first to leave: at 25m, not at 30m.
    assert [(o.active, o.at_ms) for o in detector.advance(T0 + 40 * M)] == [(False, T0 + 25 * M)]


# -- rate ------------------------------------------------------------------------------


def test_rate_fires_when_the_rise_over_the_window_minimum_reaches_rise() -> None:
    detector = RateDetector(window_ms=10 * M, rise=20)
    station = ("HD-AQ-0001",)
    assert detector.observe(station, T0, 30.0) is None
    assert detector.observe(station, T0 + M, 25.0) is None
    assert detector.observe(station, T0 + 2 * M, 44.9) is None  # 19.9 above the min 25
    fired = detector.observe(station, T0 + 3 * M, 45.0)
    assert fired is not None and (fired.active, fired.value, fired.threshold) == (True, 20, 20)
    # The minimum (25 at 1m) leaves at 11m: the rise becomes 45 − 44.9.
    cleared = detector.advance(T0 + 11 * M)
    assert [(o.active, o.at_ms) for o in cleared] == [(False, T0 + 11 * M)]


def test_rate_fall_compares_with_the_window_maximum() -> None:
    detector = RateDetector(window_ms=10 * M, fall=5)
    station = ("HD-WL-0001",)
    detector.observe(station, T0, 10.0)
    detector.observe(station, T0 + M, 12.0)
    assert detector.observe(station, T0 + 2 * M, 7.5) is None
    fired = detector.observe(station, T0 + 3 * M, 7.0)
    assert fired is not None and fired.active and fired.value == 5.0


# -- threshold -------------------------------------------------------------------------

AQI_BANDS = [
    LevelBand("warning", fire=150, clear=140, label="unhealthy"),
    LevelBand("critical", fire=200, clear=190, label="very unhealthy"),
]


def states(detector: ThresholdDetector, values: list[float]) -> list[Any]:
    out = []
    for i, value in enumerate(values):
        o = detector.observe(("HD",), T0 + i * M, value)
        out.append(None if o is None else (o.active, o.severity, o.band, o.threshold))
    return out


def test_threshold_hysteresis_keeps_the_band_between_clear_and_fire() -> None:
    assert states(ThresholdDetector(AQI_BANDS), [150, 151, 145, 140, 139.9, 145]) == [
        None,  # not above 150
        (True, "warning", "unhealthy", 150),
        None,  # 145: between clear 140 and fire 150, stays
        None,  # 140 is not below 140
        (False, "warning", "unhealthy", 150),
        None,  # 145 does not re-enter
    ]


def test_threshold_moves_up_at_once_and_down_through_bands_not_cleared() -> None:
    assert states(ThresholdDetector(AQI_BANDS), [250, 195, 185, 145, 100, 210]) == [
        (True, "critical", "very unhealthy", 200),
        None,
        (True, "warning", "unhealthy", 150),  # below critical's clear, not warning's
        None,
        (False, "warning", "unhealthy", 150),
        (True, "critical", "very unhealthy", 200),
    ]


def test_threshold_below_direction_fires_below_and_clears_above() -> None:
    detector = ThresholdDetector([LevelBand("warning", fire=20, clear=25)], direction="below")
    assert states(detector, [21, 19, 24, 25.5]) == [
        None,
        (True, "warning", None, 20),
        None,
        (False, "warning", None, 20),
    ]


def test_threshold_from_a_field_fires_above_and_clears_below_the_same_figure() -> None:
    detector = ThresholdDetector([LevelBand("critical", fire=None)])
    flood = ("HD-WL-0002",)
    assert detector.observe(flood, T0, 2.9, above_override=3.0) is None
    fired = detector.observe(flood, T0 + M, 3.1, above_override=3.0)
    assert fired is not None and (fired.active, fired.threshold) == (True, 3.0)
    assert detector.observe(flood, T0 + 2 * M, 3.1, above_override=None) is None
    cleared = detector.observe(flood, T0 + 3 * M, 2.9, above_override=3.0)
    assert cleared is not None and not cleared.active


def test_threshold_ignores_a_reading_older_than_the_last_one() -> None:
    detector = ThresholdDetector(AQI_BANDS)
    assert detector.observe(("HD",), T0 + M, 160) is not None
    assert detector.observe(("HD",), T0, 100) is None


# -- ratio -----------------------------------------------------------------------------


def test_ratio_waits_for_min_events() -> None:
    detector = RatioDetector(window_ms=H, below=0.9, min_events=5, bucket_ms=S)
    service = ("dvc",)
    out = [detector.observe(service, T0 + i * S, False, f"f{i}") for i in range(5)]
    assert out[:4] == [None] * 4
    fired = out[4]
    assert fired is not None and fired.active and fired.count == 5 and fired.value == 0
    assert fired.threshold == 0.9 and fired.event_ids == ("f0", "f1", "f2", "f3", "f4")


def test_ratio_clears_when_successes_bring_it_back_and_judges_again_as_time_passes() -> None:
    detector = RatioDetector(window_ms=10 * M, below=0.5, min_events=2, bucket_ms=M)
    service = ("dvc",)
    detector.observe(service, T0, True, "ok1")
    detector.observe(service, T0 + M, True, "ok2")
    assert detector.observe(service, T0 + 2 * M, False, "ko1") is None  # 2/3
    assert detector.observe(service, T0 + 3 * M, False, "ko2") is None  # 2/4: not below
    fired = detector.observe(service, T0 + 4 * M, False, "ko3")
    assert fired is not None and fired.active and fired.value == 0.4
    assert detector.observe(service, T0 + 5 * M, True, "ok3") is not None  # 3/6
    # The successes at 0m and 1m leave at 10m and 11m: 1/4 < 0.5, active again.
    later = detector.advance(T0 + 11 * M)
    assert [(o.active, o.at_ms) for o in later] == [(True, T0 + 11 * M - 1)]


def test_ratio_buckets_bound_a_seven_day_window() -> None:
    detector = RatioDetector(window_ms=7 * 24 * H, above=0.5, min_events=10)
    for i in range(20_000):
        detector.observe(("dvc",), T0 + i * 30 * S, i % 3 == 0, f"e{i}")
    assert len(detector._groups[("dvc",)].buckets) <= 169


# -- absence ---------------------------------------------------------------------------


def test_absence_fires_once_for_a_silent_group_and_resolves_when_it_speaks() -> None:
    detector = AbsenceDetector(after_ms=10 * M)
    quiet, chatty = ("HD-AQ-0001",), ("HD-AQ-0002",)
    detector.observe(quiet, T0)
    for i in range(30):
        detector.observe(chatty, T0 + i * M)
        if i == 5:
            assert detector.advance(T0 + 10 * M) == []  # not longer than `after` yet
    fired = detector.advance(T0 + 30 * M)
    assert [(o.group, o.active, o.at_ms) for o in fired] == [(quiet, True, T0 + 10 * M + 1)]
    assert detector.advance(T0 + 35 * M) == []  # once per silence
    resolved = detector.observe(quiet, T0 + 36 * M)
    assert resolved is not None and (resolved.active, resolved.at_ms) == (False, T0 + 36 * M)
    assert detector.observe(quiet, T0 + 37 * M) is None


def test_absence_never_fires_for_a_group_never_seen() -> None:
    detector = AbsenceDetector(after_ms=M)
    assert detector.advance(T0 + H) == []


# -- sequence --------------------------------------------------------------------------


def test_sequence_fires_on_a_success_after_enough_failures_within_the_span() -> None:
    detector = SequenceDetector(within_ms=10 * M, first_count=3)
    user = ("alice",)
    detector.observe_first(user, T0, "f0")  # outside the span of the success
    detector.observe_first(user, T0 + 5 * M, "f1")
    detector.observe_first(user, T0 + 6 * M, "f2")
    assert detector.observe_then(user, T0 + 11 * M, "s0") is None  # two within 10 min
    detector.observe_first(user, T0 + 12 * M, "f3")
    fired = detector.observe_then(user, T0 + 13 * M, "s1")
    assert fired is not None and fired.active and fired.count == 3
    assert fired.event_ids == ("f1", "f2", "f3", "s1")
    assert detector.observe_then(user, T0 + 14 * M, "s2") is None  # the run is consumed
    resolved = detector.advance(T0 + 23 * M)
    assert [(o.active, o.at_ms) for o in resolved] == [(False, T0 + 23 * M)]


def test_sequence_a_success_before_the_failures_does_not_fire() -> None:
    detector = SequenceDetector(within_ms=10 * M, first_count=2)
    user = ("bob",)
    assert detector.observe_then(user, T0, "s0") is None
    detector.observe_first(user, T0 + M, "f1")
    detector.observe_first(user, T0 + 2 * M, "f2")
    assert detector.advance(T0 + H) == []
    # Event-time order: failures stamped after the success do not precede it.
    detector.observe_first(user, T0 + 2 * H + M, "f3")
    detector.observe_first(user, T0 + 2 * H + 2 * M, "f4")
    assert detector.observe_then(user, T0 + 2 * H, "s1") is None


# -- match -----------------------------------------------------------------------------


def test_match_is_active_on_every_event_and_inactive_after_hold() -> None:
    detector = MatchDetector(hold_ms=5 * M)
    sha = ("ab12",)
    first = detector.observe(sha, T0, "m1")
    second = detector.observe(sha, T0 + M, "m2")
    assert first.active and second.active and second.event_ids == ("m1", "m2")
    assert detector.advance(T0 + 5 * M) == []
    ended = detector.advance(T0 + 6 * M)
    assert [(o.active, o.at_ms, o.count) for o in ended] == [(False, T0 + 6 * M, 2)]


# -- baseline --------------------------------------------------------------------------


def _history(detector: BaselineDetector, days: int) -> None:
    """10:00 local: 40 ± 1; 11:00: 100 ± 1."""
    for d in range(days):
        assert detector.observe(DISTRICT, T0 + d * DAY, 40.0 + (-1) ** d) is None
        assert detector.observe(DISTRICT, T0 + H + d * DAY, 100.0 + (-1) ** d) is None


DISTRICT = ("Nam Sách",)
DAY = 24 * H


def test_baseline_needs_min_samples() -> None:
    detector = BaselineDetector(sigmas=3, min_samples=5)
    _history(detector, 4)
    assert detector.observe(DISTRICT, T0 + 4 * DAY, 100.0) is None  # 4 earlier values


def test_baseline_fires_on_a_3_sigma_outlier_of_the_same_hour_only() -> None:
    detector = BaselineDetector(sigmas=3, min_samples=5)
    _history(detector, 5)
    # 100 is normal at 11:00 …
    assert detector.observe(DISTRICT, T0 + H + 5 * DAY, 100.0) is None
    # … and an outlier at 10:00.
    fired = detector.observe(DISTRICT, T0 + 5 * DAY, 100.0)
    assert fired is not None and fired.active and fired.count == 5
    assert fired.value is not None and fired.value > 3
    # 42 is within 3 σ (≈ 1.1) of 40: the same hour's spread, not the outlier's, decides.
    back = detector.observe(DISTRICT, T0 + 6 * DAY, 40.0)
    assert back is not None and not back.active


# -- snapshot / restore ----------------------------------------------------------------

Step = Callable[[Any, int], Any]


def at(i: int) -> int:
    """Event i: every 7 s, slightly out of order, with a 3-minute pause every 20."""
    return T0 + i * 7 * S + (i // 20) * 3 * M - (i % 4) * 3 * S


def _scenario(kind: str) -> tuple[Callable[[], Any], Step]:
    """A detector factory and the step i of a stream over several groups."""
    groups = [(f"g{k}",) for k in range(5)]

    steps: dict[str, tuple[Callable[[], Any], Step]] = {
        "count": (
            lambda: CountDetector(window_ms=2 * M, gte=4),
            lambda d, i: d.observe(groups[i % 3], at(i), f"e{i}"),
        ),
        "distinct": (
            lambda: DistinctDetector(window_ms=2 * M, gte=3),
            lambda d, i: d.observe(groups[i % 2], at(i), i % 5, f"e{i}"),
        ),
        "ratio": (
            lambda: RatioDetector(window_ms=3 * M, below=0.5, min_events=3, bucket_ms=10 * S),
            lambda d, i: d.observe(groups[i % 2], at(i), i % 7 < 3, f"e{i}"),
        ),
        "rate": (
            lambda: RateDetector(window_ms=M, rise=5, fall=5),
            lambda d, i: d.observe(groups[i % 2], at(i), float((i * 37) % 11)),
        ),
        "threshold": (
            lambda: ThresholdDetector(AQI_BANDS),
            lambda d, i: d.observe(groups[i % 2], at(i), float((i * 53) % 250)),
        ),
        "absence": (
            lambda: AbsenceDetector(after_ms=M),
            lambda d, i: d.observe(groups[(i * i) % 5], at(i)),
        ),
        "sequence": (
            lambda: SequenceDetector(within_ms=M, first_count=2),
            lambda d, i: (d.observe_then if i % 4 == 3 else d.observe_first)(
                groups[i % 2], at(i), f"e{i}"
            ),
        ),
        "match": (
            lambda: MatchDetector(hold_ms=30 * S),
            lambda d, i: d.observe(groups[i % 3], at(i), f"e{i}"),
        ),
        "baseline": (
            lambda: BaselineDetector(sigmas=1.5, min_samples=3, season="none"),
            lambda d, i: d.observe(groups[i % 2], at(i), float((i * 31) % 17)),
        ),
    }
    return steps[kind]


def _run(detector: Any, step: Step, start: int, stop: int) -> list[Any]:
    out = []
    for i in range(start, stop):
        out.append(step(detector, i))
        if i % 5 == 4:
            out.append(detector.advance(at(i) - 20 * S))
        if i % 20 == 19:  # the pause: time passes with no event
            out.append(detector.advance(at(i) + 2 * M))
    return out


@pytest.mark.parametrize(
    "kind",
    [
        "count",
        "distinct",
        "ratio",
        "rate",
        "threshold",
        "absence",
        "sequence",
        "match",
        "baseline",
    ],
)
def test_snapshot_and_restore_mid_window_give_the_same_observations(kind: str) -> None:
    make, step = _scenario(kind)
    straight = make()
    _run(straight, step, 0, 60)
    snapshot = straight.snapshot()
    expected = _run(straight, step, 60, 200)
    restored = make()
    restored.restore(snapshot)
    assert _run(restored, step, 60, 200) == expected
    assert any(expected)  # the scenario says something after the snapshot


def test_restore_refuses_a_snapshot_of_other_parameters() -> None:
    snapshot = CountDetector(window_ms=M, gte=3).snapshot()
    with pytest.raises(ValueError, match="snapshot of"):
        CountDetector(window_ms=M, gte=4).restore(snapshot)


# -- count against a brute-force reference ---------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    window=st.integers(1, 50),
    gte=st.integers(1, 6),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("event"), st.integers(0, 2), st.integers(0, 200)),
            st.tuples(st.just("advance"), st.just(0), st.integers(0, 250)),
        ),
        max_size=80,
    ),
)
def test_count_matches_a_brute_force_count(
    window: int, gte: int, steps: list[tuple[str, int, int]]
) -> None:
    """The reference: a group's clock is the latest of its event times and the
    watermark; an event counts if it was inside its group's window when it came."""
    detector = CountDetector(window_ms=window, gte=gte)
    watermark = -(10**9)
    kept: dict[int, list[int]] = {}
    latest: dict[int, int] = {}
    active: dict[int, bool] = {}

    def reference_active(g: int, clock: int) -> bool:
        return sum(clock - window < t <= clock for t in kept.get(g, [])) >= gte

    for index, (what, g, t) in enumerate(steps):
        if what == "advance":
            if t <= watermark:
                continue
            watermark = t
            observed = {o.group[0]: o for o in detector.advance(t)}
            for key in sorted(set(active) | set(observed)):
                now = reference_active(key, max(latest.get(key, watermark), watermark))
                if now != active[key]:
                    assert key in observed and observed[key].active == now
                    active[key] = now
                else:
                    assert key not in observed
            continue
        clock = max(latest.get(g, -(10**9)), t, watermark)
        observation = detector.observe((g,), t, f"e{index}")
        if t > clock - window:
            kept.setdefault(g, []).append(t)
            latest[g] = max(latest.get(g, t), t)
        now = reference_active(g, clock)
        before = active.get(g, False)
        active[g] = now
        if now == before:
            assert observation is None
        else:
            assert observation is not None and observation.active == now
            assert observation.count == sum(clock - window < x <= clock for x in kept[g])


@settings(max_examples=300, deadline=None)
@given(
    window=st.integers(1, 50),
    gte=st.integers(1, 4),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("event"), st.integers(0, 5), st.integers(0, 200)),
            st.tuples(st.just("advance"), st.just(0), st.integers(0, 250)),
        ),
        max_size=80,
    ),
)
def test_distinct_matches_a_brute_force_count(
    window: int, gte: int, steps: list[tuple[str, int, int]]
) -> None:
    """One group; as the count reference, with distinct values: out-of-order events
    exercise the scan of values last seen in the window's oldest `disorder` ms."""
    detector = DistinctDetector(window_ms=window, gte=gte)
    watermark = latest = -(10**9)
    kept: list[tuple[int, int]] = []
    active = False

    def reference_active(clock: int) -> bool:
        return len({v for t, v in kept if clock - window < t <= clock}) >= gte

    for index, (what, value, t) in enumerate(steps):
        if what == "advance":
            if t <= watermark:
                continue
            watermark = t
            observed = detector.advance(t)
            now = reference_active(max(latest, watermark))
            assert [o.active for o in observed] == ([now] if now != active else [])
            active = now
            continue
        clock = max(latest, t, watermark)
        observation = detector.observe(IP, t, value, f"e{index}")
        if t > clock - window:
            kept.append((t, value))
            latest = max(latest, t)
        now = reference_active(clock)
        if now == active:
            assert observation is None
        else:
            assert observation is not None and observation.active == now
        active = now


def test_count_takes_an_event_sent_again_once():
    # An upstream stage that crashed after sending and before committing sends again.
    detector = CountDetector(window_ms=60_000, gte=3)
    assert detector.observe(("ip",), 1_000, "a") is None
    assert detector.observe(("ip",), 2_000, "b") is None
    assert detector.observe(("ip",), 1_000, "a") is None  # the replay of "a"
    assert detector.observe(("ip",), 2_000, "b") is None
    observation = detector.observe(("ip",), 3_000, "c")
    assert observation is not None and observation.active and observation.count == 3
