"""The three event families, and what the stages need to know of each.

- `Family`, `FAMILY_NAMES`: the names (`city`, `services`, `security`).
- `FAMILIES`: family → `EventFamily`, the one way in to its models: parse, entity
  key, event id, JSON Schema (one module per family: models.city, models.services,
  models.security).
- `TIME_FIELDS`: where the validated event carries its event time.
- `DISCRIMINATORS`: the field that picks the event model within a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Protocol, Union, get_args

from pydantic import BaseModel, Field, TypeAdapter

from models import city, security, services

__all__ = [
    "DISCRIMINATORS",
    "FAMILIES",
    "FAMILY_NAMES",
    "TIME_FIELDS",
    "Event",
    "EventFamily",
    "Family",
]

Family = Literal["city", "services", "security"]
FAMILY_NAMES: Final[tuple[Family, ...]] = get_args(Family)

#: Where each family's validated event carries its event time (RFC 3339 UTC, "…Z").
TIME_FIELDS: Final[dict[str, str]] = {
    "city": "dateObserved",
    "services": "occurred_at",
    "security": "@timestamp",
}
#: The field that picks the event model within a family.
DISCRIMINATORS: Final[dict[str, str]] = {"city": "type", "services": "kind"}


class Event(Protocol):
    """What every validated event offers the stages."""

    @property
    def event_time(self) -> datetime: ...

    def model_dump_json(self, **kwargs: Any) -> str: ...


@dataclass(frozen=True)
class EventFamily:
    name: str
    parse: Callable[[Any, dict[str, Any]], Any]
    entity_key: Callable[[Any], str | None]
    event_id: Callable[[Any], str | None]
    models: tuple[type[BaseModel], ...]

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the keyValues/nested form integrators send."""
        if len(self.models) == 1:
            schema = self.models[0].model_json_schema(by_alias=True)
        else:
            discriminator = "type" if self.name == "city" else "kind"
            union = Annotated[Union[self.models], Field(discriminator=discriminator)]  # type: ignore[name-defined]  # noqa: UP007
            schema = TypeAdapter(union).json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"ioc-streams {self.name} event (wire contract v1)"
        return schema


FAMILIES: Final[dict[str, EventFamily]] = {
    "city": EventFamily(
        "city", city.parse, city.entity_key, city.event_id, tuple(city.MODELS.values())
    ),
    "services": EventFamily(
        "services",
        services.parse,
        services.entity_key,
        services.event_id,
        tuple(services.MODELS.values()),
    ),
    "security": EventFamily(
        "security",
        security.parse,
        security.entity_key,
        security.event_id,
        (security.SecurityEvent,),
    ),
}
