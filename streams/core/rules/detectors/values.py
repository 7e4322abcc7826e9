"""Detectors that judge a measured value: threshold bands, rate of change, baseline."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, Literal

import orjson

from streams.core.rules.detectors._base import NEVER, Group, GroupState, Scheduled, freeze
from streams.core.rules.lifecycle import Observation

__all__ = ["BaselineDetector", "LevelBand", "RateDetector", "ThresholdDetector"]

_time = itemgetter(0)
_HOUR_MS: Final = 3_600_000


# -- threshold -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelBand:
    """One band of a threshold rule, as the detector applies it: the levels it fires
    and clears at.

    With direction "above" the band is entered when value > `fire` and left when
    value < `clear` (clear ≤ fire; default fire, no hysteresis); with "below", entered
    when value < `fire` and left when value > `clear` (clear ≥ fire). `fire` None:
    the threshold comes with each event (`above: {field: alertLevel}`), and the band
    clears on the same per-event figure.
    """

    severity: str
    fire: float | None
    clear: float | None = None
    label: str | None = None


class ThresholdDetector:
    """The highest band a group's value has reached, with hysteresis.

    A group moves up as soon as its value passes a higher band's `fire`; it stays in a
    band until the value crosses that band's `clear`, and then drops to the highest
    lower band it has not cleared either (a value that passed the critical band has
    passed the warning band too). An Observation is returned on each band change:
    active=True with the new band's severity/label/threshold, or, on leaving the last
    band, active=False with the band it left. The lifecycle resolves a group's alert
    of another severity when it sees a new band.

    Only groups inside a band are kept. A reading older than the last judged one of a
    group in a band is ignored (the newest reading decides); no windows, so `advance`
    returns nothing.
    """

    __slots__ = ("_clears", "_fires", "_from_field", "_groups", "_sign", "bands", "direction")

    def __init__(
        self, bands: Sequence[LevelBand], direction: Literal["above", "below"] = "above"
    ) -> None:
        if not bands:
            raise ValueError("a threshold needs at least one band")
        self._from_field = any(band.fire is None for band in bands)
        if self._from_field and len(bands) > 1:
            raise ValueError("a threshold taken from a field allows one band only")
        self.direction = direction
        self._sign = 1.0 if direction == "above" else -1.0
        # Compared as "above" on sign × value, least severe band first.
        self.bands = sorted(bands, key=lambda band: self._sign * (band.fire or 0.0))
        self._fires = [self._sign * (band.fire or 0.0) for band in self.bands]
        self._clears = [
            self._sign * (band.clear if band.clear is not None else band.fire or 0.0)
            for band in self.bands
        ]
        if any(clear > fire for fire, clear in zip(self._fires, self._clears, strict=True)):
            raise ValueError(f"a band's clear must not be {direction} its fire")
        self._groups: dict[Group, list[int]] = {}  # group → [band index, last reading ms]

    def __len__(self) -> int:
        """Groups inside a band."""
        return len(self._groups)

    def observe(
        self, group: Group, at_ms: int, value: float, above_override: float | None = None
    ) -> Observation | None:
        """Judge one reading; `above_override` is the per-event threshold of a band
        whose `fire` is None (the reading is skipped without one)."""
        fires, clears = self._fires, self._clears
        if self._from_field:
            if above_override is None:
                return None
            fires = clears = [self._sign * above_override]
        held = self._groups.get(group)
        if held is not None and at_ms < held[1]:
            return None
        signed = self._sign * value
        current = -1 if held is None else held[0]
        new = -1
        for index in range(current, -1, -1):  # the highest band not cleared …
            if not signed < clears[index]:
                new = index
                break
        for index in range(len(fires) - 1, new, -1):  # … or a higher one now passed
            if signed > fires[index]:
                new = index
                break
        if held is not None:
            held[1] = at_ms
        if new == current:
            return None
        if new < 0:
            del self._groups[group]
            return self._observation(group, False, at_ms, value, current, fires)
        if held is None:
            self._groups[group] = [new, at_ms]
        else:
            held[0] = new
        return self._observation(group, True, at_ms, value, new, fires)

    def _observation(
        self,
        group: Group,
        active: bool,
        at_ms: int,
        value: float,
        index: int,
        fires: list[float],
    ) -> Observation:
        band = self.bands[index]
        return Observation(
            group,
            active,
            at_ms,
            value=value,
            severity=band.severity,
            band=band.label,
            threshold=self._sign * fires[index],
        )

    def advance(self, watermark_ms: int) -> list[Observation]:
        """Nothing: a band holds until a reading clears it (absence covers silence)."""
        return []

    # The changelog, group by group (see _base): a group in a band is [band, last ms].

    def groups(self) -> Iterable[Group]:
        return self._groups.keys()

    def take_touched(self) -> set[Group]:
        return set()  # only readings change a group, and the caller knows those

    def rule_state(self) -> Any:
        return {"params": self._params()}

    def load_rule_state(self, doc: Any) -> None:
        if doc["params"] != self._params():
            raise ValueError(f"snapshot of ThresholdDetector{doc['params']}")
        self._groups = {}

    def group_state(self, group: Group) -> Any:
        held = self._groups.get(group)
        return None if held is None else list(held)

    def load_group(self, group: Group, saved: Any) -> None:
        index, at_ms = saved
        self._groups[group] = [index, at_ms]

    def finish_restore(self) -> None:
        pass

    def snapshot(self) -> bytes:
        groups = [[list(group), index, at_ms] for group, (index, at_ms) in self._groups.items()]
        return orjson.dumps({"params": self._params(), "groups": groups})

    def restore(self, data: bytes) -> None:
        doc = orjson.loads(data)
        if doc["params"] != self._params():
            raise ValueError(f"snapshot of ThresholdDetector{doc['params']}")
        self._groups = {freeze(group): [index, at_ms] for group, index, at_ms in doc["groups"]}

    def _params(self) -> list[Any]:
        bands = [[b.severity, b.fire, b.clear, b.label] for b in self.bands]
        return ["threshold", self.direction, bands]


# -- rate ------------------------------------------------------------------------------


def _push_min(window: deque[tuple[int, float]], at_ms: int, value: float) -> None:
    """Add a point to a monotonic window of (time, value), increasing in both, whose
    front is the minimum of every point pushed since the front's time."""
    if not window or at_ms >= window[-1][0]:
        while window and window[-1][1] >= value:
            window.pop()
        window.append((at_ms, value))
        return
    # Out of order (rare): a later point no larger makes this one useless; earlier
    # points no smaller become useless.
    points = list(window)
    index = bisect_right(points, at_ms, key=_time)
    if index < len(points) and points[index][1] <= value:
        return
    start = index
    while start and points[start - 1][1] >= value:
        start -= 1
    points[start:index] = [(at_ms, value)]
    window.clear()
    window.extend(points)


