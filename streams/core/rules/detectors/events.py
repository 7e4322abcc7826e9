"""Detectors of single events and their order in time: absence, sequence, match."""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from operator import itemgetter
from typing import Any

import orjson

from streams.core.rules.detectors._base import NEVER, SAMPLES, Group, GroupState, Scheduled
from streams.core.rules.lifecycle import Observation

__all__ = ["AbsenceDetector", "MatchDetector", "SequenceDetector"]

_time = itemgetter(0)


# -- absence ---------------------------------------------------------------------------


class _AbsenceState(GroupState):
    __slots__ = ("absent_since", "last")

    def __init__(self, last: int) -> None:
        self.due = 0
        self.seq = -1
        self.last = last
        self.absent_since: int | None = None  # when the absence was decided


class AbsenceDetector(Scheduled[_AbsenceState]):
    """Active for a group seen before and then silent for longer than `after_ms`.

    `advance(watermark)` fires once per silence, stamped at last seen + after + 1 ms
    (the first instant the silence is longer than `after_ms`, whatever the cadence of
    `advance`); value is the silence in seconds, threshold `after_ms` in seconds. The
    next event of the group resolves it, stamped at the later of its time and the
    firing (an event late enough to predate the firing still proves it is alive).
    A group never seen never fires.

    Silence is what this detector looks for, so it keeps quiet groups, but not for
    ever: a group silent for `forget_after_ms` of event time (> `after_ms`; None:
    never) is forgotten, and its absence ends there (an inactive Observation stamped
    at last seen + forget_after, so its alert resolves like any other). Every random
    `refDevice` a faulty producer sends is then one alert for `forget_after`, not one
    for ever. Past `max_groups` groups, the least recently heard (oldest last seen,
    then the group's JSON: the same choice live and in `ioc backtest`) are evicted, a
    hundredth of the limit at a time; their absences end at the evicting input's time
    (`take_ended`). Both are counted: `forgotten`, `evicted`.
    """

    __slots__ = ("_ended", "after_ms", "evicted", "forget_after_ms", "forgotten", "max_groups")

    def __init__(
        self, after_ms: int, forget_after_ms: int | None = None, max_groups: int | None = None
    ) -> None:
        if after_ms < 0:
            raise ValueError("after_ms must be >= 0")
        if forget_after_ms is not None and forget_after_ms <= after_ms:
            raise ValueError("forget_after_ms must be longer than after_ms")
        if max_groups is not None and max_groups < 1:
            raise ValueError("max_groups must be >= 1")
        super().__init__()
        self.after_ms = after_ms
        self.forget_after_ms = forget_after_ms
        self.max_groups = max_groups
        self.forgotten = 0  # groups forgotten after forget_after_ms (since start)
        self.evicted = 0  # groups evicted past max_groups (since start)
        self._ended: list[Observation] = []  # absences of evicted groups, for `advance`

    def observe(self, group: Group, at_ms: int) -> Observation | None:
        """Record that the group spoke; the resolving Observation if it was absent."""
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _AbsenceState(at_ms)
            self._schedule(group, state, at_ms + self.after_ms + 1)
            if self.max_groups is not None and len(self._groups) > self.max_groups:
                self._evict(at_ms)
            return None
        if at_ms > state.last:
            state.last = at_ms
        if state.absent_since is None:
            return None  # its deadline entry is re-judged (and moved on) when it pops
        fired = state.absent_since
        state.absent_since = None
        self._schedule(group, state, state.last + self.after_ms + 1)
        return self._ending(group, fired, max(at_ms, fired), at_ms)

    def _ending(self, group: Group, fired: int, at_ms: int, heard_ms: int) -> Observation:
        return Observation(
            group,
            False,
            at_ms,
            value=(heard_ms - fired) / 1000 if heard_ms > fired else 0.0,
            threshold=self.after_ms / 1000,
            window_start_ms=fired,
            window_end_ms=at_ms,
        )

    def _evict(self, at_ms: int) -> None:
        """Drop the least recently heard groups, a hundredth of the limit at a time (one
        scan of the groups per batch, not per new group)."""
        assert self.max_groups is not None
        groups = self._groups
        count = len(groups) - self.max_groups + max(1, self.max_groups // 100) - 1
        count = min(count, len(groups) - 1)
        if count <= 0:
            return
        cutoff = heapq.nsmallest(count, (state.last for state in groups.values()))[-1]
        older = [group for group, state in groups.items() if state.last < cutoff]
        ties = sorted(
            (group for group, state in groups.items() if state.last == cutoff),
            key=orjson.dumps,
        )
        for group in older + ties[: count - len(older)]:
            state = groups.pop(group)
            self._touched.add(group)
            self.evicted += 1
            if state.absent_since is not None:
                ended = max(at_ms, state.absent_since)
                self._ended.append(self._ending(group, state.absent_since, ended, ended))

    def take_ended(self) -> list[Observation]:
        """The absences that evictions ended since the last call (the caller applies
        them at once, before its next checkpoint: the evicted groups are gone)."""
        ended, self._ended = self._ended, []
        return ended

    def finish_restore(self) -> None:
        super().finish_restore()
        self._schedule_forgetting()

    def restore(self, data: bytes) -> None:
        super().restore(data)
        self._schedule_forgetting()

    def _schedule_forgetting(self) -> None:
        """Absent groups of a checkpoint written before forgetting existed have no
        deadline: give them theirs, in a stable order."""
        if self.forget_after_ms is None:
            return
        waiting = [
            group
            for group, state in self._groups.items()
            if state.absent_since is not None and state.seq == -1
        ]
        for group in sorted(waiting, key=orjson.dumps):
            state = self._groups[group]
            self._schedule(group, state, state.last + self.forget_after_ms)

    def _expire(self, group: Group, state: _AbsenceState, due: int) -> Observation | None:
        deadline = state.last + self.after_ms + 1
        if deadline > due:  # it spoke since: wait for the new deadline
            self._schedule(group, state, deadline)
            return None
        if state.absent_since is not None:  # absent, and due to be forgotten
            assert self.forget_after_ms is not None
            forget_at = state.last + self.forget_after_ms
            if forget_at > due:
                self._schedule(group, state, forget_at)
                return None
            del self._groups[group]
            self.forgotten += 1
            return self._ending(group, state.absent_since, forget_at, forget_at)
        state.absent_since = deadline
        if self.forget_after_ms is not None:
            self._schedule(group, state, state.last + self.forget_after_ms)
        return Observation(
            group,
            True,
            deadline,
            value=(deadline - state.last) / 1000,
            threshold=self.after_ms / 1000,
            window_start_ms=state.last,
            window_end_ms=deadline,
        )

    def _params(self) -> list[Any]:
        return ["absence", self.after_ms]

    def _dump(self, state: _AbsenceState) -> Any:
        return [state.last, state.absent_since]

    def _load(self, payload: Any) -> _AbsenceState:
        last, absent_since = payload
        state = _AbsenceState(last)
        state.absent_since = absent_since
        return state


# -- sequence --------------------------------------------------------------------------


class _SequenceState(GroupState):
    __slots__ = ("firsts", "latest", "matched_at")

    def __init__(self, keep: int) -> None:
        self.due = 0
        self.seq = -1
        self.latest = NEVER
        self.firsts: deque[tuple[int, str]] = deque(maxlen=keep)  # sorted by time
        self.matched_at: int | None = None  # the last `then` that completed a run


class SequenceDetector(Scheduled[_SequenceState]):
    """A `then` event that follows ≥ `first_count` `first` events of its group within
    `within_ms`: firsts with event time in [then − within_ms, then).

    Order is event-time order, judged when the `then` is processed: a `first` processed
    after the `then` does not count, even with an earlier event time (it cannot
    reopen a decision already made). A match returns active=True (a point event) and
    consumes every first before the `then`, so the next match needs a new run; a
    `then` without enough firsts returns None. `advance` returns active=False for a
    group `within_ms` after its last match, so the lifecycle can resolve it.

    Memory per group: the newest `first_count + slack` firsts inside `within_ms`
    (default slack 64: room for `then` events out of order by that many firsts).
    """

    __slots__ = ("first_count", "keep", "within_ms")

    def __init__(self, within_ms: int, first_count: int = 1, slack: int = 64) -> None:
        if within_ms <= 0 or first_count < 1 or slack < 0:
            raise ValueError("within_ms must be > 0, first_count >= 1, slack >= 0")
        super().__init__()
        self.within_ms = within_ms
        self.first_count = first_count
        self.keep = first_count + slack

    def _clock(self, state: _SequenceState, at_ms: int) -> int:
        if at_ms > state.latest:
            state.latest = at_ms
        return max(state.latest, self._watermark)

    def observe_first(self, group: Group, at_ms: int, event_id: str) -> None:
        """Record a `first` event."""
        state = self._groups.get(group)
        if state is None:
            if at_ms < self._watermark - self.within_ms:
                return  # too old to precede any `then` still to come
            state = self._groups[group] = _SequenceState(self.keep)
        clock = self._clock(state, at_ms)
        if at_ms < clock - self.within_ms:
            return
        firsts = state.firsts
        if not firsts or at_ms >= firsts[-1][0]:
            firsts.append((at_ms, event_id))
        elif len(firsts) < self.keep or at_ms > firsts[0][0]:
            if len(firsts) == self.keep:
                firsts.popleft()
            firsts.insert(bisect_left(firsts, at_ms, key=_time), (at_ms, event_id))
        self._reschedule(group, state)

    def observe_then(self, group: Group, at_ms: int, event_id: str) -> Observation | None:
        """Judge a `then` event: the Observation of a match, else None."""
        state = self._groups.get(group)
        if state is None:
            return None  # no firsts at all
        self._clock(state, at_ms)
        firsts = state.firsts
        start = bisect_left(firsts, at_ms - self.within_ms, key=_time)
        end = bisect_left(firsts, at_ms, key=_time)
        if end - start < self.first_count:
            return None
        run = [firsts[i] for i in range(start, end)]
        for _ in range(end):
            firsts.popleft()
        if state.matched_at is None or at_ms > state.matched_at:
            state.matched_at = at_ms
        self._reschedule(group, state)
        ids = [first_id for _, first_id in run[-(SAMPLES - 1) :]]
        return Observation(
            group,
            True,
            at_ms,
            value=float(len(run)),
            threshold=float(self.first_count),
            window_start_ms=run[0][0],
            window_end_ms=at_ms,
            event_ids=(*ids, event_id),
            count=len(run),
        )

    def _reschedule(self, group: Group, state: _SequenceState) -> None:
        """The next time it can change: its match goes stale, or its newest first
        can no longer precede a `then` (then it is forgotten)."""
        deadlines = []
        if state.matched_at is not None:
            deadlines.append(state.matched_at + self.within_ms)
        if state.firsts:
            deadlines.append(state.firsts[-1][0] + self.within_ms + 1)
        if deadlines:
            self._schedule(group, state, min(deadlines))
        else:
            del self._groups[group]

    def _expire(self, group: Group, state: _SequenceState, due: int) -> Observation | None:
        clock = max(due, state.latest)
        firsts = state.firsts
        while firsts and firsts[0][0] < clock - self.within_ms:
            firsts.popleft()
        observation = None
        if state.matched_at is not None and state.matched_at + self.within_ms <= clock:
            ended = state.matched_at + self.within_ms
            state.matched_at = None
            observation = Observation(
                group, False, ended, threshold=float(self.first_count), window_end_ms=ended
            )
        self._reschedule(group, state)
        return observation

    def _params(self) -> list[Any]:
        return ["sequence", self.within_ms, self.first_count, self.keep]

    def _dump(self, state: _SequenceState) -> Any:
        return [state.latest, state.matched_at, list(state.firsts)]

    def _load(self, payload: Any) -> _SequenceState:
        latest, matched_at, firsts = payload
        state = _SequenceState(self.keep)
        state.latest, state.matched_at = latest, matched_at
        state.firsts.extend((t, first_id) for t, first_id in firsts)
        return state


# -- match -----------------------------------------------------------------------------


class _MatchState(GroupState):
    __slots__ = ("count", "ids", "last", "since")

    def __init__(self, since: int) -> None:
        self.due = 0
        self.seq = -1
        self.since = since
        self.last = since
        self.count = 0
        self.ids: deque[str] = deque(maxlen=SAMPLES)


class MatchDetector(Scheduled[_MatchState]):
    """Every matching event: an active Observation (count and samples since the group
    turned active, so the lifecycle can refresh its evidence and keep_firing_for).

    `advance` turns a group inactive once it has had no matching event for `hold_ms`
    of event time (default 0: at the first watermark past its last event, leaving
    `keep_firing_for` to bound the alert) and forgets it.
    """

    __slots__ = ("hold_ms",)

    def __init__(self, hold_ms: int = 0) -> None:
        if hold_ms < 0:
            raise ValueError("hold_ms must be >= 0")
        super().__init__()
        self.hold_ms = hold_ms

    def observe(self, group: Group, at_ms: int, event_id: str) -> Observation:
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _MatchState(at_ms)
        elif at_ms > state.last:
            state.last = at_ms
        state.count += 1
        state.ids.append(event_id)
        self._schedule(group, state, state.last + self.hold_ms)
        return Observation(
            group,
            True,
            at_ms,
            value=float(state.count),
            window_start_ms=state.since,
            window_end_ms=state.last,
            event_ids=tuple(state.ids),
            count=state.count,
        )

    def _expire(self, group: Group, state: _MatchState, due: int) -> Observation | None:
        ended = state.last + self.hold_ms
        if ended > due:
            self._schedule(group, state, ended)
            return None
        del self._groups[group]
        return Observation(
            group,
            False,
            ended,
            value=float(state.count),
            window_start_ms=state.since,
            window_end_ms=state.last,
            count=state.count,
        )

    def _params(self) -> list[Any]:
        return ["match", self.hold_ms]

    def _dump(self, state: _MatchState) -> Any:
        return [state.since, state.last, state.count, list(state.ids)]

    def _load(self, payload: Any) -> _MatchState:
        since, last, count, ids = payload
        state = _MatchState(since)
        state.last, state.count = last, count
        state.ids.extend(ids)
        return state
