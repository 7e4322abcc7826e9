"""The ratio detector: numerator events over all the rule's events in a sliding window.

An Observation is returned only when a group's condition changes, stamped with the
event time at which it changed; `advance` reports the changes that time alone causes
(in both directions: old buckets leaving can push a ratio either way).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from operator import itemgetter
from typing import Any

from streams.core.rules.detectors._base import NEVER, SAMPLES, Group, GroupState, Scheduled
from streams.core.rules.lifecycle import Observation

__all__ = ["RatioDetector"]

_time = itemgetter(0)


class _RatioState(GroupState):
    __slots__ = ("active", "buckets", "hits", "latest", "misses", "numerator", "total")

    def __init__(self) -> None:
        self.due = 0
        self.seq = -1
        self.active = False
        self.latest = NEVER
        self.buckets: deque[list[int]] = deque()  # [start, numerator, total], by start
        self.numerator = 0
        self.total = 0
        # The last ids of numerator events and of the others: the evidence of an
        # `above` and of a `below` condition respectively.
        self.hits: deque[tuple[int, str]] = deque(maxlen=SAMPLES)
        self.misses: deque[tuple[int, str]] = deque(maxlen=SAMPLES)


class RatioDetector(Scheduled[_RatioState]):
    """Active when numerator/total over the window is < `below` or > `above`, judged
    only once the window holds ≥ `min_events` events.

    Counts are kept in time buckets of `bucket_ms` (default window/168: an hour for a
    7-day window), so memory per group is at most 169 buckets whatever the rate. The
    window is rounded out to whole buckets: a bucket counts until all of it is older
    than the window, so up to one bucket of older events may be included. Unlike a
    count, a ratio can turn either way as old buckets leave, so `advance` judges a
    group again at each bucket's expiry.
    """

    __slots__ = ("above", "below", "bucket_ms", "min_events", "window_ms")

    def __init__(
        self,
        window_ms: int,
        *,
        below: float | None = None,
        above: float | None = None,
        min_events: int = 1,
        bucket_ms: int | None = None,
    ) -> None:
        if window_ms <= 0 or min_events < 1:
            raise ValueError("window_ms must be > 0 and min_events >= 1")
        if below is None and above is None:
            raise ValueError("a ratio needs `below` or `above`")
        bucket_ms = bucket_ms if bucket_ms is not None else max(1, window_ms // 168)
        if not 0 < bucket_ms <= window_ms:
            raise ValueError("bucket_ms must be in (0, window_ms]")
        super().__init__()
        self.window_ms = window_ms
        self.below = below
        self.above = above
        self.min_events = min_events
        self.bucket_ms = bucket_ms

    def observe(
        self, group: Group, at_ms: int, is_numerator: bool, event_id: str
    ) -> Observation | None:
        """Count one event of the rule's filter (`is_numerator`: it also matches the
        numerator's); the Observation when the group's condition changes."""
        watermark = self._watermark
        state = self._groups.get(group)
        if state is None:
            if at_ms <= watermark - self.window_ms:
                return None
            state = self._groups[group] = _RatioState()
        if at_ms >= state.latest:
            state.latest = at_ms
            clock = at_ms if at_ms >= watermark else watermark
        else:
            clock = state.latest if state.latest >= watermark else watermark
            if at_ms <= clock - self.window_ms:
                return None
        bucket = self._bucket(state.buckets, at_ms - at_ms % self.bucket_ms)
        bucket[2] += 1
        state.total += 1
        if is_numerator:
            bucket[1] += 1
            state.numerator += 1
            state.hits.append((at_ms, event_id))
        else:
            state.misses.append((at_ms, event_id))
        return self._judge(group, state, clock)

    @staticmethod
    def _bucket(buckets: deque[list[int]], start: int) -> list[int]:
        """The bucket starting at `start`, created in order if need be."""
        if buckets and buckets[-1][0] == start:
            return buckets[-1]
        if not buckets or buckets[-1][0] < start:
            bucket = [start, 0, 0]
            buckets.append(bucket)
            return bucket
        index = bisect_right(buckets, start, key=_time)  # out of order: rare
        if index and buckets[index - 1][0] == start:
            return buckets[index - 1]
        bucket = [start, 0, 0]
        buckets.insert(index, bucket)
        return bucket

    def _expire(self, group: Group, state: _RatioState, due: int) -> Observation | None:
        return self._judge(group, state, max(due, state.latest))

    def _judge(self, group: Group, state: _RatioState, clock: int) -> Observation | None:
        # A bucket leaves once its last millisecond is outside the window.
        last_ms = self.bucket_ms - 1 + self.window_ms
        buckets = state.buckets
        while buckets and buckets[0][0] + last_ms <= clock:
            _, numerator, total = buckets.popleft()
            state.numerator -= numerator
            state.total -= total
        if not buckets:
            del self._groups[group]
            return self._observation(group, state, False, clock) if state.active else None
        due = buckets[0][0] + last_ms
        if state.seq < 0 or due < state.due:
            self._schedule(group, state, due)
        active = self._holds(state)
        if active is state.active:
            return None
        state.active = active
        return self._observation(group, state, active, clock)

    def _holds(self, state: _RatioState) -> bool:
        if state.total < self.min_events:
            return False
        ratio = state.numerator / state.total
        return (self.below is not None and ratio < self.below) or (
            self.above is not None and ratio > self.above
        )

    def _observation(
        self, group: Group, state: _RatioState, active: bool, clock: int
    ) -> Observation:
        ratio = state.numerator / state.total if state.total else None
        below = self.below is not None and ratio is not None and ratio < self.below
        threshold = self.below if below or self.above is None else self.above
        cutoff = clock - self.window_ms
        samples = state.misses if below else state.hits
        return Observation(
            group,
            active,
            clock,
            value=ratio,
            threshold=threshold,
            window_start_ms=cutoff,
            window_end_ms=clock,
            event_ids=tuple(i for t, i in samples if t > cutoff) if active else (),
            count=state.total,
        )

    def _params(self) -> list[Any]:
        return ["ratio", self.window_ms, self.below, self.above, self.min_events, self.bucket_ms]

    def _dump(self, state: _RatioState) -> Any:
        return [
            state.active,
            state.latest,
            list(state.buckets),
            list(state.hits),
            list(state.misses),
        ]

    def _load(self, payload: Any) -> _RatioState:
        active, latest, buckets, hits, misses = payload
        state = _RatioState()
        state.active, state.latest = active, latest
        state.buckets.extend(buckets)
        state.numerator = sum(bucket[1] for bucket in buckets)
        state.total = sum(bucket[2] for bucket in buckets)
        state.hits.extend((t, i) for t, i in hits)
        state.misses.extend((t, i) for t, i in misses)
        return state
