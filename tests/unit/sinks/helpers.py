"""Alert records and a scripted `Post` for sink unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from models.alerts import Alert, Evidence, fingerprint
from models.errors import TransientError
from sinks.base import SinkRecord
from sinks.http import Answer

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z


def alert(
    state: str = "firing",
    starts_at_ms: int = T0,
    ends_at_ms: int | None = None,
    **labels: str,
) -> Alert:
    names = {"alertname": "brute_force", "severity": "warning", "source.ip": "203.0.113.7"}
    names.update({key.replace("__", "."): value for key, value in labels.items()})
    return Alert(
        fingerprint=fingerprint(names),
        state=state,  # type: ignore[arg-type]
        starts_at_ms=starts_at_ms,
        ends_at_ms=ends_at_ms if state == "resolved" else None,
        labels=names,
        annotations={
            "summary_vi": "Dò mật khẩu từ 203.0.113.7",
            "summary_en": "Brute force from 203.0.113.7",
            "value": "12",
            "threshold": "10",
            "window": "5m",
        },
        kind="count",
        evidence=Evidence(value=12, threshold=10, event_ids=("e-1", "e-2"), count=12),
    )


def record(item: Alert | bytes, offset: int = 0) -> SinkRecord:
    value = item.to_json() if isinstance(item, Alert) else item
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        decoded = {}
    return SinkRecord("ioc.alerts", 0, offset, None, value, decoded)


class ScriptedPost:
    """Answers from a script (an Answer, or an exception to raise); 200 when empty."""

    def __init__(self, *script: Answer | Exception) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, Any, dict[str, str]]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        self.calls.append((url, orjson.loads(body), dict(headers)))
        self.bodies.append(body)
        step = self.script.pop(0) if self.script else Answer(200)
        if isinstance(step, Exception):
            raise step
        return step


def refused() -> TransientError:
    return TransientError("ClientConnectorError: connection refused")
