"""The case stage through Kafka: backlog figures per agency, dead letters, and a
SIGKILL after which the figures come back from the changelog."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.core.ingest import process_message
from streams.worker.settings import IngestSettings
from streams.worker.topics import AGGREGATES, DEADLETTER, VALIDATED
from tests.conftest import dossier
from tests.integration.conftest import Worker, consume, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EMIT_EVERY_S = 1
#: (kind, partition) → (open, overdue, near_due)
Figures = dict[tuple[str, int], tuple[int, int, int]]


def validated(event: dict[str, Any], now: datetime) -> tuple[bytes, bytes]:
    """The event as ingest puts it on `ioc.services.validated`: normalised, keyed by case."""
    [accepted] = process_message("services", orjson.dumps(event), IngestSettings(), now).accepted
    assert accepted.key is not None
    return accepted.key, accepted.value


class Cases:
    """Status events for the cases of one agency, and what their backlog must be."""

    def __init__(self, agency: str, now: datetime) -> None:
        self.agency = agency
        self.now = now
        self.messages: list[tuple[bytes, bytes]] = []
        self.state: dict[tuple[str, str], str] = {}  # (kind, id) → overdue/near/later/closed

    def event(self, kind: str, case: str, status: str, hours_ago: float, due_in_h: float) -> None:
        occurred = (self.now - timedelta(hours=hours_ago)).isoformat()
        due = (self.now + timedelta(hours=due_in_h)).isoformat()
        common = {"agency": self.agency, "status": status, "occurred_at": occurred}
        common |= {"due_at": due, "event_id": f"{case}-{status}-{hours_ago}"}
        if kind == "dossier":
            resolved = occurred if status == "resolved" else None
            event = dossier(dossier_id=case, resolved_at=resolved, **common)
        else:
            event = {"kind": "feedback", "feedback_id": case, **common}
        self.messages.append(validated(event, self.now))
        final = status in ("resolved", "returned", "cancelled")
        self.state[kind, case] = (
            "closed"
            if final
            else "overdue"
            if due_in_h < 0
            else "near"
            if due_in_h <= 24
            else "later"
        )

    def expected(self, partitions: dict[bytes, int]) -> Figures:
        """Counted by hand from what each case is, on the partition Kafka put it."""
        counts: Counter[tuple[str, int, str]] = Counter()
        for (kind, case), state in self.state.items():
            counts[kind, partitions[case.encode()], state] += 1
        figures: Figures = {}
        for kind, partition, _ in counts:
            if (kind, partition) in figures:
                continue
            overdue, near, later = (
                counts[kind, partition, s] for s in ("overdue", "near", "later")
            )
            if overdue + near + later:
                figures[kind, partition] = (overdue + near + later, overdue, near)
        return figures


def figures_by_interval(records: list[Any]) -> dict[int, Figures]:
    """The backlog records read, per interval; all-zero rows (a group that emptied) left out."""
    out: dict[int, Figures] = {}
    for record in records:
        value = orjson.loads(record.value)
        stats = value["statistics"]
        row = (stats["open"], stats["overdue"], stats["near_due"])
        group = value["group"]
        assert value["final"] and value["window_start_ms"] == value["window_end_ms"]
        assert value["window_start_ms"] % (EMIT_EVERY_S * 1000) == 0 and value["count"] == row[0]
        if any(row):
            out.setdefault(value["window_start_ms"], {})[group["kind"], group["partition"]] = row
    return out


async def reported(
    bootstrap: str, agency: str, expected: Figures, after_ms: int, timeout: float = 90
) -> int:
    """The first interval after `after_ms` whose records are exactly `expected`."""
    prefix = f"case_backlog|{agency}|".encode()

    def done(kept: list[Any]) -> bool:
        return any(
            at > after_ms and figures == expected
            for at, figures in figures_by_interval(kept).items()
        )

    records = await consume(
        bootstrap, AGGREGATES, lambda r: r.key.startswith(prefix), until=done, timeout=timeout
    )
    matching = [
        at
        for at, figures in sorted(figures_by_interval(records).items())
        if at > after_ms and figures == expected
    ]
    last = max(figures_by_interval(records).items(), default=None)
    assert matching, f"expected {expected}; the last interval read was {last}"
    return matching[0]


def totals(figures: Figures) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for (kind, _), row in figures.items():
        before = out.get(kind, (0, 0, 0))
        out[kind] = (before[0] + row[0], before[1] + row[1], before[2] + row[2])
    return out


async def test_backlog_figures_survive_a_sigkill(bootstrap, tmp_path, unique):
    agency = f"AG-{unique}"
    now = datetime.now(UTC)
    cases = Cases(agency, now)
    for i in range(2):  # overdue: due two hours ago
        cases.event("dossier", f"{unique}-od{i}", "received", 30, -2)
        cases.event("dossier", f"{unique}-od{i}", "in_progress", 20, -2)
    for i in range(3):  # near due: due in two hours
        cases.event("dossier", f"{unique}-nd{i}", "received", 5, 2)
    for i in range(2):  # due in three days
        cases.event("dossier", f"{unique}-ld{i}", "received", 5, 72)
    for i, final in enumerate(["resolved", "returned"]):  # closed
        cases.event("dossier", f"{unique}-cd{i}", "received", 10, -1)
        cases.event("dossier", f"{unique}-cd{i}", final, 1, -1)
    cases.event("feedback", f"{unique}-f0", "received", 3, -1)  # overdue
    cases.event("feedback", f"{unique}-f1", "assigned", 3, 10)  # near due
    cases.event("feedback", f"{unique}-f2", "received", 3, 5)  # resolved
    cases.event("feedback", f"{unique}-f2", "resolved", 2, 5)

    foreign = f"foreign-{unique}".encode()  # not a service event: dead-lettered, not fatal
    messages = [*cases.messages, (foreign, orjson.dumps({"kind": "ticket", "id": unique}))]

    # Started first: it creates the topics with their partitions, where a producer
    # would have the broker create a one-partition topic.
    env = {"IOC_CASES__EMIT_EVERY_S": str(EMIT_EVERY_S)}
    worker = Worker(bootstrap, tmp_path, **env).start()
    try:
        positions = await produce(bootstrap, VALIDATED["services"], messages)
        partitions = {key: p for (key, _), (p, _) in zip(messages, positions, strict=True)}
        expected = cases.expected(partitions)
        assert totals(expected) == {"dossier": (7, 2, 3), "feedback": (2, 1, 1)}
        assert len({partition for _, partition in expected}) > 1  # a sum over partitions
        started = time.monotonic()
        await reported(bootstrap, agency, expected, after_ms=0)
        print(f"\nexact figures {time.monotonic() - started:.1f} s after producing: {expected}")
        # The window stage rejects it as well (no event time), in its own words.
        [letter] = await consume(
            bootstrap,
            DEADLETTER,
            lambda r: (
                r.key == foreign
                and orjson.loads(r.value)["reason"].startswith("not a validated service event: ")
            ),
            until=bool,
        )
        dead = orjson.loads(letter.value)
        assert dead["error"] == "schema" and dead["family"] == "services"
        assert dead["reason"].endswith("kind: expected dossier or feedback (got 'ticket')")

        await asyncio.sleep(2)  # past a checkpoint (IOC_KAFKA__COMMIT_INTERVAL_S = 1 s)
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        killed_ms = int(time.time() * 1000)

        # While it is down: one overdue dossier is resolved, a near-due one arrives.
        later = Cases(agency, datetime.now(UTC))
        later.event("dossier", f"{unique}-od0", "resolved", 0.5, -2)
        later.event("dossier", f"{unique}-nd9", "received", 0.5, 3)
        positions = await produce(bootstrap, VALIDATED["services"], later.messages)
        partitions |= {key: p for (key, _), (p, _) in zip(later.messages, positions, strict=True)}
        cases.state |= later.state
        expected = cases.expected(partitions)
        assert totals(expected) == {"dossier": (7, 1, 4), "feedback": (2, 1, 1)}

        restarted = time.monotonic()
        worker.start()
        up = time.monotonic()
        await reported(bootstrap, agency, expected, after_ms=killed_ms)
        print(
            f"restart: healthy after {up - restarted:.1f} s, exact figures"
            f" {time.monotonic() - up:.1f} s later"
        )
    finally:
        worker.stop()
