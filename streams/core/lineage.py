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

The rule router passes it on, extended: a rule input's lineage names the path
`<family>/<source partition>><validated partition>` (along one path the positions
only grow, as the router reads a validated partition in order) and adds the input's
place among the event's rule inputs, so the rule stage drops what ingest or the
router produced again.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["HEADER", "Lineage", "header", "read"]

HEADER: Final = "ioc-lineage"


def header(source: int | str, offset: int, *elements: int) -> list[tuple[str, bytes]]:
    """The headers of a record produced from a source record: `source` names where it
    was read (a source partition at ingest; a path such as `city/3>5` further on),
    then its offset there and its place among what that record gave."""
    return [(HEADER, ":".join([str(source), str(offset), *map(str, elements)]).encode())]


Mark = tuple[str, tuple[int, ...]]  # (source, position)


def read(headers: Any) -> Mark | None:
    """(source, position) from a record's headers; None without (a foreign producer)
    or when unreadable."""
    for name, value in headers or ():
        if name == HEADER:
            try:
                source, *numbers = value.decode().split(":")
                position = tuple(int(n) for n in numbers)
            except (ValueError, AttributeError, UnicodeDecodeError):
                return None
            return (source, position) if position else None
    return None


class Lineage:
    """Per source, the highest position applied on one partition."""

    __slots__ = ("applied", "dirty")

    def __init__(self) -> None:
        self.applied: dict[str, tuple[int, ...]] = {}
        self.dirty = False

    def fresh(self, mark: Mark) -> bool:
        """Whether the record is new (then it counts as applied); False for a replay."""
        source, position = mark
        known = self.applied.get(source)
        if known is not None and position <= known:
            return False
        self.applied[source] = position
        self.dirty = True
        return True

    def dump(self) -> bytes:
        self.dirty = False
        return orjson.dumps([[s, list(p)] for s, p in sorted(self.applied.items())])

    def load(self, payload: bytes) -> None:
        self.applied = {s: tuple(p) for s, p in orjson.loads(payload)}
        self.dirty = False
