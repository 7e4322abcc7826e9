"""Why an event is rejected, in words an integrator can act on.

InvalidEvent          one event (or a whole message) breaks the contract
  .error              machine-readable kind: json | schema | too_large | late
  .reason             human-readable, naming the field path:
                      "pm25: value is not a finite number"
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["InvalidEvent", "reason_from"]


class InvalidEvent(ValueError):
    """Raised by the family parsers; the ingest stage turns it into a dead letter."""

    def __init__(self, reason: str, *, error: str = "schema", field: str | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.field = field


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def reason_from(exc: ValidationError) -> InvalidEvent:
    """One line per broken field, the field path first, as integrators read it."""
    parts = []
    first_field = None
    for error in exc.errors(include_url=False, include_context=False):
        path = _path(error["loc"])
        message = error["msg"]
        message = message[:1].lower() + message[1:]
        parts.append(f"{path}: {message}" if path else message)
        first_field = first_field or path or None
    return InvalidEvent("; ".join(parts), field=first_field)
