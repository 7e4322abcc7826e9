"""Ingest agents: raw bytes from the integrators' topics to validated events.

Faust decodes nothing here (raw serializer): a decode error inside Faust would be
acked and lost, so decoding and validation happen in `streams.ingest`, and every
rejection becomes a dead letter.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from streams.ingest import RecentIds, dead_letter, process_message
from streams.metrics import Metrics
from streams.outbox import Outbox
from streams.settings import Settings
from streams.topics import DEADLETTER, FAMILIES, SOURCE, VALIDATED, Family

__all__ = ["make_ingest", "register"]


def make_ingest(
    family: Family,
    settings: Settings,
    metrics: Metrics,
    outbox: Outbox,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[Any], Awaitable[None]]:
    """The agent function for one family (named `ingest_<family>`)."""
    recent = RecentIds(settings.ingest.dedup_horizon_s, settings.ingest.dedup_max_ids)
    validated_topic = VALIDATED[family]
    messages = metrics.messages.labels(family)
    accepted = metrics.accepted.labels(family)
    duplicates = metrics.duplicates.labels(family)

    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            now = clock()
            result = process_message(family, message.value, settings.ingest, now)
            messages.inc()
            for item in result.accepted:
                if item.event_id is not None and recent.seen(item.event_id, time.monotonic()):
                    duplicates.inc()
                    continue
                await outbox.send(validated_topic, item.key, item.value)
                accepted.inc()
            for rejected in result.rejected:
                record = dead_letter(
                    rejected,
                    family=family,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    now=now,
                )
                await outbox.send(DEADLETTER, message.key, record)
                metrics.rejected.labels(family, rejected.error).inc()

    ingest.__name__ = ingest.__qualname__ = f"ingest_{family}"
    return ingest


def register(app: Any, settings: Settings, metrics: Metrics, outbox: Outbox) -> dict[str, Any]:
    """Declare one ingest agent per family on its source topic; returns them by family."""
    agents: dict[str, Any] = {}
    for family in FAMILIES:
        source = app.topic(
            SOURCE[family],
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        function = make_ingest(family, settings, metrics, outbox)
        agents[family] = app.agent(source, name=f"ingest_{family}")(function)
    return agents
