"""Why an event is rejected, in words an integrator can act on.

InvalidEvent          one event (or a whole message) breaks the contract
  .error              machine-readable kind: json | schema | too_large | late
  .reason             human-readable, naming the field path:
                      "pm25: value is not a finite number"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["InvalidEvent", "reason_from", "validate", "validate_tagged"]


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


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], obj: Any, context: dict[str, Any]) -> M:
    """`model.model_validate`, with a rejection an integrator can read."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj, context=context)
    except ValidationError as exc:
        raise reason_from(exc) from None


def validate_tagged(
    obj: Any, tag: str, models: Mapping[str, type[M]], context: dict[str, Any]
) -> M:
    """Validate with the model that the value of field `tag` names."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
    value = obj.get(tag)
    model = models.get(value) if isinstance(value, str) else None
    if model is None:
        problem = "field required" if value is None else f"unknown {tag} {value!r}"
        raise InvalidEvent(f"{tag}: {problem}; expected one of {', '.join(models)}", field=tag)
    return validate(model, obj, context)
