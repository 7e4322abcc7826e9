"""Detectors that count events in a sliding window: count and distinct.

The window of a group is (clock − window, clock] (see `_base`). An Observation is
returned only when a group's condition changes, stamped with the event time at which
it changed; `advance` reports the changes that time alone causes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict, deque
from itertools import islice
from operator import itemgetter
from typing import Any

from streams.core.rules.detectors._base import NEVER, SAMPLES, Group, GroupState, Scheduled, freeze
from streams.core.rules.lifecycle import Observation

__all__ = ["CountDetector", "DistinctDetector"]

_time = itemgetter(0)


def _insert_by_time(events: deque[tuple[int, str]], at_ms: int, event_id: str) -> None:
    """Insert an out-of-order event, keeping `events` sorted by time and, when the
    deque is full, its newest `maxlen` events."""
    if events.maxlen is not None and len(events) == events.maxlen:
        if at_ms < events[0][0]:
            return  # older than every event kept: cannot be among the newest
        events.popleft()
    events.insert(bisect_right(events, at_ms, key=_time), (at_ms, event_id))


# -- count -----------------------------------------------------------------------------


class _CountState(GroupState):
    __slots__ = ("active", "events", "latest")

    def __init__(self, gte: int) -> None:
        self.due = 0
        self.seq = -1
        self.active = False
        self.latest = NEVER
        # The newest `gte` events only, sorted by time: "≥ gte events in the window"
        # holds exactly when the gte-th newest is still inside it.
        self.events: deque[tuple[int, str]] = deque(maxlen=gte)


class CountDetector(Scheduled[_CountState]):
    """Active while a group has ≥ `gte` events in (clock − window_ms, clock].

    Memory per group is at most `gte` (time, id) pairs, whatever the event rate: a hot
    group at 2,000 events/s over 5 minutes keeps `gte` entries, not 600,000. The count
    is exact for out-of-order events (no time buckets needed); an Observation's count
    is the number of events in the window, capped at `gte` (exact when it turns
    active: the event that makes it true is the gte-th).
    """

    __slots__ = ("gte", "window_ms")

    def __init__(self, window_ms: int, gte: int) -> None:
        if window_ms <= 0 or gte < 1:
            raise ValueError("window_ms must be > 0 and gte >= 1")
        super().__init__()
        self.window_ms = window_ms
        self.gte = gte

    def observe(self, group: Group, at_ms: int, event_id: str) -> Observation | None:
        """Count one event; the Observation when the group's condition changes."""
        watermark = self._watermark
        state = self._groups.get(group)
        if state is None:
            if at_ms <= watermark - self.window_ms:
                return None  # already outside every window it could join
            state = self._groups[group] = _CountState(self.gte)
        if at_ms > state.latest:
            state.latest = at_ms
            clock = at_ms if at_ms >= watermark else watermark
            state.events.append((at_ms, event_id))
        else:
            clock = state.latest if state.latest >= watermark else watermark
            if at_ms <= clock - self.window_ms:
                return None
            # Not newer than the newest: possibly an event counted before and sent
            # again (an upstream stage replays after a crash). Counted once.
            if event_id and (at_ms, event_id) in state.events:
                return None
            _insert_by_time(state.events, at_ms, event_id)
        return self._judge(group, state, clock)

    def _expire(self, group: Group, state: _CountState, due: int) -> Observation | None:
        return self._judge(group, state, max(due, state.latest))

    def _judge(self, group: Group, state: _CountState, clock: int) -> Observation | None:
        window_ms = self.window_ms
        cutoff = clock - window_ms
        events = state.events
        while events and events[0][0] <= cutoff:
            events.popleft()
        if not events:
            del self._groups[group]
            return self._observation(group, state, False, clock) if state.active else None
        active = len(events) >= self.gte
        # Active: it turns when the oldest kept event leaves; inactive: it cannot turn
        # by time alone, so the deadline is when it empties and is forgotten.
        due = (events[0][0] if active else events[-1][0]) + window_ms
        if state.seq < 0 or due < state.due:
            self._schedule(group, state, due)
        if active is state.active:
            return None
        state.active = active
        return self._observation(group, state, active, clock)

    def _observation(
        self, group: Group, state: _CountState, active: bool, clock: int
    ) -> Observation:
        cutoff = clock - self.window_ms
        events = [event for event in state.events if event[0] > cutoff]
        return Observation(
            group,
            active,
            clock,
            value=float(len(events)),
            threshold=float(self.gte),
            window_start_ms=cutoff,
            window_end_ms=clock,
            event_ids=tuple(event_id for _, event_id in events[-SAMPLES:]) if active else (),
            count=len(events),
        )

    def _params(self) -> list[Any]:
        return ["count", self.window_ms, self.gte]

    def _dump(self, state: _CountState) -> Any:
        return [state.active, state.latest, list(state.events)]

    def _load(self, payload: Any) -> _CountState:
        active, latest, events = payload
        state = _CountState(self.gte)
        state.active, state.latest = active, latest
        state.events.extend((t, event_id) for t, event_id in events)
        return state