class _RateState(GroupState):
    __slots__ = ("active", "highs", "latest", "latest_value", "lows")

    def __init__(self) -> None:
        self.due = 0
        self.seq = -1
        self.active = False
        self.latest = NEVER
        self.latest_value = 0.0
        self.lows: deque[tuple[int, float]] = deque()  # for the sliding min
        self.highs: deque[tuple[int, float]] = deque()  # negated: the sliding max


class RateDetector(Scheduled[_RateState]):
    """Active while the group's latest value − min(values in the window) ≥ `rise`, or
    max(values in the window) − latest value ≥ `fall`.

    The window's min and max are monotonic deques (amortised O(1) per reading); the
    latest value is the one with the latest event time. The Observation's value is
    the rise (or, when only the fall holds, the fall).
    """

    __slots__ = ("fall", "rise", "window_ms")

    def __init__(
        self, window_ms: int, rise: float | None = None, fall: float | None = None
    ) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be > 0")
        if rise is None and fall is None:
            raise ValueError("a rate needs `rise` or `fall`")
        super().__init__()
        self.window_ms = window_ms
        self.rise = rise
        self.fall = fall

    def observe(self, group: Group, at_ms: int, value: float) -> Observation | None:
        watermark = self._watermark
        state = self._groups.get(group)
        if state is None:
            if at_ms <= watermark - self.window_ms:
                return None
            state = self._groups[group] = _RateState()
        if at_ms >= state.latest:
            state.latest = at_ms
            state.latest_value = value
            clock = at_ms if at_ms >= watermark else watermark
        else:
            clock = state.latest if state.latest >= watermark else watermark
            if at_ms <= clock - self.window_ms:
                return None
        if self.rise is not None:
            _push_min(state.lows, at_ms, value)
        if self.fall is not None:
            _push_min(state.highs, at_ms, -value)
        return self._judge(group, state, clock)

    def _expire(self, group: Group, state: _RateState, due: int) -> Observation | None:
        return self._judge(group, state, max(due, state.latest))

    def _judge(self, group: Group, state: _RateState, clock: int) -> Observation | None:
        window_ms = self.window_ms
        cutoff = clock - window_ms
        for window in (state.lows, state.highs):
            while window and window[0][0] <= cutoff:
                window.popleft()
        if state.latest <= cutoff:
            del self._groups[group]
            if not state.active:
                return None
            threshold = self.rise if self.rise is not None else self.fall
            return self._observation(group, False, clock, None, threshold)
        rise = state.latest_value - state.lows[0][1] if state.lows else None
        fall = -state.highs[0][1] - state.latest_value if state.highs else None
        rising = rise is not None and self.rise is not None and rise >= self.rise
        falling = fall is not None and self.fall is not None and fall >= self.fall
        active = rising or falling
        if active:  # it can turn when an extreme leaves the window
            fronts = [window[0][0] for window in (state.lows, state.highs) if window]
            due = min(fronts) + window_ms
        else:
            due = state.latest + window_ms
        if state.seq < 0 or due < state.due:
            self._schedule(group, state, due)
        if active is state.active:
            return None
        state.active = active
        if falling and not rising:
            return self._observation(group, active, clock, fall, self.fall)
        if self.rise is not None:
            return self._observation(group, active, clock, rise, self.rise)
        return self._observation(group, active, clock, fall, self.fall)

    def _observation(
        self,
        group: Group,
        active: bool,
        clock: int,
        figure: float | None,
        threshold: float | None,
    ) -> Observation:
        return Observation(
            group,
            active,
            clock,
            value=figure,
            threshold=threshold,
            window_start_ms=clock - self.window_ms,
            window_end_ms=clock,
        )

    def _params(self) -> list[Any]:
        return ["rate", self.window_ms, self.rise, self.fall]

    def _dump(self, state: _RateState) -> Any:
        return [state.active, state.latest, state.latest_value, list(state.lows), list(state.highs)]

    def _load(self, payload: Any) -> _RateState:
        active, latest, latest_value, lows, highs = payload
        state = _RateState()
        state.active, state.latest, state.latest_value = active, latest, latest_value
        state.lows.extend((t, v) for t, v in lows)
        state.highs.extend((t, v) for t, v in highs)
        return state


