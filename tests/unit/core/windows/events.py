"""Builders for the window tests: aggregates from dicts, events as the validated topic has them."""

from __future__ import annotations

from typing import Any

from models.aggregates import Aggregate
from models.timefmt import rfc3339

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z, on every window boundary used here
S = 1000
M = 60 * S

CITY = "ioc.city.validated:0"
SECURITY = "ioc.security.validated:0"


def aggregate(**fields: Any) -> Aggregate:
    spec: dict[str, Any] = {
        "name": "air",
        "family": "city",
        "filter": {"type": "AirQualityObserved"},
        "group_by": ["refDevice"],
        "values": ["pm25"],
        "statistics": ["count", "sum", "min", "max", "mean", "last", "distinct"],
        "window": {"size": "1m"},
    }
    spec.update(fields)
    return Aggregate.model_validate(spec)


def air(t: int, device: str = "AQ-1", pm25: float | None = 10.0, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "AirQualityObserved",
        "refDevice": device,
        "dateObserved": rfc3339(t),
        "areaServed": "TP Hải Dương",
        **extra,
    }
    if pm25 is not None:
        event["pm25"] = pm25
    return event


def security(t: int, categories: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": rfc3339(t),
        "event": {"category": categories, "outcome": "failure"},
        "organization": {"name": "SO-TTTT"},
        **extra,
    }
