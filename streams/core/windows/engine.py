"""The event-time window engine: pure state, no Kafka, no clock of its own.

Per input partition (an opaque name such as "ioc.city.validated:3") the engine keeps
a watermark, the open windows' accumulators and a deadline index:

- watermark = the event-time frontier of the sources feeding the partition, from
  the progress records ingest sends (`observe_progress`, streams.core.progress), −
  allowed lateness: one source's head start or another's backlog does not make
  the others' events late;
- a partition that has had no progress record (only a foreign producer writes to
  it) keeps the older rule: highest event time seen on it − allowed lateness, and
  after `idle_timeout_ms` of wall-clock silence `advance` moves it on with the wall
  clock;
- a window [start, end) closes when the watermark reaches end + grace: its final
  `WindowResult` is returned once and its state evicted;
- an event whose windows have all closed is returned as a `LateEvent` and changes
  nothing.

Hopping windows are kept as panes of one step each (Li et al., "No pane, no gain",
2005): an event updates one pane whatever size/step is, and a window's result merges
its size/step panes when it is reported. Tumbling windows are one pane each.

Deadlines are a heap of distinct close times, each with the windows that close then
(registered when a window's first pane is created), so the per-event path never scans
open windows, and a watermark step costs only the windows it closes.

State for the changelog is one entry per pane (`take_dirty`), keyed
`<aggregate>#<fingerprint>.<layout version>|<group values as JSON>|<pane start>`, plus
`@watermark` ([watermark, wall clock of the last event, watermark then, the
sources' frontiers]). The
fingerprint changes with the aggregate's definition; state of a definition that no
longer exists is tombstoned after `restore`. Changes pile up until `take_dirty` takes
them, so a stage must call it at every checkpoint.

Event times outside what a window bound can be written as (a few days inside years 1
to 9999, so that every window's start and end is an RFC 3339 time) raise
EventTimeError, as an unreadable time does: the stage dead-letters the record.

An event without a group_by field joins the group "unknown" of that field, unless its
aggregate says `missing_group: reject`: then `process` raises GroupFieldMissing before
the event changes any aggregate, so that the dead letter is the whole story.

Accumulators live in dicts, or with `store=` in RocksDB behind a RAM cache
(streams.core.windows.store): the same keys and payloads as the changelog, written back at
each `take_dirty`; the deadline index and watermarks stay in RAM either way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from models.aggregates import Aggregate
from models.errors import EventTimeError, GroupFieldMissing
from models.families import DISCRIMINATORS, TIME_FIELDS
from models.results import WindowResult
from streams.core.progress import NEVER, Frontier, Progress
from streams.core.sizing import kept
from streams.core.windows.plan import MISSING, TIME_RANGE_MS, Plan, event_time_ms
from streams.core.windows.statistics import MAX_DISTINCT_EXACT
from streams.core.windows.store import PaneKey, PaneStore, RocksPartition, RocksStores

__all__ = ["WATERMARK_KEY", "LateEvent", "Output", "WindowEngine"]

#: The state key of a partition's watermark and activity clock.
WATERMARK_KEY: Final = "@watermark"
_NEVER: Final = -(1 << 62)  # the watermark of a partition that has seen no event
_DAY_MS: Final = 86_400_000

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LateEvent:
    """An event all of whose windows had closed for its partition: dead-letter it
    with error `late`. `window_start` is the latest window it would have joined."""

    aggregate: str
    group: dict[str, Any]
    window_start: int
    event_time: int


Output = WindowResult | LateEvent


# A plan's attributes as one tuple: unpacking it is cheaper than reading each attribute.
_Fast = tuple[Plan, Any, Any, int, int, int, int, Any, Any, bool]


def _fast(plan: Plan) -> _Fast:
    return (
        plan, plan.match, plan.key, plan.offset, plan.step, plan.close_after, plan.index,
        plan.new, plan.update, bool(plan.running_every),
    )  # fmt: skip


class _Family:
    """The aggregates of one family, dispatched on `type`/`kind` when they pin it."""

    __slots__ = ("always", "by_value", "field", "strict", "time_field")

    def __init__(self, family: str, plans: list[Plan]) -> None:
        self.time_field = TIME_FIELDS[family]
        self.field = DISCRIMINATORS.get(family)
        #: Whether some plan dead-letters events without a group field.
        self.strict = any(plan.rejects_missing for plan in plans)
        self.always = [_fast(plan) for plan in plans if plan.dispatch is None]
        values = {value for plan in plans if plan.dispatch for value in plan.dispatch}
        # Declaration order within each list, so results come out in a stable order.
        self.by_value = {
            value: [_fast(p) for p in plans if p.dispatch is None or value in p.dispatch]
            for value in values
        }

    def plans(self, event: Event) -> list[_Fast]:
        if self.field is None or not self.by_value:
            return self.always
        return self.by_value.get(event.get(self.field), self.always)


class _Codec:
    """An aggregate's panes as RocksDB entries: its changelog keys and payloads."""

    __slots__ = ("plan", "prefix")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.prefix = plan.state_prefix.encode()

    def key(self, pk: PaneKey, /) -> bytes:
        return WindowEngine._state_key(self.plan, pk).encode()

    def pane(self, key: bytes, /) -> PaneKey:
        group, _, start = key[len(self.prefix) :].decode().rpartition("|")
        return self.plan.key_from_values(orjson.loads(group)), int(start)

    def load(self, payload: bytes, /) -> list[Any]:
        return self.plan.layout.load(orjson.loads(payload))


