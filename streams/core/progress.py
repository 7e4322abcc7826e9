"""Event-time progress that crosses stage boundaries: pure, no Kafka, no clock of its own.

A partition that merges records from many upstreams (every repartition does: ingest
re-keys by entity, the router by rule and group) cannot take its event time from
the newest record it has read: one upstream's backlog or one partition's head start
would make every other upstream's events late. So progress travels with the data,
as in Flink's watermarks:

- `SourceClock` (at ingest, one per source partition): its *frontier* is the newest
  event time read from it, never ahead of the wall clock. After `idle_timeout_ms`
  without input while caught up, it is idle, and its frontier runs on with the wall
  clock from where it stopped (Flink's `withIdleness`).
- Every stage sends the frontiers of what it read, as a progress record
  (`encode`/`decode`), to every partition of its output topics, after the records
  they cover: Kafka keeps one producer's records of a partition in order, so a
  partition reads a source's records before the progress that covers them.
- `Progress` (one per input partition downstream) keeps the latest frontier of each
  source that feeds it; its frontier for a (kind, feed) is the minimum over the
  sources of that kind and feed that are not idle, or, when all of them are idle,
  the maximum (time then moves on with the wall clock, as the idle sources' do).
  A consumer's watermark is that frontier minus its allowed lateness.

A source is named `<topic>:<partition>` of what the sender read; `kind` is `events`
(from the families' topics; `feed` is the family) or `aggregates` (window finals,
which close later than the events they count; `feed` is the aggregate). The sources
a partition keeps are bounded by the partitions (× aggregates) of the topics upstream
of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "HEADER",
    "HEADERS",
    "HEARTBEAT_S",
    "NEVER",
    "Frontier",
    "Heartbeat",
    "Progress",
    "SourceClock",
    "decode",
    "encode",
    "is_progress",
]

#: The header that marks a progress record (its value is b"1"); its key is null and
#: its value `{"progress": [[source, kind, feed, frontier_ms, idle], …]}`.
HEADER: Final = "ioc-progress"
HEADERS: Final = [(HEADER, b"1")]
#: Progress is sent at least this often, moved or not, so that a stage that restarted
#: between two moves hears of every source again.
HEARTBEAT_S: Final = 10.0
#: The frontier of a source that has shown no event yet.
NEVER: Final = -(1 << 62)


@dataclass(frozen=True, slots=True)
class Frontier:
    """One source's progress as a progress record carries it."""

    source: str
    kind: str  # "events" or "aggregates"
    feed: str  # the family of events; the aggregate's name for aggregates
    frontier_ms: int
    idle: bool

    def as_list(self) -> list[Any]:
        return [self.source, self.kind, self.feed, self.frontier_ms, self.idle]


def encode(frontiers: list[Frontier]) -> bytes:
    return orjson.dumps({"progress": [f.as_list() for f in frontiers]})


def decode(value: bytes | None) -> list[Frontier]:
    """The frontiers of a progress record; ValueError if it is not one."""
    try:
        doc = orjson.loads(value or b"")
        entries = doc["progress"]
        out = []
        for source, kind, feed, frontier_ms, idle in entries:
            if not (
                type(source) is str and type(kind) is str and type(feed) is str
                and type(frontier_ms) is int and type(idle) is bool
            ):  # fmt: skip
                raise TypeError
            out.append(Frontier(source, kind, feed, frontier_ms, idle))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a progress record: {exc!r}") from None


def is_progress(headers: Any) -> bool:
    """Whether a record's headers (aiokafka: a tuple of (str, bytes)) mark progress."""
    if not headers:
        return False
    return any(name == HEADER for name, _ in headers)