# -- distinct --------------------------------------------------------------------------


class _DistinctState(GroupState):
    __slots__ = ("active", "disorder", "latest", "seen")

    def __init__(self) -> None:
        self.due = 0
        self.seq = -1
        self.active = False
        self.latest = NEVER
        # value → (last seen, its event id), in the order the values were last seen
        # by processing, which is event-time order up to `disorder`: the most an event
        # of the group has come behind its latest (see DistinctDetector._prune).
        self.seen: OrderedDict[Any, tuple[int, str]] = OrderedDict()
        self.disorder = 0


class DistinctDetector(Scheduled[_DistinctState]):
    """Active while a group has ≥ `gte` distinct values in (clock − window_ms, clock].

    Memory per group: one entry per distinct value in the window, at most the `keep`
    (gte + 64) most recently seen: whether ≥ gte values were seen in the window
    depends only on the gte-th most recent, so the condition stays exact, and a
    credential-stuffing source trying 36,000 user names holds (and checkpoints) a
    hundred of them, not 36,000. An Observation's count is then capped at `keep`
    (exact when it turns active). Values are kept in
    the order they were last seen, so expiry pops from the front in O(1) per value;
    out-of-order events are exact too, at the cost of scanning the values last seen
    in the window's oldest `disorder` ms (a few, for seconds of lateness). A group
    with fewer than `gte` values in all cannot be active, so it is not even pruned.
    Samples are the ids of the last events of the last 10 values seen.
    """

    __slots__ = ("gte", "keep", "window_ms")

    def __init__(self, window_ms: int, gte: int, slack: int = 64) -> None:
        if window_ms <= 0 or gte < 1 or slack < 0:
            raise ValueError("window_ms must be > 0, gte >= 1, slack >= 0")
        super().__init__()
        self.window_ms = window_ms
        self.gte = gte
        self.keep = gte + slack

    def observe(self, group: Group, at_ms: int, value: Any, event_id: str) -> Observation | None:
        """Record `value`; the Observation when the group's condition changes."""
        watermark = self._watermark
        state = self._groups.get(group)
        if state is None:
            if at_ms <= watermark - self.window_ms:
                return None
            state = self._groups[group] = _DistinctState()
        seen = state.seen
        latest = state.latest
        if at_ms >= latest:
            state.latest = at_ms
            clock = at_ms if at_ms >= watermark else watermark
        else:
            clock = latest if latest >= watermark else watermark
            if at_ms <= clock - self.window_ms:
                return None
            known = seen.get(value)
            if known is not None and known[0] >= at_ms:
                return None  # the value is already in the window, seen later
            if latest - at_ms > state.disorder:
                state.disorder = latest - at_ms
        if value in seen:
            seen.move_to_end(value)
        seen[value] = (at_ms, event_id)
        if len(seen) > self.keep:
            self._drop_oldest(state)
        if len(seen) < self.gte and not state.active:
            # Cannot be active: skip the pruning, just make sure it is forgotten.
            due = state.latest + self.window_ms
            if state.seq < 0 or due < state.due:
                self._schedule(group, state, due)
            return None
        return self._judge(group, state, clock)

    def _expire(self, group: Group, state: _DistinctState, due: int) -> Observation | None:
        return self._judge(group, state, max(due, state.latest))

    @staticmethod
    def _prune(state: _DistinctState, cutoff: int) -> None:
        """Drop the values last seen at or before `cutoff`.

        A value is moved to the end when seen, at a time ≥ latest − disorder, and
        everything before it was seen at ≤ latest: so a value before another was last
        seen at most `disorder` ms after it. Hence every expired value lies in the
        prefix of values last seen at ≤ cutoff + disorder, and the scan stops there.
        """
        seen = state.seen
        while seen:
            value = next(iter(seen))
            if seen[value][0] > cutoff:
                break
            del seen[value]
        if not state.disorder:
            return
        horizon = cutoff + state.disorder
        expired = []
        for value, (t, _) in seen.items():
            if t > horizon:
                break
            if t <= cutoff:
                expired.append(value)
        for value in expired:
            del seen[value]

    @staticmethod
    def _drop_oldest(state: _DistinctState) -> None:
        """Forget the value last seen longest ago (found as in `_oldest`)."""
        items = iter(state.seen.items())
        oldest_value, (oldest, _) = next(items)
        if state.disorder:
            horizon = oldest + state.disorder
            for value, (t, _) in items:
                if t > horizon:
                    break
                if t < oldest:
                    oldest_value, oldest = value, t
        del state.seen[oldest_value]

    @staticmethod
    def _oldest(state: _DistinctState) -> int:
        """The earliest last-seen time. Every value before the oldest was last seen
        at most `disorder` ms after it (see _prune), so it is among the front values
        last seen at ≤ the front's time + disorder."""
        values = iter(state.seen.values())
        oldest = next(values)[0]
        if state.disorder:
            horizon = oldest + state.disorder
            for t, _ in values:
                if t > horizon:
                    break
                if t < oldest:
                    oldest = t
        return oldest

    def _judge(self, group: Group, state: _DistinctState, clock: int) -> Observation | None:
        window_ms = self.window_ms
        self._prune(state, clock - window_ms)
        seen = state.seen
        if not seen:
            del self._groups[group]
            return self._observation(group, state, False, clock) if state.active else None
        active = len(seen) >= self.gte
        # Active: it can turn when the oldest value leaves; inactive: only empty out.
        due = (self._oldest(state) if active else state.latest) + window_ms
        if state.seq < 0 or due < state.due:
            self._schedule(group, state, due)
        if active is state.active:
            return None
        state.active = active
        return self._observation(group, state, active, clock)

    def _observation(
        self, group: Group, state: _DistinctState, active: bool, clock: int
    ) -> Observation:
        distinct = len(state.seen)
        samples = list(islice(reversed(state.seen.values()), SAMPLES)) if active else []
        return Observation(
            group,
            active,
            clock,
            value=float(distinct),
            threshold=float(self.gte),
            window_start_ms=clock - self.window_ms,
            window_end_ms=clock,
            event_ids=tuple(event_id for _, event_id in reversed(samples)),
            count=distinct,
        )

    def _params(self) -> list[Any]:
        return ["distinct", self.window_ms, self.gte]

    def _dump(self, state: _DistinctState) -> Any:
        seen = [[value, t, event_id] for value, (t, event_id) in state.seen.items()]
        return [state.active, state.latest, state.disorder, seen]

    def _load(self, payload: Any) -> _DistinctState:
        active, latest, disorder, seen = payload
        state = _DistinctState()
        state.active, state.latest, state.disorder = active, latest, disorder
        state.seen.update((freeze(value), (t, event_id)) for value, t, event_id in seen)
        return state
