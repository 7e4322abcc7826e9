"""The ingest core: raw message bytes in, validated events and rejections out.

Pure functions and a small bounded memory of event ids; the agents in
`streams.worker.stages.ingest` only do the I/O around them, so all of this is tested
without Kafka or Faust.
"""

from __future__ import annotations

import hashlib
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
    "dead_letter_key",
    "internal_reason",
    "process_message",
]


class IngestLimits(Protocol):
    """What ingest needs of the settings (`IOC_INGEST__*`), without depending on them."""

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def max_future_s(self) -> float: ...

    @property
    def max_past_s(self) -> float: ...

    @property
    def max_elements(self) -> int: ...

    @property
    def max_depth(self) -> int: ...

    @property
    def max_event_bytes(self) -> int: ...


#: What a dead letter keeps of the rejected bytes: enough to see what was sent, far
#: below the record limit (`raw_truncated`, `raw_bytes` and `raw_sha256` say the rest).
RAW_KEPT_BYTES = 16 * 1024
#: What a dead letter keeps of the message key (a key is an id, not a payload).
KEY_KEPT_BYTES = 256
#: Longest reason a dead letter carries.
REASON_CHARS = 2000


def _too_deep(value: Any, limit: int) -> str | None:
    """The path of the first container nested deeper than `limit`, or None.

    Iterative, so that no input can exhaust the stack here; orjson itself parses up
    to 1024 levels, pydantic and orjson.dumps fail far sooner (255)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            return path or "(top level)"
        if type(node) is dict:
            for key, child in node.items():
                if type(child) is dict or type(child) is list:
                    stack.append((child, depth + 1, f"{path}.{key}" if path else key))
        elif type(node) is list:
            for index, child in enumerate(node):
                if type(child) is dict or type(child) is list:
                    stack.append((child, depth + 1, f"{path}.{index}" if path else str(index)))
    return None


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


def _accept(
    family: str, obj: Any, context: dict[str, Any], limits: IngestLimits, may_nest: bool
) -> Accepted:
    if may_nest and (path := _too_deep(obj, limits.max_depth)) is not None:
        raise InvalidEvent(
            f"{path}: nested more than {limits.max_depth} levels deep (IOC_INGEST__MAX_DEPTH)",
            field=None if path == "(top level)" else path,
            error="too_deep",
        )
    spec = FAMILIES[family]
    event = spec.parse(obj, context)
    key = spec.entity_key(event)
    value = event.model_dump_json(by_alias=True, exclude_none=True).encode()
    if len(value) > limits.max_event_bytes:
        raise InvalidEvent(
            f"the validated event is {len(value)} bytes; the limit is {limits.max_event_bytes} "
            "(IOC_INGEST__MAX_EVENT_BYTES)",
            error="too_large",
        )
    return Accepted(
        key=key.encode() if key is not None else None,
        value=value,
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

    context = validation_context(now, settings.max_future_s, settings.max_past_s)
    # Nesting deeper than the limit needs more brackets than the limit: most messages
    # have fewer, and skip the walk (bytes.count runs at C speed; a bracket inside a
    # string only makes the test cautious).
    may_nest = raw.count(b"{") + raw.count(b"[") > settings.max_depth
    if isinstance(decoded, list):
        if len(decoded) > settings.max_elements:
            reason = (
                f"the array holds {len(decoded)} elements; the limit is {settings.max_elements} "
                "(IOC_INGEST__MAX_ELEMENTS)"
            )
            result.rejected.append(Rejected(None, raw, "too_large", reason))
            return result
        for index, element in enumerate(decoded):
            try:
                result.accepted.append(_accept(family, element, context, settings, may_nest))
            except InvalidEvent as exc:
                result.rejected.append(
                    Rejected(index, _element_bytes(element), exc.error, f"[{index}] {exc.reason}",
                             exc.field)
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a bug: this element alone is dead-lettered
                reason = f"[{index}] {internal_reason(exc)}"
                result.rejected.append(Rejected(index, _element_bytes(element), "internal", reason))
    else:
        try:
            result.accepted.append(_accept(family, decoded, context, settings, may_nest))
        except InvalidEvent as exc:
            result.rejected.append(Rejected(None, raw, exc.error, exc.reason, exc.field))
        except Exception as exc:  # noqa: BLE001 - a bug: this message alone is dead-lettered
            result.rejected.append(Rejected(None, raw, "internal", internal_reason(exc)))
    return result


def internal_reason(exc: BaseException, stage: str = "ingest") -> str:
    """The reason of an `internal` dead letter: a bug met while handling one record."""
    return f"internal error in {stage}: {type(exc).__name__}: {str(exc)[:500]}"


def _element_bytes(element: Any) -> bytes:
    """An array element as JSON again, for its dead letter; orjson refuses what nests
    deeper than 255 levels, and then the element's own text is lost: say so."""
    try:
        return orjson.dumps(element)
    except orjson.JSONEncodeError:
        return b'"(the element could not be serialised again: nested too deep)"'


def _bounded_key(key: bytes | None) -> tuple[str | None, bool]:
    if key is None:
        return None, False
    kept = key[:KEY_KEPT_BYTES]
    return kept.decode("utf-8", "backslashreplace"), len(key) > KEY_KEPT_BYTES


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
    raw = rejected.raw
    truncated = len(raw) > RAW_KEPT_BYTES
    reason = rejected.reason
    if len(reason) > REASON_CHARS:
        reason = f"{reason[: REASON_CHARS - 40]}… ({len(reason)} characters in all)"
    field = rejected.field
    if field is not None and len(field) > 200:
        field = field[:199] + "…"
    shown_key, key_truncated = _bounded_key(key)
    record = DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=shown_key,
        key_truncated=key_truncated,
        element=rejected.element,
        raw=DeadLetter.encode(raw[:RAW_KEPT_BYTES] if truncated else raw),
        raw_truncated=truncated,
        raw_bytes=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest() if truncated else None,
        error=rejected.error,
        reason=reason,
        field=field,
        family=family,
        stage=stage,
        rejected_at=now,
    )
    return record.model_dump_json().encode()


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key of a dead letter: the original key, cut to `KEY_KEPT_BYTES`."""
    return key if key is None or len(key) <= KEY_KEPT_BYTES else key[:KEY_KEPT_BYTES]


class RecentIds:
    """Event ids seen within a horizon, bounded in count and bytes: drops exact
    duplicates.

    Each id is remembered as its 16-byte BLAKE2b digest, whatever its length (a free
    `event.id` may be long), so the memory is at most `max_ids` × ~180 bytes (36 MB at
    the default 200,000). Remembered per worker process (not across restarts or
    workers): duplicates that survive it are harmless downstream, whose outputs have
    deterministic identities.
    """

    def __init__(self, horizon_s: float, max_ids: int) -> None:
        self._horizon = horizon_s
        self._max = max_ids
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, event_id: str, now: float) -> bool:
        """True if the id was seen within the horizon; remembers it either way."""
        key = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        seen = self._seen
        oldest_allowed = now - self._horizon
        while seen and (len(seen) >= self._max or next(iter(seen.values())) < oldest_allowed):
            seen.popitem(last=False)
        if key in seen:
            return True
        if self._max:
            seen[key] = now
        return False
