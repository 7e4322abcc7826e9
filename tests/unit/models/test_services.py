from datetime import UTC, datetime

import pytest

from models import InvalidEvent
from models.services import DossierEvent, FeedbackEvent, entity_key, parse
from tests.conftest import dossier


def rejection(obj: object, context: dict) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse(obj, context)
    return caught.value


def test_contract_example(context):
    event = parse(dossier(), context)
    assert isinstance(event, DossierEvent)
    assert event.on_time is True
    assert event.due_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert entity_key(event) == "000.00.17.H23-261126-0042"


def test_late_resolution_is_not_on_time(context):
    event = parse(dossier(due_at="2026-11-25T17:00:00+07:00"), context)
    assert event.on_time is False


def test_resolved_without_resolved_at_uses_occurred_at(context):
    event = parse(dossier(resolved_at=None), context)
    assert event.resolved_at == event.occurred_at


def test_open_case_has_no_on_time(context):
    assert parse(dossier(status="in_progress", resolved_at=None), context).on_time is None


def test_feedback(context):
    event = parse(
        {
            "kind": "feedback",
            "event_id": "f-1",
            "feedback_id": "PA-2026-001",
            "agency": "UBND-TPHD",
            "status": "resolved",
            "satisfied": False,
            "occurred_at": "2026-11-26T09:00:00+07:00",
            "due_at": "2026-11-30T17:00:00+07:00",
        },
        context,
    )
    assert isinstance(event, FeedbackEvent) and event.satisfied is False
    assert entity_key(event) == "PA-2026-001"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "permit"}, "kind: unknown kind 'permit'"),
        ({"kind": None}, "kind: field required"),
        ({"event_id": None}, "event_id: field required"),
        ({"agency": None}, "agency: field required"),
        ({"dossier_id": None}, "dossier_id: field required"),
        ({"occurred_at": None}, "occurred_at: field required"),
        ({"status": "done"}, "status: input should be"),
        ({"due_at": None}, "due_at: field required once the case is received"),
        ({"channel": "fax"}, "channel: input should be"),
        ({"fee_vnd": -1}, "fee_vnd: input should be greater than or equal to 0"),
        ({"fee_vnd": "50000"}, "fee_vnd: input should be a valid integer"),
        ({"fee_vnd": 500.5}, "fee_vnd: input should be a valid integer"),
        ({"paid_online": "yes"}, "paid_online: input should be a valid boolean"),
        ({"occurred_at": "2026-11-27T11:20:00+07:00"}, "occurred_at: event time"),
    ],
)
def test_rejections_name_the_field(context, change, expected):
    assert expected in rejection(dossier(**change), context).reason


def test_cancelled_dossier_needs_no_due_date(context):
    assert parse(dossier(status="cancelled", due_at=None, resolved_at=None), context)
