"""The ingest core: raw message bytes in, validated events and rejections out.

Pure functions and a small bounded memory of event ids; the agents in
`streams.worker.stages.ingest` only do the I/O around them, so all of this is tested
without Kafka or Faust.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from models import FAMILIES, InvalidEvent, validation_context
from models.deadletter import DeadLetter

__all__ = [
    "Accepted",
    "IngestLimits",
    "IngestResult",
    "RecentIds",
    "Rejected",
    "dead_letter",
    "process_message",
]


class IngestLimits(Protocol):
    """What ingest needs of the settings (`IOC_INGEST__*`), without depending on them."""

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def max_future_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    key: bytes | None
    value: bytes  # the normalised event as JSON
    event_id: str | None
    event_ms: int  # its event time, epoch ms


@dataclass(frozen=True, slots=True)
class Rejected:
    element: int | None  # index in an array message; None for the whole message
    raw: bytes
    error: str
    reason: str
    field: str | None = None


@dataclass(slots=True)
class IngestResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _accept(family: str, obj: Any, context: dict[str, Any]) -> Accepted:
    spec = FAMILIES[family]
    event = spec.parse(obj, context)
    key = spec.entity_key(event)
    return Accepted(
        key=key.encode() if key is not None else None,
        value=event.model_dump_json(by_alias=True, exclude_none=True).encode(),
        event_id=spec.event_id(event),
        event_ms=int(event.event_time.timestamp() * 1000),
    )


def process_message(
    family: str, raw: bytes | None, settings: IngestLimits, now: datetime
) -> IngestResult:
    """Validate one Kafka message: one event, or a JSON array validated element by element."""
    result = IngestResult()
    if raw is None:
        # A tombstone (null value) carries no event; it is rejected, not a crash.
        result.rejected.append(Rejected(None, b"", "json", "message has no value (a tombstone)"))
        return result
    if len(raw) > settings.max_message_bytes:
        result.rejected.append(
            Rejected(
                None,
                raw,
                "too_large",
                f"message is {len(raw)} bytes; the limit is {settings.max_message_bytes}",
            )
        )
        return result
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        result.rejected.append(Rejected(None, raw, "json", f"not valid JSON: {exc}"))
        return result

    context = validation_context(now, settings.max_future_s)
    if isinstance(decoded, list):
        for index, element in enumerate(decoded):
            try:
                result.accepted.append(_accept(family, element, context))
            except InvalidEvent as exc:
                result.rejected.append(
                    Rejected(
                        index,
                        orjson.dumps(element),
                        exc.error,
                        f"[{index}] {exc.reason}",
                        exc.field,
                    )
                )
    else:
        try:
            result.accepted.append(_accept(family, decoded, context))
        except InvalidEvent as exc:
            result.rejected.append(Rejected(None, raw, exc.error, exc.reason, exc.field))
    return result


def dead_letter(
    rejected: Rejected,
    *,
    stage: str,
    family: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    now: datetime,
) -> bytes:
    """The `ioc.deadletter` record for one rejection, as JSON bytes: `stage` is the stage
    that rejected it, `family` what it was (models.deadletter)."""
    record = DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "backslashreplace") if key is not None else None,
        element=rejected.element,
        raw=DeadLetter.encode(rejected.raw),
        error=rejected.error,
        reason=rejected.reason,
        field=rejected.field,
        family=family,
        stage=stage,
        rejected_at=now,
    )
    return record.model_dump_json().encode()


class RecentIds:
    """Event ids seen within a horizon, bounded in count: drops exact duplicates.

    Remembered per worker process (not across restarts or workers): duplicates that
    survive it are harmless downstream, whose outputs have deterministic identities.
    """

    def __init__(self, horizon_s: float, max_ids: int) -> None:
        self._horizon = horizon_s
        self._max = max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, event_id: str, now: float) -> bool:
        """True if the id was seen within the horizon; remembers it either way."""
        seen = self._seen
        oldest_allowed = now - self._horizon
        while seen and (len(seen) >= self._max or next(iter(seen.values())) < oldest_allowed):
            seen.popitem(last=False)
        if event_id in seen:
            return True
        if self._max:
            seen[event_id] = now
        return False
