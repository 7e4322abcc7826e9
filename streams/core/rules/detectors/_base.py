"""What every windowed detector shares: per-group state and a deadline heap.

A detector's clock for a group is the later of the group's latest event time and the
watermark given to `advance`, so a window (clock − window, clock] only ever slides
forward and an out-of-order event joins it only if it still falls inside it.

Deadlines: each group has at most one live heap entry, the earliest event time at
which its state can change (its condition turns, or its window empties and it is
forgotten). Entries are never removed: a newer entry supersedes an older one by its
sequence number, and a popped entry is re-judged then, so `advance` costs only the
groups whose deadline passed, and the per-event path pushes only when a deadline
moves earlier (rarely: deadlines grow as events arrive in order).

The changelog takes a detector group by group (`group_state`, `load_group`), plus a
small rule-wide part (`rule_state`): one rule with 20,000 groups is 20,000 small
records, never one document past the broker's record limit. `advance` notes the
groups it changed (`take_touched`); those an input changed, the caller knows.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any, Final, Generic, TypeVar

import orjson

from streams.core.rules.lifecycle import Observation

__all__ = ["NEVER", "SAMPLES", "Group", "GroupState", "Scheduled", "freeze"]

Group = tuple[Any, ...]
#: The clock of a detector that has seen no watermark yet.
NEVER: Final = -(1 << 62)
#: How many event ids an Observation carries as evidence.
SAMPLES: Final = 10
_UNSCHEDULED: Final = -1


def freeze(value: Any) -> Any:
    """JSON lists back into the tuples they were (group keys must be hashable)."""
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


class GroupState:
    """A group's place in the deadline heap: `seq` names its live entry (or −1)."""

    __slots__ = ("due", "seq")

    def __init__(self) -> None:
        self.due = 0
        self.seq = _UNSCHEDULED


S = TypeVar("S", bound=GroupState)


class Scheduled(Generic[S]):
    """Groups with deadlines; subclasses judge a group in `_expire` and persist it
    with `_dump`/`_load` (JSON-able payloads) and `_params` (their definition)."""

    __slots__ = ("_groups", "_heap", "_next_seq", "_touched", "_watermark")

    def __init__(self) -> None:
        self._groups: dict[Group, S] = {}
        self._heap: list[tuple[int, int, Group]] = []
        self._next_seq = 0
        self._watermark: int = NEVER
        self._touched: set[Group] = set()  # changed by `advance` since `take_touched`

    def __len__(self) -> int:
        """Groups held in memory."""
        return len(self._groups)

    def _schedule(self, group: Group, state: S, due: int) -> None:
        """Make `due` the group's deadline if it is earlier than the one it has."""
        if state.seq != _UNSCHEDULED and state.due <= due:
            return
        seq = self._next_seq
        self._next_seq = seq + 1
        state.due = due
        state.seq = seq
        heapq.heappush(self._heap, (due, seq, group))

    def advance(self, watermark_ms: int) -> list[Observation]:
        """Let event time reach `watermark_ms`: the changes of every group whose
        deadline passed, in deadline order, each stamped with the time it happened."""
        if watermark_ms > self._watermark:
            self._watermark = watermark_ms
        out: list[Observation] = []
        heap, groups = self._heap, self._groups
        while heap and heap[0][0] <= watermark_ms:
            due, seq, group = heapq.heappop(heap)
            state = groups.get(group)
            if state is None or state.seq != seq:
                continue  # superseded, or the group was forgotten
            state.seq = _UNSCHEDULED
            self._touched.add(group)
            observation = self._expire(group, state, due)
            if observation is not None:
                out.append(observation)
        return out

    def _expire(self, group: Group, state: S, due: int) -> Observation | None:
        """Judge `group` at its deadline: reschedule it, or forget it."""
        raise NotImplementedError

    # -- the changelog ----------------------------------------------------------------

    def _params(self) -> list[Any]:
        raise NotImplementedError

    def _dump(self, state: S) -> Any:
        raise NotImplementedError

    def _load(self, payload: Any) -> S:
        raise NotImplementedError

    def groups(self) -> Iterable[Group]:
        """The groups held."""
        return self._groups.keys()

    def take_touched(self) -> set[Group]:
        """The groups `advance` changed (or forgot) since the last call."""
        touched, self._touched = self._touched, set()
        return touched

    def rule_state(self) -> Any:
        """What is not any one group's: the definition and the watermark."""
        return {"params": self._params(), "watermark": self._watermark}

    def load_rule_state(self, doc: Any) -> None:
        """Start a restore: no groups yet. ValueError for another definition's state."""
        if doc["params"] != self._params():
            raise ValueError(
                f"snapshot of {type(self).__name__}{doc['params']}, not {self._params()}"
            )
        self._groups, self._heap, self._next_seq = {}, [], 0
        self._watermark = doc["watermark"]

    def group_state(self, group: Group) -> Any:
        """One group's state as JSON, its deadline included; None if not held."""
        state = self._groups.get(group)
        if state is None:
            return None
        return [state.due, state.seq, self._dump(state)]

    def load_group(self, group: Group, saved: Any) -> None:
        """One group of a restore; call `finish_restore` after the last."""
        due, seq, payload = saved
        state = self._groups[group] = self._load(payload)
        state.due, state.seq = due, seq
        if seq != _UNSCHEDULED:
            self._heap.append((due, seq, group))

    def finish_restore(self) -> None:
        """The deadline heap of the groups loaded, in the order it had (seq breaks ties)."""
        heapq.heapify(self._heap)
        self._next_seq = 1 + max((entry[1] for entry in self._heap), default=-1)

    def snapshot(self) -> bytes:
        """The whole state as JSON, deadlines included (ties keep their order)."""
        groups = [
            [list(group), state.due, state.seq, self._dump(state)]
            for group, state in self._groups.items()
        ]
        return orjson.dumps(
            {"params": self._params(), "watermark": self._watermark, "groups": groups}
        )

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot of a detector of the same definition.

        Raises ValueError for a snapshot of other parameters: drop that state."""
        doc = orjson.loads(data)
        if doc["params"] != self._params():
            raise ValueError(
                f"snapshot of {type(self).__name__}{doc['params']}, not {self._params()}"
            )
        self._groups = {}
        self._heap = []
        for group_values, due, seq, payload in doc["groups"]:
            group = freeze(group_values)
            state = self._groups[group] = self._load(payload)
            state.due, state.seq = due, seq
            if seq != _UNSCHEDULED:
                self._heap.append((due, seq, group))
        heapq.heapify(self._heap)
        self._next_seq = 1 + max((entry[1] for entry in self._heap), default=-1)
        self._watermark = doc["watermark"]
