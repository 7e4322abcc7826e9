"""Security events: a subset of the Elastic Common Schema (docs/EVENTS.md).

Producers may nest objects (`{"source": {"ip": …}}`) or use dotted keys
(`{"source.ip": …}`), or mix both; dotted keys are folded into nested objects
before validation.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from models.common import EventTime, event_config, quoted
from models.errors import InvalidEvent
from models.validation import validate

__all__ = ["CATEGORIES", "SecurityEvent", "entity_key", "event_id", "nest_dotted_keys", "parse"]

#: ECS allowed values of event.category.
CATEGORIES = (
    "api",
    "authentication",
    "configuration",
    "database",
    "driver",
    "file",
    "host",
    "iam",
    "intrusion_detection",
    "library",
    "malware",
    "network",
    "package",
    "process",
    "registry",
    "session",
    "threat",
    "vulnerability",
    "web",
)
Category = Literal[CATEGORIES]  # type: ignore[valid-type]


def _ip(value: str) -> str:
    try:
        # Normalised text (e.g. compressed IPv6) so that grouping by IP is exact.
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError(
            "ip", "{value} is not a valid IPv4 or IPv6 address", {"value": quoted(value)}
        ) from None


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise PydanticCustomError("sha256", "not a SHA-256 hex digest (64 hex characters)")
    return value.lower()


IP = Annotated[str, Field(strict=True), AfterValidator(_ip)]
Port = Annotated[int, Field(strict=True, ge=0, le=65535)]
Text = Annotated[str, Field(strict=True)]


class _Ecs(BaseModel):
    model_config = event_config


class Event(_Ecs):
    category: Annotated[list[Category], BeforeValidator(_as_list), Field(min_length=1)]
    outcome: Literal["success", "failure", "unknown"] | None = None
    action: Text | None = None
    severity: Annotated[int, Field(strict=True, ge=0)] | None = None
    id: Text | None = None


class Endpoint(_Ecs):
    ip: IP | None = None
    port: Port | None = None


class Named(_Ecs):
    name: Text | None = None


class Observer(_Ecs):
    type: Text | None = None
    vendor: Text | None = None


class Hash(_Ecs):
    sha256: Annotated[str, Field(strict=True), AfterValidator(_sha256)] | None = None


class File(_Ecs):
    hash: Hash | None = None


class SecurityEvent(_Ecs):
    timestamp: EventTime = Field(alias="@timestamp")
    event: Event
    source: Endpoint | None = None
    destination: Endpoint | None = None
    user: Named | None = None
    host: Named | None = None
    organization: Named | None = None
    observer: Observer | None = None
    rule: Named | None = None
    file: File | None = None

    @property
    def event_time(self) -> datetime:
        return self.timestamp


def nest_dotted_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """`{"source.ip": x}` → `{"source": {"ip": x}}`, merged with nested objects."""
    if not any("." in key for key in obj):
        return obj  # the common case stays cheap
    nested: dict[str, Any] = {}
    for key, value in obj.items():
        *parents, leaf = key.split(".") if not key.startswith("@") else [key]
        target = nested
        for depth, part in enumerate(parents):
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                path = ".".join(parents[: depth + 1])
                raise InvalidEvent(f"{key}: conflicts with the non-object field {path}", field=key)
            target = child
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            target[leaf] = {**target[leaf], **nest_dotted_keys(value)}
        elif leaf in target:
            raise InvalidEvent(f"{key}: given twice (nested and dotted)", field=key)
        else:
            target[leaf] = nest_dotted_keys(value) if isinstance(value, dict) else value
    return nested


def parse(obj: Any, context: dict[str, Any]) -> SecurityEvent:
    if isinstance(obj, dict):
        obj = nest_dotted_keys(obj)
    return validate(SecurityEvent, obj, context)


def entity_key(event: SecurityEvent) -> str | None:
    if event.source is not None and event.source.ip is not None:
        return event.source.ip
    return event.host.name if event.host is not None else None


def event_id(event: SecurityEvent) -> str | None:
    return event.event.id
