"""Times and durations as the records and declaration files write them.

- `rfc3339(ms)`: epoch milliseconds → `2026-11-26T03:05:00Z`, the form of every time
  this project writes (window results, alerts, the Alertmanager payload).
- `rfc3339_ms(text)`: RFC 3339 with an offset → epoch milliseconds, the form of every
  time it computes with.
- `parse_duration`, and the pydantic type `Duration` built on it: `500ms 30s 5m 1h 1d`
  (or integer milliseconds) → int milliseconds, as aggregates and rules declare them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["Duration", "parse_duration", "rfc3339", "rfc3339_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds → `2026-11-26T03:05:00Z` (milliseconds shown when not zero)."""
    when = _EPOCH + timedelta(milliseconds=ms)
    text = when.isoformat(timespec="seconds" if ms % 1000 == 0 else "milliseconds")
    return text.replace("+00:00", "Z")


def rfc3339_ms(text: str) -> int:
    """RFC 3339 with an offset (`…Z`, `…+07:00`) → epoch milliseconds.

    Raises ValueError when `text` is not an ISO 8601 time, or has no offset: a time
    without one is in no known zone."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no offset")
    return (when - _EPOCH) // _MS


_DURATION = re.compile(r"^(-?)(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(value: Any) -> int:
    """`500ms 30s 5m 1h 1d` (or an integer of milliseconds) → int milliseconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or integer milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _DURATION.match(value.strip())):
        sign, number, unit = match.groups()
        return (-1 if sign else 1) * int(number) * _UNIT_MS[unit]
    raise ValueError(
        f"{value!r} is not a duration; write e.g. 500ms, 30s, 5m, 1h, 1d or integer milliseconds"
    )


def _duration(value: Any) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


#: A duration field of a declaration: int milliseconds once loaded.
Duration = Annotated[int, BeforeValidator(_duration)]