class _Partition:
    __slots__ = (
        "active_ms",
        "buckets",
        "deadlines",
        "dirty",
        "meta_dirty",
        "newest",
        "panes",
        "progress",
        "running",
        "spill",
        "stale",
        "watermark",
        "watermark_active",
    )

    def __init__(self, plans: int) -> None:
        self.watermark = _NEVER
        self.active_ms: int | None = None  # wall clock of the last event processed
        self.watermark_active = _NEVER  # the watermark just after that event
        # Plain dicts unless the engine has a store: then views of `spill`.
        self.panes: list[PaneStore] = [{} for _ in range(plans)]
        self.spill: RocksPartition | None = None
        self.dirty: list[set[PaneKey]] = [set() for _ in range(plans)]
        self.running: list[set[PaneKey]] = [set() for _ in range(plans)]
        # close time → per plan index, the group keys of the windows that close then.
        # A window's start is its close time − the plan's close_after: a key alone is
        # ~90 bytes less per open window than a (key, start) tuple, in both stores.
        self.buckets: dict[int, dict[int, list[Any]]] = {}
        self.deadlines: list[int] = []  # heap of the buckets' close times
        self.meta_dirty = False
        self.stale: list[str] = []  # restored keys that no aggregate owns: to tombstone
        self.progress = Progress()  # the sources feeding the partition, once heard of
        self.newest = _NEVER  # newest event time seen, for when progress says nothing