# -- baseline --------------------------------------------------------------------------


class BaselineDetector:
    """Active while a value is more than `sigmas` standard deviations from the mean of
    the group's earlier values in the same season slot (hour of day in local time,
    `tz_offset_ms` east of UTC; "none": one slot), once ≥ `min_samples` of them.

    Mean and variance are Welford's running figures per (group, slot): 3 floats each,
    24 slots per group at most, kept for good (a baseline is history). Every value is
    added after it is judged, outliers included. A slot whose earlier values are all
    equal (σ = 0) gives no z-score and is not judged. The Observation's value is the
    z-score; it is returned when the group's condition changes. For aggregate finals
    pass the window start as `at_ms`, so a window falls in the hour it covers.
    """

    __slots__ = ("_active", "_stats", "min_samples", "season", "sigmas", "tz_offset_ms")

    def __init__(
        self,
        sigmas: float,
        min_samples: int,
        season: Literal["hour_of_day", "none"] = "hour_of_day",
        tz_offset_ms: int = 7 * _HOUR_MS,
    ) -> None:
        if sigmas <= 0 or min_samples < 2:
            raise ValueError("sigmas must be > 0 and min_samples >= 2")
        self.sigmas = sigmas
        self.min_samples = min_samples
        self.season = season
        self.tz_offset_ms = tz_offset_ms
        self._stats: dict[Group, dict[int, list[float]]] = {}  # → slot → [n, mean, M2]
        self._active: set[Group] = set()

    def __len__(self) -> int:
        """(group, slot) figures held."""
        return sum(len(slots) for slots in self._stats.values())

    def slot(self, at_ms: int) -> int:
        if self.season == "none":
            return 0
        return (at_ms + self.tz_offset_ms) // _HOUR_MS % 24

    def observe(self, group: Group, at_ms: int, value: float) -> Observation | None:
        slots = self._stats.get(group)
        if slots is None:
            slots = self._stats[group] = {}
        slot = self.slot(at_ms)
        stats = slots.get(slot)
        if stats is None:
            stats = slots[slot] = [0, 0.0, 0.0]
        n, mean, m2 = stats
        z = None
        if n >= self.min_samples:
            sigma = math.sqrt(m2 / (n - 1))
            if sigma > 0:
                z = (value - mean) / sigma
        # Welford's update: numerically stable, one pass.
        n += 1
        delta = value - mean
        mean += delta / n
        stats[0], stats[1], stats[2] = n, mean, m2 + delta * (value - mean)
        active = z is not None and abs(z) > self.sigmas
        if active == (group in self._active):
            return None
        if active:
            self._active.add(group)
        else:
            self._active.discard(group)
        return Observation(group, active, at_ms, value=z, threshold=self.sigmas, count=int(n) - 1)

    def advance(self, watermark_ms: int) -> list[Observation]:
        """Nothing: the next value decides (finals come once per window)."""
        return []

    # The changelog, group by group (see _base): a group is its slots' figures and
    # whether it is active, at most 24 × 3 numbers.

    def groups(self) -> Iterable[Group]:
        return self._stats.keys()

    def take_touched(self) -> set[Group]:
        return set()  # only values change a group, and the caller knows those

    def rule_state(self) -> Any:
        return {"params": self._params()}

    def load_rule_state(self, doc: Any) -> None:
        if doc["params"] != self._params():
            raise ValueError(f"snapshot of BaselineDetector{doc['params']}")
        self._stats, self._active = {}, set()

    def group_state(self, group: Group) -> Any:
        slots = self._stats.get(group)
        if slots is None:
            return None
        figures = [[slot, *stats] for slot, stats in slots.items()]
        return {"slots": figures, "active": group in self._active}

    def load_group(self, group: Group, saved: Any) -> None:
        self._stats[group] = {slot: [n, mean, m2] for slot, n, mean, m2 in saved["slots"]}
        if saved["active"]:
            self._active.add(group)

    def finish_restore(self) -> None:
        pass

    def snapshot(self) -> bytes:
        stats = [
            [list(group), slot, *figures]
            for group, slots in self._stats.items()
            for slot, figures in slots.items()
        ]
        return orjson.dumps(
            {
                "params": self._params(),
                "stats": stats,
                "active": [list(group) for group in self._active],
            }
        )

    def restore(self, data: bytes) -> None:
        doc = orjson.loads(data)
        if doc["params"] != self._params():
            raise ValueError(f"snapshot of BaselineDetector{doc['params']}")
        self._stats = {}
        for group, slot, n, mean, m2 in doc["stats"]:
            self._stats.setdefault(freeze(group), {})[slot] = [n, mean, m2]
        self._active = {freeze(group) for group in doc["active"]}

    def _params(self) -> list[Any]:
        return ["baseline", self.sigmas, self.min_samples, self.season, self.tz_offset_ms]
