"""Public-service events from the province's one-stop-shop system (docs/EVENTS.md).

Two kinds share the case clock `received_at → due_at → resolved_at`; a case is
on time when `resolved_at <= due_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, computed_field, model_validator

from models.common import EventTime, NonEmptyStr, Timestamp, event_config
from models.validation import validate_tagged

__all__ = [
    "MODELS",
    "DossierEvent",
    "FeedbackEvent",
    "ServiceEvent",
    "entity_key",
    "event_id",
    "parse",
]

DossierStatus = Literal[
    "received", "in_progress", "supplement_requested", "resolved", "returned", "cancelled"
]
FeedbackStatus = Literal["received", "assigned", "resolved"]


class _Case(BaseModel):
    model_config = event_config

    event_id: NonEmptyStr
    occurred_at: EventTime
    agency: NonEmptyStr
    received_at: Timestamp | None = None
    due_at: Timestamp | None = None
    resolved_at: Timestamp | None = None
    district: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolved_at_defaults_to_occurred_at(cls, data: Any) -> Any:
        # A "resolved" status event is the resolution itself when the producer
        # leaves resolved_at out.
        if (
            isinstance(data, dict)
            and data.get("status") == "resolved"
            and (data.get("resolved_at") is None)
        ):
            return {**data, "resolved_at": data.get("occurred_at")}
        return data

    @model_validator(mode="after")
    def _due_once_received(self) -> _Case:
        if self.due_at is None and getattr(self, "status", None) != "cancelled":
            raise ValueError("due_at: field required once the case is received")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def on_time(self) -> bool | None:
        """Resolved no later than due; None while unresolved."""
        if self.resolved_at is None or self.due_at is None:
            return None
        return self.resolved_at <= self.due_at

    @property
    def event_time(self) -> datetime:
        return self.occurred_at


class DossierEvent(_Case):
    kind: Literal["dossier"]
    dossier_id: NonEmptyStr
    status: DossierStatus
    procedure_code: str | None = None
    sector: str | None = None
    channel: Literal["online", "counter", "postal"] | None = None
    paid_online: Annotated[bool, Field(strict=True)] | None = None
    fee_vnd: Annotated[int, Field(strict=True, ge=0, le=10**13)] | None = None


class FeedbackEvent(_Case):
    kind: Literal["feedback"]
    feedback_id: NonEmptyStr
    status: FeedbackStatus
    sector: str | None = None
    satisfied: Annotated[bool, Field(strict=True)] | None = None


ServiceEvent = DossierEvent | FeedbackEvent
MODELS: dict[str, type[DossierEvent] | type[FeedbackEvent]] = {
    "dossier": DossierEvent,
    "feedback": FeedbackEvent,
}


def parse(obj: Any, context: dict[str, Any]) -> ServiceEvent:
    return validate_tagged(obj, "kind", MODELS, context)


def entity_key(event: ServiceEvent) -> str:
    return event.dossier_id if isinstance(event, DossierEvent) else event.feedback_id


def event_id(event: ServiceEvent) -> str:
    return event.event_id
