"""Ingest's limits: whatever a producer sends, ingest answers with accepted events and
rejections that each fit in one Kafka record, and never raises."""

import hashlib
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.deadletter import DeadLetter
from streams.core.ingest import (
    KEY_KEPT_BYTES,
    RAW_KEPT_BYTES,
    Rejected,
    dead_letter,
    dead_letter_key,
    process_message,
)
from streams.worker.settings import IngestSettings
from tests.conftest import NOW, air_quality, auth_failure, dossier

INGEST = IngestSettings()
RECORD_LIMIT = 1_000_000


def only_rejection(family: str, raw: bytes) -> Rejected:
    result = process_message(family, raw, INGEST, NOW)
    assert result.accepted == []
    [rejected] = result.rejected
    return rejected


def nested(depth: int, inner: object = 0) -> object:
    for _ in range(depth):
        inner = {"x": inner}
    return inner


def test_an_extra_field_nested_too_deep_is_too_deep_with_its_path():
    event = air_quality(extra=nested(256))
    rejected = only_rejection("city", json.dumps(event).encode())  # orjson stops at 255
    assert rejected.error == "too_deep"
    assert rejected.reason.startswith("extra.x.x")
    assert "nested more than 32 levels deep" in rejected.reason


def test_an_array_nested_256_deep_is_rejected_not_raised():
    raw = b"[" * 256 + b"]" * 256
    rejected = only_rejection("city", raw)
    assert rejected.error == "too_deep"
    assert rejected.element == 0


def test_nesting_within_the_limit_is_kept():
    event = air_quality(extra=nested(20))
    result = process_message("city", orjson.dumps(event), INGEST, NOW)
    assert result.rejected == []


def test_an_array_over_max_elements_is_rejected_whole_with_its_count():
    raw = b"[" + b",".join([b"0"] * 499_000) + b"]"
    rejected = only_rejection("city", raw)
    assert rejected.error == "too_large"
    assert rejected.element is None
    assert "499000 elements; the limit is 10000" in rejected.reason


def test_an_event_too_large_to_pass_on_is_too_large():
    event = air_quality(notes="n" * 300_000)
    rejected = only_rejection("city", orjson.dumps(event))
    assert rejected.error == "too_large"
    assert "the limit is 262144" in rejected.reason


def test_identifiers_are_short_and_printable():
    long = only_rejection("city", orjson.dumps(air_quality(refDevice="d" * 530_000)))
    assert long.error == "schema" and long.field == "refDevice"
    assert "at most 256 characters" in long.reason
    assert len(long.reason) < 200
    bidi = only_rejection("city", orjson.dumps(air_quality(refDevice="HD\u202eAQ")))
    assert bidi.field == "refDevice" and "U+202E" in bidi.reason
    nul = only_rejection("services", orjson.dumps(dossier(agency="So\x00TNMT")))
    assert nul.field == "agency" and "U+0000" in nul.reason


@pytest.mark.parametrize(
    "written",
    [
        "2026-W48-4T10:00+07:00",
        "20261126T100000+0700",
        "2026-11-26T10:00+07:00",
        "2026-11-26 10:00:00+07:00",
        "2026-330T10:00:00+07:00",
        "2026-11-26T10:00:00.1234567890+07:00",
    ],
)
def test_times_must_be_rfc3339_as_written(written):
    rejected = only_rejection("city", orjson.dumps(air_quality(dateObserved=written)))
    assert rejected.field == "dateObserved"
    assert "not an RFC 3339 time" in rejected.reason


def test_a_huge_time_is_quoted_shortened():
    rejected = only_rejection("city", orjson.dumps(air_quality(dateObserved="9" * 450_000)))
    assert rejected.field == "dateObserved"
    assert len(rejected.reason) < 300
    assert "(450002 characters)" in rejected.reason


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("0001-01-01T00:00:00Z", "outside the years 2000–2199"),
        ("9999-12-31T23:59:59Z", "outside the years 2000–2199"),
        ("0001-01-01T00:00:00+07:00", "not a valid date and time"),
        ("2026-02-30T00:00:00Z", "not a valid date and time"),
        (1_764_000_000, "looks like seconds"),
        (253_402_300_799_000, "out of range"),
    ],
)
def test_times_outside_what_the_centre_can_mean_are_rejected(written, why):
    rejected = only_rejection("services", orjson.dumps(dossier(due_at=written)))
    assert rejected.error == "schema"
    assert why in rejected.reason