class WindowEngine:
    """Windows of many input partitions for a set of aggregates.

    Not thread-safe; one engine per stage task. All times are int epoch milliseconds.
    `store`: None keeps accumulators in dicts; `RocksStores` spills them to RocksDB
    (streams.core.windows.store), and `close` deletes the engine's databases.
    `max_distinct_exact`: distinct values counted exactly per pane before a sketch
    takes over (streams.core.windows.statistics).
    """

    def __init__(
        self,
        aggregates: Sequence[Aggregate],
        *,
        allowed_lateness_ms: int = 0,
        idle_timeout_ms: int = 30_000,
        store: RocksStores | None = None,
        max_distinct_exact: int = MAX_DISTINCT_EXACT,
    ) -> None:
        if allowed_lateness_ms < 0 or idle_timeout_ms <= 0:
            raise ValueError("allowed_lateness_ms must be >= 0 and idle_timeout_ms > 0")
        names = [aggregate.name for aggregate in aggregates]
        if len(set(names)) != len(names):
            raise ValueError("aggregate names must be unique")
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_timeout_ms = idle_timeout_ms
        self._plans = [
            Plan(index, aggregate, max_distinct_exact=max_distinct_exact)
            for index, aggregate in enumerate(aggregates)
        ]
        # Every window of an event inside this range starts and ends inside the range
        # of a datetime (a day to spare for offsets), so its bounds can be written.
        margin = max((plan.size for plan in self._plans), default=0) + _DAY_MS
        self._earliest_ms = TIME_RANGE_MS[0] + margin
        self._latest_ms = TIME_RANGE_MS[1] - margin
        self._store = store
        self._codecs = [_Codec(plan) for plan in self._plans]
        self._by_prefix = {plan.state_prefix: plan for plan in self._plans}
        families = dict.fromkeys(plan.family for plan in self._plans)
        self._families = [
            _Family(family, [p for p in self._plans if p.family == family]) for family in families
        ]
        self._running = [plan for plan in self._plans if plan.running_every]
        self._next_running: dict[int, int] = {}
        self._partitions: dict[str, _Partition] = {}
        #: Late events per aggregate since the engine started (each event counted once
        #: per aggregate it was late for).
        self.late_events: dict[str, int] = dict.fromkeys(names, 0)

    # -- the per-event path ------------------------------------------------------------

    def process(self, partition: str, event: Event, now_ms: int) -> list[Output]:
        """Apply one validated event; return the finals it closes and its LateEvents.

        An event late for several aggregates (or exploded groups) gives one LateEvent
        each: dead-letter the record once. `now_ms` is the wall clock, used only to tell
        when the partition goes idle. Raises EventTimeError when the event carries no
        readable event time, or one too close to year 1 or 9999 for its windows'
        bounds; GroupFieldMissing when it lacks a group field of an aggregate with
        `missing_group: reject` (dead-letter either as `schema`; the event changed
        nothing).
        """
        for family in self._families:
            raw = event.get(family.time_field)
            if raw is not None:
                break
        else:
            if not self._families:
                return []
            fields = " or ".join(f.time_field for f in self._families)
            raise EventTimeError(f"event has no event time ({fields})")
        t = event_time_ms(raw)
        if not self._earliest_ms <= t <= self._latest_ms:
            raise EventTimeError(
                f"{family.time_field}: {str(raw)[:40]!r} is outside the times windows can"
                " represent (a few days inside years 1 to 9999)"
            )
        if family.strict:
            self._check_groups(family, event)
        p = self._partitions.get(partition)
        if p is None:
            p = self._partitions[partition] = self._new_partition(partition)
        watermark = p.watermark
        out: list[Output] = []
        panes_of, dirty_of = p.panes, p.dirty
        for (
            plan,
            match,
            key_of,
            offset,
            step,
            close_after,
            index,
            new,
            update,
            running,
        ) in family.plans(event):
            if match is not None and not match(event):
                continue
            key = key_of(event)
            if key is MISSING:
                continue
            pane = t - (t - offset) % step
            if pane + close_after <= watermark:
                self._late(plan, key, pane, t, out)
                continue
            if type(key) is list:
                for one in key:
                    self._add(p, plan, (one, pane), event, t)
                continue
            # What _add does, inlined: this is the hot path.
            pk = (key, pane)
            panes = panes_of[index]
            acc = panes.get(pk)
            if acc is None:
                acc = panes[pk] = new()
                self._register(p, plan, key, pane)
            update(acc, event, t)
            dirty_of[index].add(pk)
            if running:
                p.running[index].add(pk)
        p.active_ms = now_ms
        p.meta_dirty = True
        if t > p.newest:
            p.newest = t
        if p.progress.informative:
            return out  # time moves with the sources' progress (observe_progress)
        target = t - self.allowed_lateness_ms
        if target > watermark:
            if p.deadlines and p.deadlines[0] <= target:
                self._close(p, target, out)
            else:
                p.watermark = target
        p.watermark_active = p.watermark
        return out

    @staticmethod
    def _check_groups(family: _Family, event: Event) -> None:
        """Raise GroupFieldMissing if an aggregate with `missing_group: reject` that the
        event matches lacks one of its group fields; before any state changes."""
        for plan, match, *_ in family.plans(event):
            if not plan.rejects_missing or (match is not None and not match(event)):
                continue
            path = plan.missing_field(event)
            if path is not None:
                raise GroupFieldMissing(
                    f"{path}: missing; aggregate {plan.name} groups by it (missing_group: reject)"
                )

    def skipped_values(self) -> dict[str, int]:
        """Per aggregate, values left out so far because they would have made a sum
        non-finite (streams.core.windows.statistics)."""
        return {plan.name: plan.layout.skipped for plan in self._plans}

    def observe_progress(self, partition: str, frontiers: list[Frontier]) -> list[WindowResult]:
        """A progress record read on the partition: the finals its sources' frontier
        closes."""
        p = self._partitions.get(partition)
        if p is None:
            p = self._partitions[partition] = self._new_partition(partition)
        if not p.progress.observe(frontiers):
            return []
        p.meta_dirty = True
        return self._follow_progress(p)

    def _follow_progress(self, p: _Partition) -> list[WindowResult]:
        frontier = p.progress.frontier()
        if not p.progress.informative or frontier is None:
            # The sources went quiet without ever showing an event: what the partition
            # holds came from a foreign producer, and moves time as it did before.
            frontier = p.newest
        if frontier == NEVER:
            return []
        target = frontier - self.allowed_lateness_ms
        out: list[Output] = []
        if target > p.watermark:
            self._close(p, target, out)
            p.watermark_active = p.watermark
        return out  # type: ignore[return-value]  # _close adds only WindowResults

    def progress(self, partition: str) -> Progress | None:
        """The partition's sources, once a progress record was read on it."""
        p = self._partitions.get(partition)
        return p.progress if p is not None and p.progress.informative else None

    def wakes(self, partition: str, frontiers: list[Frontier]) -> bool:
        """Whether a progress record (not yet observed) wakes a source of the partition
        (streams.core.progress.Progress.wakes)."""
        p = self._partitions.get(partition)
        return Progress().wakes(frontiers) if p is None else p.progress.wakes(frontiers)

    def heard(self, partition: str) -> bool:
        """Whether a progress record was read on the partition, informative or not."""
        p = self._partitions.get(partition)
        return p is not None and bool(p.progress.sources)

    def aggregate_frontiers(self, partition: str) -> list[tuple[str, int]]:
        """(aggregate, frontier) for what comes after on `ioc.aggregates`: every final
        the partition reports from now on is of a window ending after the frontier
        (its watermark − the aggregate's grace: a window closes once the watermark
        passes its end + grace). NEVER for each before the partition has a watermark."""
        p = self._partitions.get(partition)
        if p is None or p.watermark == _NEVER:
            return [(plan.name, NEVER) for plan in self._plans]
        return [(plan.name, p.watermark - plan.close_after + plan.size) for plan in self._plans]

    def _new_partition(self, partition: str) -> _Partition:
        p = _Partition(len(self._plans))
        if self._store is not None:
            spill = p.spill = self._store.open(partition, p.dirty)
            p.panes = [spill.panes(index, codec) for index, codec in enumerate(self._codecs)]
        return p

    def _add(self, p: _Partition, plan: Plan, pk: PaneKey, event: Event, t: int) -> None:
        index = plan.index
        acc = p.panes[index].get(pk)
        if acc is None:
            acc = p.panes[index][pk] = plan.new()
            self._register(p, plan, pk[0], pk[1])
        plan.update(acc, event, t)
        p.dirty[index].add(pk)
        if plan.running_every:
            p.running[index].add(pk)

    def _late(self, plan: Plan, key: Any, pane: int, t: int, out: list[Output]) -> None:
        self.late_events[plan.name] += 1
        for one in key if type(key) is list else (key,):
            out.append(LateEvent(plan.name, plan.labels(one), pane, t))

    def _register(self, p: _Partition, plan: Plan, key: Any, pane: int) -> None:
        """A new pane: index the open windows it belongs to by their close time."""
        if plan.hopping:
            first = max(pane - plan.size + plan.step, plan.first_open(p.watermark))
            starts = range(first, pane + 1, plan.step)
        else:
            starts = range(pane, pane + 1)
        for start in starts:
            deadline = start + plan.close_after
            bucket = p.buckets.get(deadline)
            if bucket is None:
                bucket = p.buckets[deadline] = {}
                heapq.heappush(p.deadlines, deadline)
            keys = bucket.get(plan.index)
            if keys is None:
                bucket[plan.index] = [key]
            else:
                keys.append(key)

    # -- closing -----------------------------------------------------------------------

    def _close(self, p: _Partition, watermark: int, out: list[Output]) -> None:
        """Move the watermark forward and report every window it closes."""
        p.watermark = watermark
        deadlines = p.deadlines
        while deadlines and deadlines[0] <= watermark:
            deadline = heapq.heappop(deadlines)
            bucket = p.buckets.pop(deadline)
            for index, keys in bucket.items():
                plan = self._plans[index]
                panes = p.panes[index]
                dirty = p.dirty[index]
                running = p.running[index]
                start = deadline - plan.close_after
                if not plan.hopping:
                    for key in keys:
                        pk = (key, start)
                        acc = panes.pop(pk, None)
                        if acc is not None:
                            dirty.add(pk)
                            running.discard(pk)
                            out.append(self._result(plan, key, start, acc, True))
                    continue
                for key in dict.fromkeys(keys):  # a window once per pane
                    acc = self._window(plan, panes, key, start)
                    if acc is not None:
                        out.append(self._result(plan, key, start, acc, True))
                    # The window starting at a pane is that pane's last one.
                    if panes.pop((key, start), None) is not None:
                        dirty.add((key, start))
                        running.discard((key, start))

    def _window(self, plan: Plan, panes: PaneStore, key: Any, start: int) -> list[Any] | None:
        """A hopping window's accumulator, merged from its panes (None: no data)."""
        parts = [
            acc
            for pane in range(start, start + plan.size, plan.step)
            if (acc := panes.get((key, pane))) is not None
        ]
        return plan.layout.merge(parts) if parts else None

    def _result(
        self, plan: Plan, key: Any, start: int, acc: list[Any], final: bool
    ) -> WindowResult:
        return WindowResult(
            aggregate=plan.name,
            family=plan.family,
            group=plan.labels(key),
            window_start=start,
            window_end=start + plan.size,
            statistics=plan.layout.report(acc),
            count=acc[0],
            final=final,
            approximate=plan.layout.estimated(acc),
        )

    # -- the wall clock ------------------------------------------------------------------

    def keep_alive(self, partition: str, now_ms: int) -> None:
        """The partition is not idle at `now_ms` although no event was processed: it has
        records waiting (a backlog after a restart), or was just assigned. Idleness is
        for silent sources, not for a consumer catching up."""
        p = self._partitions.get(partition)
        if p is None:
            return
        p.active_ms = now_ms
        p.watermark_active = p.watermark

    def advance(self, now_ms: int) -> list[WindowResult]:
        """Called about every second with the wall clock: closes the windows of idle
        partitions, then emits the running updates that are due."""
        return [r for results in self.advance_partitions(now_ms).values() for r in results]

    def advance_partitions(self, now_ms: int) -> dict[str, list[WindowResult]]:
        """`advance`, with the results of each partition apart (only partitions that have
        some): what is derived from finals is kept per input partition too."""
        out: dict[str, list[Output]] = {}
        idle_after = self.idle_timeout_ms
        for name, p in self._partitions.items():
            if p.active_ms is None or p.progress.informative:
                continue  # idleness of sources comes with their progress
            idle = now_ms - p.active_ms - idle_after
            if idle > 0 and p.watermark_active + idle > p.watermark:
                # The watermark runs on with the wall clock from where the last event
                # left it, so a silent sensor's windows still close.
                p.meta_dirty = True
                self._close(p, p.watermark_active + idle, out.setdefault(name, []))
        for plan in self._running:
            due = self._next_running.get(plan.index, now_ms)
            if now_ms < due:
                continue
            assert plan.running_every is not None
            self._next_running[plan.index] = now_ms + plan.running_every
            for name, p in self._partitions.items():
                self._running_updates(p, plan, out.setdefault(name, []))
        # _close only adds WindowResults here, never LateEvents.
        return {name: results for name, results in out.items() if results}  # type: ignore[misc]

    def _running_updates(self, p: _Partition, plan: Plan, out: list[Output]) -> None:
        changed = p.running[plan.index]
        if not changed:
            return
        panes = p.panes[plan.index]
        if not plan.hopping:
            for pk in changed:
                acc = panes.get(pk)
                if acc is not None:
                    out.append(self._result(plan, pk[0], pk[1], acc, False))
        else:
            first_open = plan.first_open(p.watermark)
            windows: dict[PaneKey, None] = {}
            for key, pane in changed:
                for start in range(
                    max(pane - plan.size + plan.step, first_open), pane + 1, plan.step
                ):
                    windows[key, start] = None
            for key, start in windows:
                acc = self._window(plan, panes, key, start)
                if acc is not None:
                    out.append(self._result(plan, key, start, acc, False))
        changed.clear()

    # -- state for the changelog ---------------------------------------------------------

    def take_dirty(self, partition: str) -> list[tuple[str, bytes | None]]:
        """(state key, JSON payload or None for evicted) of every pane changed since the
        last call, then the partition's watermark entry; clears the changes."""
        p = self._partitions.get(partition)
        if p is None:
            return []
        out: list[tuple[str, bytes | None]] = [(key, None) for key in p.stale]
        p.stale.clear()
        spill = p.spill
        for plan in self._plans:
            dirty = p.dirty[plan.index]
            if not dirty:
                continue
            panes = p.panes[plan.index]
            for pk in dirty:
                acc = panes.get(pk)  # dirty ones are cached: no disk read
                payload = None if acc is None else kept(orjson.dumps(plan.layout.dump(acc)))
                state_key = self._state_key(plan, pk)
                out.append((state_key, payload))
                if spill is not None:
                    spill.write(plan.index, pk, state_key.encode(), payload)
            dirty.clear()
        if spill is not None:
            spill.commit()  # after the dirty sets are cleared: they pin the cache
        if p.meta_dirty or out:
            meta = [p.watermark, p.active_ms, p.watermark_active, p.progress.dump()]
            out.append((WATERMARK_KEY, orjson.dumps(meta)))
            p.meta_dirty = False
        return out

    @staticmethod
    def _state_key(plan: Plan, pk: PaneKey) -> str:
        group = orjson.dumps(plan.key_values(pk[0])).decode()
        return f"{plan.state_prefix}{group}|{pk[1]}"

    def restore(self, partition: str, items: Iterable[tuple[str, bytes | None]]) -> None:
        """Rebuild a partition from changelog items (the last value per key wins; None
        deletes), replacing whatever the engine held for it."""
        latest: dict[str, bytes | None] = {}
        for key, payload in items:
            latest[key] = payload
        p = self._new_partition(partition)
        spill = p.spill
        meta = latest.pop(WATERMARK_KEY, None)
        if meta is not None:
            p.watermark, p.active_ms, p.watermark_active, *sources = orjson.loads(meta)
            if sources:  # written before sources were kept: none
                p.progress.load(sources[0])
        for state_key, payload in latest.items():
            if payload is None:
                continue
            prefix, _, rest = state_key.partition("|")
            plan = self._by_prefix.get(prefix + "|")
            group, _, start = rest.rpartition("|")
            if plan is None or not group:
                p.stale.append(state_key)  # an aggregate since removed or redefined
                continue
            key = plan.key_from_values(orjson.loads(group))
            pane = int(start)
            if pane + plan.close_after <= p.watermark:
                p.stale.append(state_key)  # all its windows closed: nothing to report
                continue
            if spill is None:
                p.panes[plan.index][key, pane] = plan.layout.load(orjson.loads(payload))
            else:
                spill.restore(plan.index, state_key.encode(), payload)
            self._register(p, plan, key, pane)
        if spill is not None:
            spill.commit()
        self.drop(partition)
        self._partitions[partition] = p

    def drop(self, partition: str) -> None:
        """Forget a partition (revoked in a rebalance); its changelog state stays, its
        local spill, if any, is deleted."""
        p = self._partitions.pop(partition, None)
        if p is not None and p.spill is not None:
            p.spill.close()

    def close(self) -> None:
        """Forget every partition and delete their local spills (the stage stops). The
        store itself may serve other engines: its owner closes it."""
        for partition in list(self._partitions):
            self.drop(partition)

    # -- introspection -------------------------------------------------------------------

    def open_windows(self, partition: str | None = None) -> int:
        """Open windows holding data: (aggregate, group, start) triples not yet final."""
        if partition is None:
            partitions = list(self._partitions.values())
        else:
            found = self._partitions.get(partition)
            partitions = [found] if found is not None else []
        total = 0
        for p in partitions:
            for plan in self._plans:
                panes = p.panes[plan.index]
                if not plan.hopping:
                    total += len(panes)
                    continue
                first_open = plan.first_open(p.watermark)
                total += len(
                    {
                        (key, start)
                        for key, pane in panes
                        for start in range(
                            max(pane - plan.size + plan.step, first_open), pane + 1, plan.step
                        )
                    }
                )
        return total

    def state_entries(self, partition: str | None = None) -> int:
        """Accumulators held (panes: one per tumbling window, one per step of hopping
        ones), i.e. the changelog entries besides the watermark."""
        partitions = (
            list(self._partitions.values())
            if partition is None
            else [p for name, p in self._partitions.items() if name == partition]
        )
        return sum(len(panes) for p in partitions for panes in p.panes)

    def cached_entries(self, partition: str | None = None) -> int:
        """Accumulators held in RAM: `state_entries` without a store; with one, those in
        its caches (at most the cache size plus the panes changed since the last
        checkpoint, per partition)."""
        partitions = (
            list(self._partitions.values())
            if partition is None
            else [p for name, p in self._partitions.items() if name == partition]
        )
        return sum(
            sum(len(panes) for panes in p.panes) if p.spill is None else p.spill.cached
            for p in partitions
        )

    def watermark(self, partition: str) -> int | None:
        """The partition's watermark (epoch ms), None before its first event."""
        p = self._partitions.get(partition)
        return None if p is None or p.watermark == _NEVER else p.watermark

    @property
    def partitions(self) -> list[str]:
        return list(self._partitions)