class SourceClock:
    """The frontier of one source partition, kept by the stage that reads it."""

    __slots__ = ("active_ms", "frontier_at_active", "newest_ms", "sent")

    def __init__(self, now_ms: int) -> None:
        self.newest_ms = NEVER  # newest event time read, capped at the wall clock
        self.active_ms = now_ms  # wall clock of the last input, or of being caught up
        self.frontier_at_active = NEVER
        self.sent: tuple[int, bool] | None = None  # what the last progress record said

    def saw(self, event_ms: int, now_ms: int) -> None:
        """An event was read (and its record sent on)."""
        capped = event_ms if event_ms < now_ms else now_ms
        if capped > self.newest_ms:
            self.newest_ms = capped
        self.active_ms = now_ms
        self.frontier_at_active = self.newest_ms

    def busy(self, now_ms: int) -> None:
        """Records are still waiting to be read: catching up is not being idle."""
        self.active_ms = now_ms
        self.frontier_at_active = self.newest_ms

    def idle(self, now_ms: int, idle_timeout_ms: int) -> bool:
        return now_ms - self.active_ms > idle_timeout_ms

    def frontier(self, now_ms: int, idle_timeout_ms: int) -> tuple[int, bool]:
        """(frontier, idle) at `now_ms`."""
        idle_for = now_ms - self.active_ms - idle_timeout_ms
        if idle_for <= 0:
            return self.newest_ms, False
        if self.frontier_at_active == NEVER:
            # Silent since it was assigned: it holds nothing back, and has no time
            # of its own to run on from.
            return NEVER, True
        return min(self.frontier_at_active + idle_for, now_ms), True


class Heartbeat:
    """Due every `HEARTBEAT_S` of the monotonic clock, and at the first call."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0.0

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + HEARTBEAT_S
        return True


class Progress:
    """The sources feeding one input partition and their latest frontiers."""

    __slots__ = ("informative", "sources")

    def __init__(self) -> None:
        self.sources: dict[str, Frontier] = {}
        #: Whether the sources say anything about time: some source is busy, or has
        #: shown an event. Sources all idle since they started have nothing to say, and
        #: whatever a partition holds then came from a foreign producer.
        self.informative = False

    def observe(self, frontiers: list[Frontier]) -> bool:
        """Take a progress record's frontiers; True if any frontier or idleness moved.
        A frontier never goes back (a replayed or reordered record changes nothing)."""
        moved = False
        sources = self.sources
        for f in frontiers:
            known = sources.get(f.source)
            if known is None or f.frontier_ms > known.frontier_ms or f.idle != known.idle:
                if known is not None and f.frontier_ms < known.frontier_ms:
                    f = Frontier(f.source, f.kind, f.feed, known.frontier_ms, f.idle)
                sources[f.source] = f
                moved = True
        if moved:
            self.informative = any(not f.idle or f.frontier_ms != NEVER for f in sources.values())
        return moved

    def wakes(self, frontiers: list[Frontier]) -> bool:
        """Whether these frontiers (not yet observed) bring a source that is busy and was
        idle or unknown: a stage passes that on at once, before the records after it, so
        that what it sends next is held back for the woken source downstream too."""
        sources = self.sources
        for f in frontiers:
            if not f.idle:
                known = sources.get(f.source)
                if known is None or known.idle:
                    return True
        return False

    def frontier(self, kind: str | None = None, feed: str | None = None) -> int | None:
        """The frontier of the matching sources (see the module doc); None when none is
        known, or all are idle without ever having shown an event."""
        busy: int | None = None
        idle: int | None = None
        for f in self.sources.values():
            if not _matches(f, kind, feed):
                continue
            if f.idle:
                if idle is None or f.frontier_ms > idle:
                    idle = f.frontier_ms
            elif busy is None or f.frontier_ms < busy:
                busy = f.frontier_ms
        if busy is not None:
            return busy
        return None if idle == NEVER else idle

    def idle(self, kind: str | None = None, feed: str | None = None) -> bool:
        """Whether every matching source is idle (none known: not idle)."""
        matching = [f for f in self.sources.values() if _matches(f, kind, feed)]
        return bool(matching) and all(f.idle for f in matching)

    def dump(self) -> list[list[Any]]:
        return [f.as_list() for f in self.sources.values()]

    def load(self, entries: list[list[Any]]) -> None:
        self.sources = {entry[0]: Frontier(*entry) for entry in entries}
        self.informative = any(not f.idle or f.frontier_ms != NEVER for f in self.sources.values())


def _matches(f: Frontier, kind: str | None, feed: str | None) -> bool:
    return (kind is None or f.kind == kind) and (feed is None or f.feed == feed)