def test_event_times_older_than_max_past_are_rejected():
    rejected = only_rejection(
        "security", orjson.dumps(auth_failure(**{"@timestamp": "2024-01-01T00:00:00Z"}))
    )
    assert "in the past (IOC_INGEST__MAX_PAST_S)" in rejected.reason
    recent = auth_failure(**{"@timestamp": "2026-01-01T00:00:00Z"})
    assert process_message("security", orjson.dumps(recent), INGEST, NOW).accepted


@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [
        ("pm25", 1e308, "0–5000 µg/m³"),
        ("temperature", -300.0, "-90–100 °C"),
        ("relativeHumidity", 7.1, "ratio between 0 and 1"),
    ],
)
def test_readings_beyond_their_physical_range_are_rejected_with_the_bound(field, value, bound):
    rejected = only_rejection("city", orjson.dumps(air_quality(**{field: value})))
    assert rejected.field == field
    assert bound in rejected.reason


def test_a_dead_letter_keeps_a_bounded_prefix_and_says_so():
    raw = b"{" + b"x" * 790_000
    rejected = only_rejection("city", raw)
    letter = dead_letter(
        rejected, stage="ingest", family="city", topic="ioc.city.observations",
        partition=0, offset=7, key=b"\xff" * 300_000, now=NOW,
    )  # fmt: skip
    assert len(letter) < 64 * 1024
    record = DeadLetter.model_validate_json(letter)
    assert record.raw_truncated and record.raw_bytes == len(raw)
    assert record.original() == raw[:RAW_KEPT_BYTES]
    assert record.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert record.key_truncated and record.key is not None
    key = dead_letter_key(b"\xff" * 300_000)
    assert key is not None and len(key) == KEY_KEPT_BYTES


def test_a_small_dead_letter_keeps_everything():
    rejected = only_rejection("city", b"{not json")
    letter = dead_letter(
        rejected, stage="ingest", family="city", topic="t", partition=0, offset=1,
        key=b"k", now=NOW,
    )  # fmt: skip
    record = DeadLetter.model_validate_json(letter)
    assert record.original() == b"{not json"
    assert (record.raw_truncated, record.raw_bytes, record.raw_sha256) == (False, 9, None)
    assert (record.key, record.key_truncated) == ("k", False)


# -- whatever arrives, ingest answers within the record limit -------------------------

hostile_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.sampled_from(["", "\x00", "\u202e", "2026-W48-4T10:00+07:00", "9999-12-31T23:59:59Z"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=20,
)
bases = st.sampled_from(
    [("city", air_quality()), ("services", dossier()), ("security", auth_failure())]
)


@settings(max_examples=400, deadline=None)
@given(bases, st.data())
def test_a_valid_event_with_any_field_replaced_is_accepted_or_rejected(base, data):
    family, event = base
    name = data.draw(st.sampled_from(sorted(event)))
    value = data.draw(hostile_values)
    mutated = {**event, name: value}
    try:
        raw = orjson.dumps(mutated)
    except (orjson.JSONEncodeError, TypeError):
        return  # not JSON (NaN, huge ints are written by no JSON encoder): nothing to send
    result = process_message(family, raw, INGEST, NOW)
    assert len(result.accepted) + len(result.rejected) == 1
    for rejected in result.rejected:
        assert rejected.error in ("json", "schema", "too_large", "too_deep")
        letter = dead_letter(
            rejected, stage="ingest", family=family, topic="t", partition=0, offset=0,
            key=None, now=NOW,
        )  # fmt: skip
        assert len(letter) < RECORD_LIMIT
    for accepted in result.accepted:
        assert len(accepted.value) <= INGEST.max_event_bytes


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 1000), st.sampled_from([b"[", b'{"a":']))
def test_any_nesting_is_answered(depth, opener):
    closer = b"]" if opener == b"[" else b"}"
    raw = opener * depth + b"0" + closer * depth
    result = process_message("city", raw, INGEST, NOW)
    assert result.rejected or result.accepted
