"""Public-service events: dossiers and citizen feedback on the one-stop-shop system.

A desk keeps the open cases: a backlog received over the last days (so that some are
already past due and resolve late) and the cases received during the run. Each event
moves one case one step; a case's clock (received_at, due_at) never changes.
Dossiers received during the run are only taken to in_progress in its first hour:
real processing takes days.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from streams.devtools.simulate.climate import iso_local
from streams.devtools.simulate.incidents import Incident
from streams.devtools.simulate.scenario import AGENCIES, DISTRICTS, PROCEDURES, VN_TZ, Agency

__all__ = ["ServiceDesk", "due_date"]

BACKLOG: Final = 300  # open dossiers the desk keeps at least
FEEDBACK_SHARE: Final = 0.15
_AGENCY_BY_CODE: Final = {agency.code: agency for agency in AGENCIES}


def due_date(received: datetime, working_days: int) -> datetime:
    """17:00 local on the `working_days`-th working day after `received` (Mon–Fri)."""
    day: date = received.astimezone(VN_TZ).date()
    while working_days > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            working_days -= 1
    return datetime(day.year, day.month, day.day, 17, 0, tzinfo=VN_TZ)


@dataclass(slots=True)
class _Case:
    kind: str  # dossier | feedback
    case_id: str
    agency: Agency
    sector: str
    district: str
    received_at: datetime
    due_at: datetime
    status: str
    procedure_code: str = ""
    channel: str = "online"
    fee_vnd: int = 0
    paid_online: bool = False


class ServiceDesk:
    def __init__(self, start: datetime, rng: random.Random, new_id: Callable[[], str]) -> None:
        self._start = start
        self._rng = rng
        self._new_id = new_id
        self._weights = [agency.weight for agency in AGENCIES]
        self._sequence: dict[tuple[str, date], int] = {}  # (id prefix, day) → last number
        self._dossiers: list[_Case] = []
        self._feedback: list[_Case] = []
        for _ in range(BACKLOG):
            self._dossiers.append(self._backlog_case("dossier", start))
        for _ in range(BACKLOG // 5):
            self._feedback.append(self._backlog_case("feedback", start))

    def _case_id(self, kind: str, agency: Agency, received: datetime) -> str:
        day = received.astimezone(VN_TZ).date()
        prefix = agency.unit if kind == "dossier" else f"PAKN-{agency.code}"
        # Each agency's day starts at a plausible count, not at 1.
        number = self._sequence.get((prefix, day), self._rng.randint(1, 40)) + 1
        self._sequence[prefix, day] = number
        return f"{prefix}-{day:%d%m%y}-{number:04d}"

    def _new_case(
        self,
        kind: str,
        received: datetime,
        agency: Agency | None = None,
        case_id: str | None = None,
    ) -> _Case:
        rng = self._rng
        agency = agency or rng.choices(AGENCIES, self._weights)[0]
        sector = rng.choice(agency.sectors)
        # Departments serve the whole province; a district committee its own district.
        district = agency.district if agency.code.startswith("UBND") else rng.choice(DISTRICTS).name
        case_id = case_id or self._case_id(kind, agency, received)
        if kind == "feedback":
            return _Case(
                kind,
                case_id,
                agency,
                sector,
                district,
                received,
                due_date(received, 10),
                "received",
            )
        procedure = rng.choice(PROCEDURES[sector])
        channel = rng.choices(("online", "counter", "postal"), (0.7, 0.25, 0.05))[0]
        paid_online = procedure.fee_vnd > 0 and rng.random() < (0.9 if channel == "online" else 0.1)
        return _Case(
            kind,
            case_id,
            agency,
            sector,
            district,
            received,
            due_date(received, procedure.days),
            "received",
            procedure.code,
            channel,
            procedure.fee_vnd,
            paid_online,
        )

    def _backlog_case(self, kind: str, now: datetime) -> _Case:
        case = self._new_case(kind, now - timedelta(days=self._rng.uniform(0.2, 12.0)))
        case.status = "in_progress" if kind == "dossier" else "assigned"
        return case

    def _event(self, case: _Case, now: datetime) -> dict[str, Any]:
        event: dict[str, Any] = {
            "kind": case.kind,
            "event_id": self._new_id(),
            f"{case.kind}_id": case.case_id,
            "agency": case.agency.code,
            "sector": case.sector,
            "district": case.district,
            "status": case.status,
            "occurred_at": iso_local(now),
            "received_at": iso_local(case.received_at, "seconds"),
            "due_at": iso_local(case.due_at, "seconds"),
        }
        if case.status == "resolved":
            event["resolved_at"] = event["occurred_at"]
        if case.kind == "dossier":
            event |= {
                "procedure_code": case.procedure_code,
                "channel": case.channel,
                "fee_vnd": case.fee_vnd,
                "paid_online": case.paid_online,
            }
        elif case.status == "resolved":
            event["satisfied"] = self._rng.random() < 0.8
        return event

    def _advance(self, cases: list[_Case], now: datetime) -> _Case | None:
        rng = self._rng
        for _ in range(5):
            index = rng.randrange(len(cases))
            case = cases[index]
            if case.due_at < now:
                # Closed late at its next step: only the overdue_dossiers incident leaves
                # cases open past due, so that rule has a clean ground truth.
                case.status = "resolved"
            elif case.status in ("received", "supplement_requested"):
                case.status = "in_progress" if case.kind == "dossier" else "assigned"
            elif now - case.received_at < timedelta(hours=1):
                continue  # received during the run: too fresh to decide
            elif case.kind == "feedback":
                case.status = "resolved"
            else:
                case.status = rng.choices(
                    ("resolved", "supplement_requested", "returned", "in_progress"),
                    (0.72, 0.15, 0.05, 0.08),
                )[0]
            if case.status in ("resolved", "returned"):
                cases[index] = cases[-1]
                cases.pop()
            return case
        return None

    def background(self, at: float) -> tuple[bytes | None, dict[str, Any]]:
        now = self._start + timedelta(seconds=at)
        kind = "feedback" if self._rng.random() < FEEDBACK_SHARE else "dossier"
        cases = self._feedback if kind == "feedback" else self._dossiers
        while len(cases) < (BACKLOG if kind == "dossier" else BACKLOG // 5):
            cases.append(self._backlog_case(kind, now))
        case = self._advance(cases, now) if self._rng.random() < 0.7 else None
        if case is None:
            case = self._new_case(kind, now)
            cases.append(case)
        return case.case_id.encode(), self._event(case, now)

    def resolve_overdue(self, at: float) -> list[tuple[bytes, dict[str, Any]]]:
        """Resolve, late, every open case already past due at `at`: (key, event) each."""
        # In the due dates' own time zone: aware datetimes that share their tzinfo compare
        # without a UTC conversion each, which made this scan the backfill's slowest part.
        now = (self._start + timedelta(seconds=at)).astimezone(VN_TZ)
        events = []
        for cases in (self._dossiers, self._feedback):
            overdue = [case for case in cases if case.due_at < now]
            if overdue:
                cases[:] = [case for case in cases if case.due_at >= now]
            for case in overdue:
                case.status = "resolved"
                events.append((case.case_id.encode(), self._event(case, now)))
        return events

    def valid_event(self, at: float) -> dict[str, Any]:
        """A dossier just received: the raw material of malformed messages."""
        now = self._start + timedelta(seconds=at)
        return self._event(self._new_case("dossier", now), now)

    def incident_events(self, incident: Incident) -> list[tuple[float, bytes | None, Any]]:
        if incident.kind != "overdue_dossiers":
            return []
        rng = self._rng
        agency = _AGENCY_BY_CODE[incident.entity]
        stuck = []
        for _ in range(incident.details["dossiers"]):
            # At most 20 working days to process: received 30+ days ago is past due.
            received = incident.starts_at - timedelta(days=rng.uniform(30, 45))
            case = self._new_case("dossier", received, agency)
            case.status = "in_progress"
            stuck.append(case)
        begin = (incident.starts_at - self._start).total_seconds()
        step = (incident.ends_at - incident.starts_at).total_seconds() / incident.details["events"]
        events: list[tuple[float, bytes | None, Any]] = []
        for i in range(incident.details["events"]):
            at = begin + (i + rng.uniform(0.2, 0.8)) * step
            case = stuck[i % len(stuck)]
            # Reminders and requests for documents, never a resolution.
            case.status = rng.choice(("in_progress", "supplement_requested"))
            events.append(
                (at, case.case_id.encode(), self._event(case, self._start + timedelta(seconds=at)))
            )
        return events
