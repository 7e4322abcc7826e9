"""Field types shared by the three families: event times, measurements, names.

Event times may be RFC 3339 with an offset or epoch milliseconds; they are stored
timezone-aware in UTC. The event-time fields also refuse times too far in the
future: the allowed skew and "now" come from the validation context so that the
check stays a pure function of its inputs (see `validation_context`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "Concentration",
    "EventTime",
    "Measurement",
    "NonEmptyStr",
    "Ratio",
    "Timestamp",
    "event_config",
    "validation_context",
]

# Unknown extra fields are kept and ignored, never an error (docs/EVENTS.md).
event_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

_YEAR_2000_MS = 946_684_800_000
_YEAR_9999_MS = 253_402_300_799_999  # the last millisecond datetime can hold
_TIME_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset"},
        {"type": "integer", "minimum": _YEAR_2000_MS, "description": "epoch milliseconds"},
    ]
}


def validation_context(now: datetime, max_future_s: float = 300.0) -> dict[str, Any]:
    return {"now": now, "max_future": timedelta(seconds=max_future_s)}


def _parse_time(value: Any) -> datetime:
    if isinstance(value, bool):
        raise PydanticCustomError("time_type", "expected an RFC 3339 time or epoch milliseconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise PydanticCustomError("time_value", "value is not a finite number")
        if value < _YEAR_2000_MS:
            # The commonest producer mistake: seconds where milliseconds are expected.
            raise PydanticCustomError(
                "time_value",
                "epoch milliseconds expected (got {value}, which looks like seconds)",
                {"value": value},
            )
        if value > _YEAR_9999_MS:
            raise PydanticCustomError(
                "time_value", "epoch milliseconds out of range (got {value})", {"value": value}
            )
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "time_format", "not an RFC 3339 time: {value}", {"value": repr(value)}
            ) from None
        if parsed.tzinfo is None:
            raise PydanticCustomError(
                "time_offset",
                "time {value} has no UTC offset (add Z or +07:00)",
                {"value": repr(value)},
            )
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+07:00 has no UTC equivalent
            raise PydanticCustomError(
                "time_value", "time {value} is out of range", {"value": repr(value)}
            ) from None
    raise PydanticCustomError("time_type", "expected an RFC 3339 time or epoch milliseconds")


def _not_in_future(value: datetime, info: ValidationInfo) -> datetime:
    context = info.context or {}
    now = context.get("now") or datetime.now(UTC)
    max_future = context.get("max_future", timedelta(minutes=5))
    if value > now + max_future:
        raise PydanticCustomError(
            "time_future",
            "event time {value} is more than {skew} s in the future",
            {"value": value.isoformat(), "skew": int(max_future.total_seconds())},
        )
    return value


Timestamp = Annotated[datetime, BeforeValidator(_parse_time), WithJsonSchema(_TIME_SCHEMA)]
EventTime = Annotated[Timestamp, AfterValidator(_not_in_future)]


def _number(value: Any) -> float:
    # JSON numbers only: a string "62.4" is a producer bug worth reporting, and
    # bool is an int subclass in Python.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "not_a_number", "value is not a number (got {kind})", {"kind": type(value).__name__}
        )
    if not math.isfinite(value):
        raise PydanticCustomError("not_finite", "value is not a finite number")
    return float(value)


def _non_negative(value: float) -> float:
    if value < 0:
        raise PydanticCustomError(
            "negative", "concentration must not be negative (got {value})", {"value": value}
        )
    return value


def _ratio(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise PydanticCustomError(
            "ratio", "must be a ratio between 0 and 1 (got {value})", {"value": value}
        )
    return value


Measurement = Annotated[float, BeforeValidator(_number), WithJsonSchema({"type": "number"})]
Concentration = Annotated[
    Measurement, AfterValidator(_non_negative), WithJsonSchema({"type": "number", "minimum": 0})
]
Ratio = Annotated[
    Measurement,
    AfterValidator(_ratio),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
]
NonEmptyStr = Annotated[str, Field(min_length=1, strict=True)]
