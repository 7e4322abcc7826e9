"""Field types shared by the three families: event times, measurements, names.

Event times may be RFC 3339 with an offset or epoch milliseconds; they are stored
timezone-aware in UTC. The event-time fields also refuse times too far in the
future: the allowed skew and "now" come from the validation context so that the
check stays a pure function of its inputs (see `validation_context`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "Concentration",
    "EventTime",
    "Measurement",
    "NonEmptyStr",
    "Ratio",
    "Timestamp",
    "Within",
    "event_config",
    "quoted",
    "validation_context",
]

# Unknown extra fields are kept and ignored, never an error (docs/EVENTS.md).
event_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

_YEAR_2000_MS = 946_684_800_000
#: No time of this domain lies beyond 2200 (a due date a century ahead is still fine);
#: a bound well inside what datetime and every window computation can hold.
_YEAR_2200_MS = 7_258_118_400_000
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
#: RFC 3339 `date-time` as written (section 5.6): full date, `T`, full time with
#: seconds, an optional fraction, and `Z` or a numeric offset. ISO 8601's other forms
#: that `datetime.fromisoformat` also takes (week dates, basic format, no seconds) are not.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
#: Longest value quoted in a rejection reason.
QUOTE_CHARS = 64
_TIME_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset"},
        {"type": "integer", "minimum": _YEAR_2000_MS, "description": "epoch milliseconds"},
    ]
}


def validation_context(
    now: datetime, max_future_s: float = 300.0, max_past_s: float | None = None
) -> dict[str, Any]:
    context: dict[str, Any] = {"now": now, "max_future": timedelta(seconds=max_future_s)}
    if max_past_s is not None:
        context["max_past"] = timedelta(seconds=max_past_s)
    return context


def quoted(value: Any) -> str:
    """`repr(value)`, shortened: a reason quotes what was wrong, never a whole megabyte."""
    text = repr(value)
    if len(text) <= QUOTE_CHARS:
        return text
    return f"{text[: QUOTE_CHARS - 1]}… ({len(text)} characters)"


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
        if value >= _YEAR_2200_MS:
            raise PydanticCustomError(
                "time_value", "epoch milliseconds out of range (got {value})", {"value": value}
            )
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        if _RFC3339.fullmatch(value) is None:
            if len(value) <= 40 and _RFC3339.fullmatch(value + "Z") is not None:
                raise PydanticCustomError(
                    "time_offset",
                    "time {value} has no UTC offset (add Z or +07:00)",
                    {"value": quoted(value)},
                )
            raise PydanticCustomError(
                "time_format",
                "not an RFC 3339 time: {value} (write e.g. 2026-11-26T10:00:00+07:00)",
                {"value": quoted(value)},
            )
        try:
            parsed = datetime.fromisoformat(value).astimezone(UTC)
        except (ValueError, OverflowError):  # 2026-02-30, or year 1 east of UTC
            raise PydanticCustomError(
                "time_value", "time {value} is not a valid date and time", {"value": quoted(value)}
            ) from None
        if not _EARLIEST <= parsed < _LATEST:
            raise PydanticCustomError(
                "time_value",
                "time {value} is outside the years 2000–2199",
                {"value": quoted(value)},
            )
        return parsed
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
    max_past = context.get("max_past")
    if max_past is not None and value < now - max_past:
        raise PydanticCustomError(
            "time_past",
            "event time {value} is more than {past} s in the past (IOC_INGEST__MAX_PAST_S)",
            {"value": value.isoformat(), "past": int(max_past.total_seconds())},
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


@dataclass(frozen=True, slots=True)
class Within:
    """A measurement within its physical range (`Annotated[Measurement, Within(…)]`): a
    reading beyond it is a broken sensor or a hostile producer, and would poison every
    sum and mean it joins. The bounds are in the exported JSON schema too."""

    low: float
    high: float
    unit: str

    def _check(self, value: float) -> float:
        if not self.low <= value <= self.high:
            raise PydanticCustomError(
                "physical_range",
                "{value} is outside the physical range {low}–{high}{unit}",
                {
                    "value": f"{value:g}",
                    "low": f"{self.low:g}",
                    "high": f"{self.high:g}",
                    "unit": f" {self.unit}" if self.unit else "",
                },
            )
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        out.update(minimum=self.low, maximum=self.high)
        return out


def _identifier(value: str) -> str:
    # Control and bidirectional-override characters let a name print as another one
    # on the operators' screens (CVE-2021-42574, "Trojan Source").
    for char in value:
        if (
            char < " "
            or char == "\x7f"
            or "\u202a" <= char <= "\u202e"
            or "\u2066" <= char <= "\u2069"
        ):
            raise PydanticCustomError(
                "identifier",
                "contains the control or bidi character {code}",
                {"code": f"U+{ord(char):04X}"},
            )
    return value


#: An identifier (device, agency, dossier, event id): what groups, keys and labels
#: are made of, so short and printable.
NonEmptyStr = Annotated[
    str, Field(min_length=1, max_length=256, strict=True), AfterValidator(_identifier)
]
