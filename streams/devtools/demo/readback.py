"""Reading `ioc.aggregates` and `ioc.alerts` back from the beginning, at the end."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.alerts import Alert
from streams.core.progress import is_progress
from streams.worker.topics import AGGREGATES, ALERTS

__all__ = ["Tally", "count_aggregates", "read_alerts", "read_topic"]

#: (aggregate, final) → records of `ioc.aggregates`.
Tally = Counter[tuple[str, bool]]


async def read_topic(
    options: dict[str, Any], topic: str, on_record: Callable[[Any], None], timeout: float
) -> bool:
    """Every record of `topic` from the beginning, passed to `on_record`, and whether
    every partition was read to its end within `timeout`. Progress records are
    skipped. No consumer group: nothing is committed and nothing is left behind.

    Reads up to the high watermark that fetch responses carry (not ListOffsets, which
    some brokers answer wrongly; docs/BROKERS.md)."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata that partitions_for_topic reads
        partitions = consumer.partitions_for_topic(topic) or set()
        remaining = {TopicPartition(topic, partition) for partition in partitions}
        if not remaining:
            return True
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        deadline = time.monotonic() + timeout
        empty_rounds = 0
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=20_000)
            for records in batches.values():
                for record in records:
                    if not is_progress(record.headers):  # stage-to-stage event time
                        on_record(record)
            for tp in list(remaining):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    remaining.discard(tp)
            empty_rounds = 0 if batches else empty_rounds + 1
            if empty_rounds >= 5:
                # No fetch response has carried a high watermark: empty partitions.
                return True
    finally:
        await consumer.stop()
    return not remaining


async def count_aggregates(options: dict[str, Any], timeout: float = 60.0) -> tuple[Tally, bool]:
    """Every record of `ioc.aggregates` from the beginning, counted by aggregate and
    final flag, and whether every partition was read to its end within `timeout`."""
    tally: Tally = Counter()

    def count(record: Any) -> None:
        value = orjson.loads(record.value)
        tally[value["aggregate"], bool(value["final"])] += 1

    complete = await read_topic(options, AGGREGATES, count, timeout)
    return tally, complete


async def read_alerts(
    options: dict[str, Any], copy_to: Path | None = None, timeout: float = 60.0
) -> tuple[list[Alert], int, bool]:
    """Every record of `ioc.alerts` from the beginning (in partition order), the number
    of records that are not alerts, and whether every partition was read to its end
    within `timeout`. With `copy_to`, the raw records go there too, one JSON a line."""
    alerts: list[Alert] = []
    invalid = 0
    copy = copy_to.open("wb") if copy_to is not None else None

    def keep(record: Any) -> None:
        nonlocal invalid
        try:
            alerts.append(Alert.from_json(record.value))
        except ValueError:
            invalid += 1
            return
        if copy is not None:
            copy.write(record.value + b"\n")

    try:
        complete = await read_topic(options, ALERTS, keep, timeout)
    finally:
        if copy is not None:
            copy.close()
    return alerts, invalid, complete
