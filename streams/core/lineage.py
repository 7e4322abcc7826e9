"""Where a record came from, so that a replay counts once: pure, no Kafka.

Ingest commits its source offsets only after what it produced is durable, so a crash
between the two makes it read those source records again and produce their events a
second time (at least once: no transactions). Each validated event therefore carries
its lineage in a header, `ioc-lineage: <source partition>:<offset>:<element>` (the
source topic is the family's; `element` is the event's place in an array message).
Ingest reads a source partition in order and keys each event to one validated
partition, so on any validated partition the lineage of one source partition only
grows; a stage reading it keeps, per source partition, the highest lineage it has
applied (`Lineage`, checkpointed with its state) and drops what is at or below it.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["HEADER", "Lineage", "header", "read"]

HEADER: Final = "ioc-lineage"


def header(partition: int, offset: int, element: int) -> list[tuple[str, bytes]]:
    """The headers of a record produced from element `element` of a source record."""
    return [(HEADER, b"%d:%d:%d" % (partition, offset, element))]


def read(headers: Any) -> tuple[int, int, int] | None:
    """(source partition, offset, element) from a record's headers; None without (a
    foreign producer) or when unreadable."""
    for name, value in headers or ():
        if name == HEADER:
            try:
                partition, offset, element = value.split(b":")
                return int(partition), int(offset), int(element)
            except (ValueError, AttributeError):
                return None
    return None


class Lineage:
    """Per source partition, the highest (offset, element) applied on one partition."""

    __slots__ = ("applied", "dirty")

    def __init__(self) -> None:
        self.applied: dict[int, tuple[int, int]] = {}
        self.dirty = False

    def fresh(self, mark: tuple[int, int, int]) -> bool:
        """Whether the record is new (then it counts as applied); False for a replay."""
        partition, offset, element = mark
        position = (offset, element)
        known = self.applied.get(partition)
        if known is not None and position <= known:
            return False
        self.applied[partition] = position
        self.dirty = True
        return True

    def dump(self) -> bytes:
        self.dirty = False
        return orjson.dumps([[p, o, e] for p, (o, e) in sorted(self.applied.items())])

    def load(self, payload: bytes) -> None:
        self.applied = {p: (o, e) for p, o, e in orjson.loads(payload)}
        self.dirty = False
