"""Open public-service cases (dossiers and feedback) and their backlog per agency.

Input: the validated service events of `ioc.services.validated` as dicts (docs/EVENTS.md,
"What the next stage receives"): `kind`, `dossier_id` or `feedback_id`, `agency`,
`status`, `occurred_at`, `due_at`, times as RFC 3339 UTC strings.

A case is open from its first non-final status until a final one: `resolved`,
`returned` or `cancelled` for a dossier, `resolved` for feedback. The backlog counts
open cases per (kind, agency): all of them, the overdue ones (now > due_at) and the
near-due ones (due within a horizon, not yet overdue) — the "late / near-due /
not-due" split of provincial one-stop-shop dashboards (e.g. motcua.gialai.gov.vn).

Delivery is at least once and unordered, so a case keeps the (occurred_at, status)
of the event that set it, and an event changes it only when it is strictly later in
that order: older events and duplicates change nothing. Two events at the same
millisecond are ordered by status, final statuses last, so the outcome does not
depend on arrival order.

Forgetting a case the moment it closes would let an older, late event reopen it for
good. A closed case is therefore remembered for `closed_ttl_ms` (event time of the
closing event against the `now_ms` given to `expire`) and dropped after that;
`closed_ttl_ms=0` drops it at once.

Open cases are bounded too, or a lost closing event, a flood of made-up ids or
years of traffic would grow the book (and its changelog) without limit:

- an open case without an event for `open_ttl_ms` of event time (against the newest
  `occurred_at` the book has taken, never later than `now_ms`: one event dated far
  ahead does not expire every case) is forgotten at `expire`;
- when an agency has more than `max_open_per_agency` open cases in the book, its
  oldest by `occurred_at` of their latest event go, 1 % of the bound at once (so
  that a flood costs one scan per hundredth of the bound, not per event), ties
  broken by kind and id: the same input evicts the same cases.

Both are counted by reason (`take_evicted`: "expired", "cap"), and a forgotten case
is tombstoned in the changelog like a dropped closed one; an event for it later opens
it afresh.

State goes to a changelog (streams.worker.changelog) as one record per case:
key `"<kind>:<id>"`, value JSON `[agency, status, occurred_ms, due_ms]`, and None
(a tombstone) once the case is dropped. `take_dirty` gives what changed since the
previous call; `restore` takes the recovered records back, exactly.

`BacklogReporter` turns one book's backlog into `case_backlog` records for
`ioc.aggregates`, once per interval (docs/AGGREGATES.md, "Case backlog"). A book
holds the cases of one input partition (ingest keys them by case id), so its figures
are a disjoint part of each agency's backlog: the partition is part of the record's
group and identity, and an agency's backlog is the sum over partitions of the
records of one interval.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from models.derived import BACKLOG_AGGREGATE
from models.results import WindowResult
from models.timefmt import rfc3339_ms
from streams.core.sizing import kept

__all__ = ["DAY_MS", "FINAL", "Backlog", "BacklogReporter", "CaseBook"]

DAY_MS = 24 * 3600 * 1000
#: Defaults of the bounds on open cases (IOC_CASES__MAX_OPEN_PER_AGENCY, _OPEN_TTL_S).
MAX_OPEN_PER_AGENCY = 100_000
OPEN_TTL_MS = 400 * DAY_MS
_NEVER = -(1 << 62)

#: Statuses per kind, in the order that breaks ties between events of the same
#: millisecond (later wins); final statuses come last.
_ORDER: dict[str, tuple[str, ...]] = {
    "dossier": (
        "received",
        "in_progress",
        "supplement_requested",
        "resolved",
        "returned",
        "cancelled",
    ),
    "feedback": ("received", "assigned", "resolved"),
}
FINAL: dict[str, frozenset[str]] = {
    "dossier": frozenset({"resolved", "returned", "cancelled"}),
    "feedback": frozenset({"resolved"}),
}
_RANK: dict[str, dict[str, int]] = {
    kind: {status: rank for rank, status in enumerate(statuses)}
    for kind, statuses in _ORDER.items()
}
# One str object per status: cases share it instead of holding a copy each.
_STATUS: dict[str, str] = {status: status for statuses in _ORDER.values() for status in statuses}
_ID_FIELD = {"dossier": "dossier_id", "feedback": "feedback_id"}


@dataclass(frozen=True, slots=True)
class Backlog:
    """Open cases of one kind at one agency, at the `now_ms` they were counted."""

    kind: str
    agency: str
    open: int
    overdue: int  # now > due_at
    near_due: int  # now <= due_at <= now + near_due_ms


class _Case:
    # Slotted: 64 bytes a case, against ~100 for an object with a __dict__.
    __slots__ = ("agency", "due_ms", "occurred_ms", "status")

    def __init__(self, agency: str, status: str, occurred_ms: int, due_ms: int | None) -> None:
        self.agency = agency
        self.status = status
        self.occurred_ms = occurred_ms
        self.due_ms = due_ms


def _epoch_ms(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return rfc3339_ms(value)
        except ValueError:
            pass  # the message below says what is expected
    raise ValueError(f"{field}: expected an RFC 3339 time with offset or epoch ms (got {value!r})")


def _text(value: Any, field: str) -> str:
    # A non-string agency would break the sort in `backlog` long after the event was
    # taken; an id of another type would not survive the changelog as the same key.
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{field}: expected a non-empty string (got {value!r})")


class CaseBook:
    """The cases of one input partition: what is open, by whom, and since when."""

    def __init__(
        self,
        closed_ttl_ms: int = DAY_MS,
        *,
        max_open_per_agency: int = MAX_OPEN_PER_AGENCY,
        open_ttl_ms: int = OPEN_TTL_MS,
    ) -> None:
        if closed_ttl_ms < 0:
            raise ValueError(f"closed_ttl_ms must be >= 0 (got {closed_ttl_ms})")
        if max_open_per_agency < 1 or open_ttl_ms <= 0:
            raise ValueError("max_open_per_agency must be >= 1 and open_ttl_ms > 0")
        self.closed_ttl_ms = closed_ttl_ms
        self.max_open_per_agency = max_open_per_agency
        self.open_ttl_ms = open_ttl_ms
        self._cases: dict[str, dict[str, _Case]] = {kind: {} for kind in _ORDER}
        self._open = 0
        self._dirty: dict[tuple[str, str], None] = {}  # an ordered set
        self._agencies: dict[str, str] = {}  # one str object per agency code
        # agency → kind → ids of its open cases: what the cap counts and evicts from.
        self._open_ids: dict[str, dict[str, set[str]]] = {}
        self._newest_ms = _NEVER  # the newest occurred_at taken: event time's "now"
        self._evicted = {"expired": 0, "cap": 0}

    def __len__(self) -> int:
        """The number of open cases."""
        return self._open

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Take one validated service event; True if the book changed.

        Raises ValueError (KeyError for a missing field, TypeError for a value of the
        wrong shape) on an event that is not a validated service event: ingest never
        writes one, so the caller dead-letters it rather than stop.
        """
        kind = event["kind"]
        ranks = _RANK.get(kind)
        if ranks is None:
            raise ValueError(f"kind: expected dossier or feedback (got {kind!r})")
        status = event["status"]
        rank = ranks.get(status)
        if rank is None:
            raise ValueError(f"status: {status!r} is not a {kind} status")
        case_id = _text(event[_ID_FIELD[kind]], _ID_FIELD[kind])
        occurred_ms = _epoch_ms(event["occurred_at"], "occurred_at")
        cases = self._cases[kind]
        current = cases.get(case_id)
        if current is not None and (occurred_ms, rank) <= (
            current.occurred_ms,
            ranks[current.status],
        ):
            return False  # older than what set the case, or the same event again
        final = status in FINAL[kind]
        was_open = current is not None and current.status not in FINAL[kind]
        drop = final and self.closed_ttl_ms == 0
        if drop and current is None:
            return False
        if not drop:
            due = event.get("due_at")
            if due is None and not final:
                raise ValueError(f"due_at: required for an open {kind} (status {status!r})")
            due_ms = None if due is None else _epoch_ms(due, "due_at")
            agency = _text(event["agency"], "agency")
            agency = self._agencies.setdefault(agency, agency)
        # The event is valid: only from here on does the book change.
        if was_open:
            assert current is not None
            self._open_ids[current.agency][kind].discard(case_id)
        if occurred_ms > self._newest_ms:
            self._newest_ms = occurred_ms
        if drop:
            del cases[case_id]
        elif current is None:
            cases[case_id] = _Case(agency, _STATUS[status], occurred_ms, due_ms)
        else:
            current.agency, current.status = agency, _STATUS[status]
            current.occurred_ms, current.due_ms = occurred_ms, due_ms
        self._open += int(not final) - int(was_open)
        self._dirty[kind, case_id] = None
        if not final:
            ids = self._ids(agency)
            ids[kind].add(case_id)
            if len(ids["dossier"]) + len(ids["feedback"]) > self.max_open_per_agency:
                self._evict_oldest(ids)
        return True

    def _ids(self, agency: str) -> dict[str, set[str]]:
        ids = self._open_ids.get(agency)
        if ids is None:
            ids = self._open_ids[agency] = {kind: set() for kind in _ORDER}
        return ids

    def _forget_open(self, kind: str, case_id: str, reason: str) -> None:
        case = self._cases[kind].pop(case_id)
        self._open_ids[case.agency][kind].discard(case_id)
        self._open -= 1
        self._dirty[kind, case_id] = None
        self._evicted[reason] += 1

    def _evict_oldest(self, ids: dict[str, set[str]]) -> None:
        """An agency past the cap: its oldest open cases go, 1 % of the cap at once."""
        cases = self._cases
        candidates = (
            (cases[kind][case_id].occurred_ms, kind, case_id)
            for kind, open_ids in ids.items()
            for case_id in open_ids
        )
        over = sum(map(len, ids.values())) - self.max_open_per_agency
        for _, kind, case_id in heapq.nsmallest(
            max(over, self.max_open_per_agency // 100), candidates
        ):
            self._forget_open(kind, case_id, "cap")

    def take_evicted(self) -> dict[str, int]:
        """Open cases forgotten since the last call, by reason ("expired", "cap")."""
        evicted, self._evicted = self._evicted, {"expired": 0, "cap": 0}
        return evicted

    def expire(self, now_ms: int) -> int:
        """Drop closed cases whose closing event is `closed_ttl_ms` older than now_ms,
        and open ones without an event for `open_ttl_ms` of event time.

        Call it from the stage's periodic tick; returns how many closed cases were
        dropped (open ones are counted in `take_evicted`).
        """
        horizon = now_ms - self.closed_ttl_ms
        open_horizon = min(self._newest_ms, now_ms) - self.open_ttl_ms
        dropped = 0
        for kind, cases in self._cases.items():
            final = FINAL[kind]
            expired = []
            stale = []
            for case_id, case in cases.items():
                if case.status in final:
                    if case.occurred_ms < horizon:
                        expired.append(case_id)
                elif case.occurred_ms < open_horizon:
                    stale.append(case_id)
            for case_id in expired:
                del cases[case_id]
                self._dirty[kind, case_id] = None
            for case_id in stale:
                self._forget_open(kind, case_id, "expired")
            dropped += len(expired)
        return dropped

    def backlog(self, now_ms: int, near_due_ms: int = DAY_MS) -> list[Backlog]:
        """Open, overdue and near-due counts per (kind, agency) with open cases, sorted."""
        counts: dict[tuple[str, str], list[int]] = {}
        soon = now_ms + near_due_ms
        for kind, cases in self._cases.items():
            final = FINAL[kind]
            for case in cases.values():
                if case.status in final:
                    continue
                row = counts.get((kind, case.agency))
                if row is None:
                    row = counts[kind, case.agency] = [0, 0, 0]
                row[0] += 1
                due = case.due_ms
                if due is None:
                    continue  # not possible for an open case, kept for the type checker
                if now_ms > due:
                    row[1] += 1
                elif due <= soon:
                    row[2] += 1
        return [Backlog(kind, agency, *row) for (kind, agency), row in sorted(counts.items())]

    def take_dirty(self) -> list[tuple[str, bytes | None]]:
        """Changelog records for the cases changed since the last call; None = dropped."""
        records: list[tuple[str, bytes | None]] = []
        for kind, case_id in self._dirty:
            case = self._cases[kind].get(case_id)
            payload = (
                None
                if case is None
                else kept(orjson.dumps([case.agency, case.status, case.occurred_ms, case.due_ms]))
            )
            records.append((f"{kind}:{case_id}", payload))
        self._dirty.clear()
        return records

    def restore(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        """Load changelog records (as from `take_dirty` or streams.worker.changelog.replay).

        Records overwrite what the book holds for their case; None drops it. Restored
        cases are not dirty.
        """
        for key, payload in items:
            kind, _, case_id = key.partition(":")
            if kind not in self._cases:
                raise ValueError(f"changelog key {key!r} does not start with dossier: or feedback:")
            cases = self._cases[kind]
            old = cases.pop(case_id, None)
            if old is not None and old.status not in FINAL[kind]:
                self._open -= 1
                self._open_ids[old.agency][kind].discard(case_id)
            if payload is None:
                continue
            agency, status, occurred_ms, due_ms = orjson.loads(payload)
            if status not in _RANK[kind]:
                raise ValueError(f"changelog {key!r}: {status!r} is not a {kind} status")
            agency = self._agencies.setdefault(agency, agency)
            cases[case_id] = _Case(agency, _STATUS[status], occurred_ms, due_ms)
            self._newest_ms = max(self._newest_ms, occurred_ms)
            if status not in FINAL[kind]:
                self._open += 1
                self._ids(agency)[kind].add(case_id)


class BacklogReporter:
    """The `case_backlog` records of one input partition's book, once per interval.

    Intervals are `every_ms` long and aligned to the epoch; a report is stamped with
    its interval's start `at` (window_start = window_end = at) and counts against
    `now = at`, so reporting the same book again in the same interval (a retry, or a
    new owner after a rebalance) gives the same identity and overwrites.

    A group (kind, agency) reported last time that has no open case now is reported
    once more with zeros, so that a consumer that keeps the last value per series
    (a Prometheus-style gauge) does not keep showing a backlog that is gone. That
    memory is not saved: after a restart or a handover the first report has no zero
    rows for groups that closed in between; sums per interval are right regardless.
    """

    def __init__(self, partition: int, every_ms: int, near_due_ms: int = DAY_MS) -> None:
        if every_ms <= 0:
            raise ValueError(f"every_ms must be > 0 (got {every_ms})")
        self.partition = partition
        self.every_ms = every_ms
        self.near_due_ms = near_due_ms
        self._last: int | None = None  # start of the interval last reported
        self._groups: set[tuple[str, str]] = set()  # (kind, agency) reported last time

    def due(self, now_ms: int) -> bool:
        """Whether the interval of now_ms has not been reported yet."""
        return self._last is None or now_ms - now_ms % self.every_ms > self._last

    def report(self, book: CaseBook, now_ms: int) -> list[WindowResult]:
        """The records for the interval of now_ms; [] if it was reported already."""
        if not self.due(now_ms):
            return []
        at = now_ms - now_ms % self.every_ms
        rows = book.backlog(at, self.near_due_ms)
        groups = {(row.kind, row.agency) for row in rows}
        gone = [Backlog(kind, agency, 0, 0, 0) for kind, agency in sorted(self._groups - groups)]
        self._last, self._groups = at, groups
        return [self._result(row, at) for row in [*rows, *gone]]

    def _result(self, row: Backlog, at: int) -> WindowResult:
        return WindowResult(
            aggregate=BACKLOG_AGGREGATE,
            family="services",
            group={"agency": row.agency, "kind": row.kind, "partition": self.partition},
            window_start=at,
            window_end=at,
            statistics={"open": row.open, "overdue": row.overdue, "near_due": row.near_due},
            count=row.open,
            final=True,
        )
