import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.deadletter import DeadLetter
from streams.core.ingest import RecentIds, dead_letter, process_message
from streams.worker.settings import IngestSettings
from tests.conftest import NOW, air_quality, auth_failure, dossier

INGEST = IngestSettings()


def test_one_valid_event_is_normalised_and_keyed():
    result = process_message("city", orjson.dumps(air_quality()), INGEST, NOW)
    assert result.rejected == []
    [accepted] = result.accepted
    assert accepted.key == b"HD-AQ-017"
    assert accepted.event_id == air_quality()["id"]
    value = orjson.loads(accepted.value)
    assert value["dateObserved"] == "2026-11-26T03:00:00Z"
    assert value["pm25"] == 62.4


def test_array_elements_are_validated_one_by_one():
    bad = air_quality(pm25="high")
    raw = orjson.dumps([air_quality(), bad, air_quality(refDevice="HD-AQ-018")])
    result = process_message("city", raw, INGEST, NOW)
    assert [a.key for a in result.accepted] == [b"HD-AQ-017", b"HD-AQ-018"]
    [rejected] = result.rejected
    assert rejected.element == 1
    assert rejected.error == "schema"
    assert rejected.reason == "[1] pm25: value is not a number (got str)"
    assert orjson.loads(rejected.raw) == bad


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (b"{not json", "json", "not valid JSON"),
        (b'{"pm25": NaN}', "json", "not valid JSON"),
        (b"\xff\xfe", "json", "not valid JSON"),
        (b"42", "schema", "expected a JSON object, got int"),
        (b"x" * 2_000_000, "too_large", "message is 2000000 bytes; the limit is 1000000"),
    ],
)
def test_whole_message_rejections_keep_the_original_bytes(raw, error, reason):
    result = process_message("security", raw, INGEST, NOW)
    assert result.accepted == []
    [rejected] = result.rejected
    assert (rejected.error, rejected.element, rejected.raw) == (error, None, raw)
    assert reason in rejected.reason


def test_each_family_routes_to_its_model():
    assert process_message("services", orjson.dumps(dossier()), INGEST, NOW).accepted
    assert process_message("security", orjson.dumps(auth_failure()), INGEST, NOW).accepted
    # A city event on the security topic is rejected, not misread.
    assert process_message("security", orjson.dumps(air_quality()), INGEST, NOW).rejected


def test_empty_array_holds_nothing_to_reject():
    result = process_message("city", b"[]", INGEST, NOW)
    assert result.accepted == [] and result.rejected == []


def test_dead_letter_record_has_every_contract_field():
    [rejected] = process_message("city", b'{"type": 1', INGEST, NOW).rejected
    raw = dead_letter(
        rejected,
        stage="ingest",
        family="city",
        topic="ioc.city.observations",
        partition=3,
        offset=41,
        key=b"HD-AQ-017",
        now=NOW,
    )
    record = DeadLetter.model_validate_json(raw)
    assert record.source_topic == "ioc.city.observations"
    assert (record.partition, record.offset, record.key) == (3, 41, "HD-AQ-017")
    assert record.original() == b'{"type": 1'
    assert base64.b64decode(orjson.loads(raw)["raw"]) == b'{"type": 1'
    assert record.error == "json" and record.rejected_at == NOW
    assert (record.stage, record.family) == ("ingest", "city")
    assert record.reason.startswith("not valid JSON")


def _accounted_for(raw: bytes, family: str) -> bool:
    result = process_message(family, raw, INGEST, NOW)
    try:
        empty_array = orjson.loads(raw) == []
    except orjson.JSONDecodeError:
        empty_array = False
    return empty_array or bool(result.accepted or result.rejected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_and_are_accounted_for(raw):
    assert _accounted_for(raw, "city")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "refDevice",
                    "dateObserved",
                    "pm25",
                    "kind",
                    "event",
                    "@timestamp",
                    "source.ip",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["city", "services", "security"]))
def test_random_json_never_raises_and_is_accounted_for(value, family):
    assert _accounted_for(orjson.dumps(value), family)


def test_recent_ids_drop_repeats_within_horizon_only():
    recent = RecentIds(horizon_s=60, max_ids=100)
    assert not recent.seen("a", now=0)
    assert recent.seen("a", now=30)
    assert not recent.seen("a", now=61)  # remembered at 0, forgotten after 60 s


def test_recent_ids_stay_bounded():
    recent = RecentIds(horizon_s=3600, max_ids=1000)
    for number in range(10_000):
        recent.seen(str(number), now=number / 1000)
    assert len(recent) == 1000
    assert not recent.seen("0", now=11)  # evicted by the bound


def test_recent_ids_cost_the_same_whatever_the_id_length():
    import tracemalloc

    recent = RecentIds(horizon_s=3600, max_ids=1000)
    tracemalloc.start()
    try:
        for n in range(1000):
            recent.seen(f"{n}-" + "x" * 10_000, now=1.0)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(recent) == 1000
    assert held < 1000 * 400  # digests, not the 10 KB ids
    assert recent.seen("7-" + "x" * 10_000, now=2.0)
