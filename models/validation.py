"""Validating an event against its family's models, with a rejection an integrator can
read: `InvalidEvent` naming the field path first (models.errors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from models.common import quoted
from models.errors import InvalidEvent

__all__ = ["reason_from", "validate", "validate_tagged"]


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
        problem = "field required" if value is None else f"unknown {tag} {quoted(value)}"
        raise InvalidEvent(f"{tag}: {problem}; expected one of {', '.join(models)}", field=tag)
    return validate(model, obj, context)
