"""Shared test helpers: a fixed clock and contract examples from docs/EVENTS.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models import validation_context

NOW = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # 12:00 in Hải Dương


@pytest.fixture
def context() -> dict[str, Any]:
    return validation_context(NOW)


def air_quality(**changes: Any) -> dict[str, Any]:
    event = {
        "id": "urn:ngsi-ld:AirQualityObserved:HD-AQ-017:2026-11-26T10:00:00+07:00",
        "type": "AirQualityObserved",
        "refDevice": "HD-AQ-017",
        "dateObserved": "2026-11-26T10:00:00+07:00",
        "areaServed": "TP Hải Dương",
        "location": {"type": "Point", "coordinates": [106.3146, 20.9399]},
        "pm25": 62.4,
        "pm10": 88.0,
        "no2": 41.0,
        "relativeHumidity": 0.71,
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


def dossier(**changes: Any) -> dict[str, Any]:
    event = {
        "kind": "dossier",
        "event_id": "e-7781",
        "dossier_id": "000.00.17.H23-261126-0042",
        "procedure_code": "1.004227",
        "sector": "dat_dai",
        "agency": "SO-TNMT",
        "district": "Chí Linh",
        "status": "resolved",
        "channel": "online",
        "occurred_at": "2026-11-26T11:20:00+07:00",
        "received_at": "2026-11-20T08:05:00+07:00",
        "due_at": "2026-11-27T17:00:00+07:00",
        "resolved_at": "2026-11-26T11:20:00+07:00",
        "paid_online": True,
        "fee_vnd": 50000,
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


def auth_failure(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "@timestamp": "2026-11-26T03:01:02Z",
        "event": {"category": ["authentication"], "outcome": "failure", "action": "ssh_login"},
        "source": {"ip": "203.0.113.7"},
        "destination": {"ip": "10.20.1.5", "port": 22},
        "user": {"name": "admin"},
        "host": {"name": "dvc-portal-01"},
        "organization": {"name": "SO-TTTT"},
        "observer": {"type": "ids"},
    }
    event.update(changes)
    return event
