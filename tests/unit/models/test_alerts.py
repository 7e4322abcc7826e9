"""The ioc.alerts record: fingerprint, identity, JSON both ways."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from models.alerts import Alert, Evidence, fingerprint, label_value

LABELS = {"alertname": "brute_force", "severity": "warning", "source.ip": "203.0.113.7"}


def alert(**changes: object) -> Alert:
    fields: dict[str, object] = {
        "fingerprint": fingerprint(LABELS),
        "state": "firing",
        "starts_at_ms": 1_795_662_000_000,
        "ends_at_ms": None,
        "labels": LABELS,
        "annotations": {"summary_vi": "Dò mật khẩu", "summary_en": "Brute force", "value": "12"},
        "kind": "count",
        "evidence": Evidence(value=12, threshold=10, event_ids=("e-1", "e-2"), count=12),
    }
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def test_fingerprint_is_sha256_of_sorted_label_lines() -> None:
    text = "alertname=brute_force\nseverity=warning\nsource.ip=203.0.113.7\n"
    assert fingerprint(LABELS) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_fingerprint_ignores_label_order() -> None:
    assert fingerprint(dict(reversed(LABELS.items()))) == fingerprint(LABELS)
    assert fingerprint(LABELS | {"severity": "critical"}) != fingerprint(LABELS)


def test_a_value_cannot_forge_another_label_set() -> None:
    forged = {"alertname": "x", "user": "bob\nseverity=critical"}
    real = {"alertname": "x", "severity": "critical", "user": "bob"}
    assert fingerprint(forged) != fingerprint(real)


def test_label_values_are_text() -> None:
    assert [label_value(v) for v in ("a", 17, 1.5, True, None)] == [
        "a", "17", "1.5", "true", "null",
    ]  # fmt: skip


def test_identity() -> None:
    firing = alert()
    assert firing.identity == f"{fingerprint(LABELS)}|1795662000000|firing"
    assert alert(state="resolved").identity.endswith("|resolved")
    assert firing.rule == "brute_force"


def test_json_has_rfc3339_and_ms_forms() -> None:
    record = orjson.loads(alert(state="resolved", ends_at_ms=1_795_662_300_500).to_json())
    assert record["identity"] == f"{fingerprint(LABELS)}|1795662000000|resolved"
    assert record["starts_at"] == "2026-11-26T03:00:00Z"
    assert record["ends_at"] == "2026-11-26T03:05:00.500Z"
    assert record["ends_at_ms"] == 1_795_662_300_500
    assert record["evidence"] == {
        "value": 12, "threshold": 10, "window_start": None, "window_end": None,
        "event_ids": ["e-1", "e-2"], "count": 12,
    }  # fmt: skip
    assert orjson.loads(alert().to_json())["ends_at"] is None


@pytest.mark.parametrize("state", ["firing", "resolved"])
def test_round_trip(state: str) -> None:
    original = alert(state=state, ends_at_ms=None if state == "firing" else 1, flapping=True)
    assert Alert.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": "pending"}, "state"),
        ({"starts_at_ms": "soon"}, "starts_at_ms"),
        ({"starts_at_ms": True}, "starts_at_ms"),
        ({"labels": {"a": 1}}, "labels"),
        ({"evidence": {"event_ids": "e-1"}}, "evidence.event_ids"),
    ],
)
def test_from_json_rejects_bad_records(change: dict[str, object], message: str) -> None:
    record = orjson.loads(alert().to_json()) | change
    with pytest.raises(ValueError, match=message):
        Alert.from_json(orjson.dumps(record))


def test_from_json_names_a_missing_field() -> None:
    record = orjson.loads(alert().to_json())
    del record["fingerprint"]
    with pytest.raises(ValueError, match="missing fingerprint"):
        Alert.from_json(orjson.dumps(record))
    with pytest.raises(ValueError, match="JSON object"):
        Alert.from_json(b"[]")
