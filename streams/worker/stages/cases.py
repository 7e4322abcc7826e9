"""The case stage: validated service events → open cases → `case_backlog` figures.

Per input partition of `ioc.services.validated` a pure `CaseBook` tracks the open
dossiers and feedback (streams.core.cases); ingest keys events by case id, so every event
of a case reaches the same partition and book. Once per `IOC_CASES__EMIT_EVERY_S`
each partition reports its backlog per agency and kind to `ioc.aggregates`, with the
partition in the record's group: an agency's backlog is the sum over partitions of
one interval's records (docs/AGGREGATES.md, "Case backlog").

Overdue is judged by the wall clock, not by event time: a dossier becomes overdue
when its due time passes, whether or not any event arrives, and a watermark would
stand still while the service system is quiet (at night, say).

State is checkpointed like the window stage's: the cases that changed go to the
changelog with the input offset they belong to, and on assignment a partition's
book is rebuilt from it and reading resumes at that offset.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import orjson
from aiokafka import TopicPartition

from streams.core.cases import BacklogReporter, CaseBook
from streams.core.progress import is_progress
from streams.worker.metrics import Metrics
from streams.worker.settings import Settings
from streams.worker.stages.base import ChangelogStage
from streams.worker.stages.windows import FinalsListener
from streams.worker.topics import AGGREGATES, VALIDATED

__all__ = ["CaseStage"]

log = logging.getLogger(__name__)

#: A partition whose newest record read was written less than this long ago counts as
#: caught up although records keep arriving.
CAUGHT_UP_MS = 10_000


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):  # str() of a KeyError is only the quoted key
        return f"{exc.args[0]}: field required"
    if isinstance(exc, TypeError):
        return f"not a JSON object of the expected shape ({exc})"
    return str(exc)


class CaseStage(ChangelogStage):
    """Tracks open public-service cases and reports the backlog per agency."""

    name: ClassVar[str] = "cases"

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(settings, metrics, [VALIDATED["services"]], **kwargs)
        cases = settings.cases
        self.every_ms = int(cases.emit_every_s * 1000)
        self.near_due_ms = int(cases.near_due_s * 1000)
        self.closed_ttl_ms = int(cases.closed_ttl_s * 1000)
        self.max_open_per_agency = cases.max_open_per_agency
        self.open_ttl_ms = int(cases.open_ttl_s * 1000)
        self.books: dict[TopicPartition, CaseBook] = {}
        #: Who else wants each backlog record as it is made (the console's figures).
        self.finals_to: FinalsListener | None = None
        self._reporters: dict[TopicPartition, BacklogReporter] = {}
        self._newest_ms: dict[TopicPartition, int] = {}  # Kafka timestamp of the newest read

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        book = self.books[tp]
        self._newest_ms[tp] = records[-1].timestamp
        for record in records:
            async with self.isolated(record, "services"):
                if record.headers and is_progress(record.headers):
                    continue  # ingest's event-time progress: cases judge by the wall clock
                if record.value is None:
                    # A tombstone: no bytes to decode, and none for the dead letter's `raw`.
                    await self.reject(
                        record,
                        "schema",
                        "not a validated service event: null value",
                        family="services",
                    )
                    continue
                try:
                    book.apply(orjson.loads(record.value))
                except (ValueError, KeyError, TypeError) as exc:
                    # Ingest wrote this topic, so only a foreign producer gets here (the
                    # JSON decode error is a ValueError too): reject the record, keep going.
                    await self.reject(
                        record,
                        "schema",
                        f"not a validated service event: {_why(exc)}",
                        family="services",
                    )
        self.metrics.case_events.inc(len(records))

    async def tick(self, now_ms: int) -> None:
        consumer = self.consumer
        reported = False
        for tp, reporter in self._reporters.items():
            if not reporter.due(now_ms):
                continue
            # A partition with history still to read would report a backlog it has not
            # seen yet; it reports once it has caught up, in the same interval if it can.
            # Caught up: nothing left to read, or the newest record read was written
            # moments ago (under steady traffic a few records are always in flight).
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            behind = self.positions.get(tp, 0) < highwater
            if behind and now_ms - self._newest_ms.get(tp, 0) > CAUGHT_UP_MS:
                continue
            book = self.books[tp]
            book.expire(now_ms)
            for result in reporter.report(book, now_ms):
                await self.outbox.send(AGGREGATES, result.identity.encode(), result.to_json())
                if self.finals_to is not None:
                    self.finals_to.add(f"{tp.topic}:{tp.partition}", result)
            reported = True
        for book in self.books.values():  # the cap evicts while events are applied
            for reason, evicted in book.take_evicted().items():
                if evicted:
                    self.metrics.cases_evicted.labels(reason).inc(evicted)
        if reported:
            self.metrics.open_cases.set(sum(len(book) for book in self.books.values()))

    def state_records(
        self, tp: TopicPartition, position: int
    ) -> list[tuple[str, int, bytes, bytes | None]]:
        book = self.books.get(tp)
        return self.changelog_records(tp, book.take_dirty() if book else [], position)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            recovered = (await self.recover(tp.partition, [tp.topic]))[tp.topic]
            book = CaseBook(
                self.closed_ttl_ms,
                max_open_per_agency=self.max_open_per_agency,
                open_ttl_ms=self.open_ttl_ms,
            )
            book.restore(recovered.items.items())
            self.books[tp] = book
            self._reporters[tp] = BacklogReporter(tp.partition, self.every_ms, self.near_due_ms)
            self.resume(tp, recovered)
        log.info("cases: recovered %d partitions from %s", len(assigned), self.changelog)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        for tp in revoked:
            self.books.pop(tp, None)
            self._reporters.pop(tp, None)
            if self.finals_to is not None:
                self.finals_to.drop(f"{tp.topic}:{tp.partition}")
