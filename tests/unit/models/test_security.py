import pytest

from models import InvalidEvent
from models.security import SecurityEvent, entity_key, nest_dotted_keys, parse
from tests.conftest import auth_failure


def rejection(obj: object, context: dict) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse(obj, context)
    return caught.value


def test_contract_example(context):
    event = parse(auth_failure(), context)
    assert isinstance(event, SecurityEvent)
    assert event.event.category == ["authentication"] and event.event.outcome == "failure"
    assert entity_key(event) == "203.0.113.7"


def test_dotted_keys_equal_nested(context):
    dotted = {
        "@timestamp": "2026-11-26T03:01:02Z",
        "event.category": ["authentication"],
        "event.outcome": "failure",
        "event.action": "ssh_login",
        "source.ip": "203.0.113.7",
        "destination.ip": "10.20.1.5",
        "destination.port": 22,
        "user.name": "admin",
        "host.name": "dvc-portal-01",
        "organization.name": "SO-TTTT",
        "observer.type": "ids",
    }
    assert parse(dotted, context) == parse(auth_failure(), context)


def test_mixed_dotted_and_nested_merge(context):
    event = parse(
        {
            "@timestamp": "2026-11-26T03:01:02Z",
            "event": {"category": "network"},
            "event.outcome": "success",
            "file.hash.sha256": "AB" * 32,
        },
        context,
    )
    assert event.event.category == ["network"] and event.event.outcome == "success"
    assert event.file is not None and event.file.hash is not None
    assert event.file.hash.sha256 == "ab" * 32


def test_dotted_key_conflicting_with_a_value():
    with pytest.raises(InvalidEvent, match=r"source\.ip: conflicts with the non-object field"):
        nest_dotted_keys({"source": "x", "source.ip": "1.2.3.4"})


def test_ipv6_is_normalised(context):
    event = parse(auth_failure(source={"ip": "2001:DB8:0:0::1"}), context)
    assert entity_key(event) == "2001:db8::1"


def test_key_falls_back_to_host_name(context):
    event = parse(auth_failure(source=None), context)
    assert entity_key(event) == "dvc-portal-01"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"@timestamp": None}, "@timestamp: field required"),
        ({"event": {"outcome": "failure"}}, "event.category: field required"),
        ({"event": {"category": []}}, "event.category: value should have at least 1 item"),
        ({"event": {"category": ["auth"]}}, "event.category.0: input should be"),
        ({"event": {"category": ["web"], "outcome": "ok"}}, "event.outcome: input should be"),
        ({"source": {"ip": "999.1.1.1"}}, "source.ip: '999.1.1.1' is not a valid IPv4 or IPv6"),
        (
            {"destination": {"ip": "10.0.0.1", "port": 70000}},
            "destination.port: input should be less than or equal to 65535",
        ),
        ({"destination": {"port": "22"}}, "destination.port: input should be a valid integer"),
        ({"file": {"hash": {"sha256": "abc"}}}, "file.hash.sha256: not a SHA-256 hex digest"),
        ({"@timestamp": "2026-11-26T06:00:00Z"}, "@timestamp: event time"),
    ],
)
def test_rejections_name_the_field(context, change, expected):
    event = auth_failure()
    for key, value in change.items():
        if value is None:
            event.pop(key)
        else:
            event[key] = value
    assert expected in rejection(event, context).reason
