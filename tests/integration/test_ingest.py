"""Ingest end to end: a real broker, a real `ioc worker` process, plain Kafka clients."""

from __future__ import annotations

import random
import shutil
import subprocess
import urllib.request

import orjson
import pytest

from models.deadletter import DeadLetter
from streams.worker.topics import DEADLETTER, SOURCE, VALIDATED
from tests.conftest import air_quality, auth_failure, dossier
from tests.integration.conftest import BROKERS, consume, produce

pytestmark = pytest.mark.integration


def keyed(key: bytes):
    return lambda record: record.key == key


async def test_valid_event_of_each_family_reaches_the_next_stage(bootstrap, worker, unique):
    events = {
        "city": air_quality(refDevice=f"AQ-{unique}", id=f"urn:{unique}"),
        "services": dossier(dossier_id=f"D-{unique}", event_id=f"e-{unique}"),
        "security": auth_failure(host={"name": f"h-{unique}"}, source=None),
    }
    expected = {  # key, then fields of the normalised value (times in UTC)
        "city": (f"AQ-{unique}", {"dateObserved": "2026-11-26T03:00:00Z", "pm25": 62.4}),
        "services": (f"D-{unique}", {"due_at": "2026-11-27T10:00:00Z", "on_time": True}),
        "security": (
            f"h-{unique}",
            {"@timestamp": "2026-11-26T03:01:02Z", "host": {"name": f"h-{unique}"}},
        ),
    }
    for family, event in events.items():
        await produce(bootstrap, SOURCE[family], [(None, orjson.dumps(event))])
    for family, (key, fields) in expected.items():
        [record] = await consume(bootstrap, VALIDATED[family], keyed(key.encode()), until=bool)
        value = orjson.loads(record.value)
        assert {name: value[name] for name in fields} == fields
    # The security event was produced without a key; it is re-keyed by host.name.
    # Ingest's rejections only: on the session's shared topics another test's newer
    # events may have closed this fixed-date dossier's daily window (a `late` letter
    # from the window stage, whose source is the validated topic).
    dead = await consume(
        bootstrap,
        DEADLETTER,
        lambda r: (
            unique.encode() in r.value
            and DeadLetter.model_validate_json(r.value).source_topic in SOURCE.values()
        ),
        until=lambda kept: False,
        timeout=2,
    )
    assert dead == []


async def test_malformed_json_is_dead_lettered_with_its_bytes_and_position(
    bootstrap, worker, unique
):
    raw = b'{"type": "AirQualityObserved", "pm25": 62.4,,}'
    key = f"gw-{unique}".encode()
    [(partition, offset)] = await produce(bootstrap, SOURCE["city"], [(key, raw)])
    [record] = await consume(bootstrap, DEADLETTER, keyed(key), until=bool)
    letter = DeadLetter.model_validate_json(record.value)
    assert letter.original() == raw
    assert (letter.source_topic, letter.partition, letter.offset) == (
        SOURCE["city"],
        partition,
        offset,
    )
    assert letter.error == "json" and letter.reason.startswith("not valid JSON")
    assert letter.key == key.decode() and letter.element is None


async def test_schema_invalid_event_names_the_field(bootstrap, worker, unique):
    key = f"D-{unique}".encode()
    raw = orjson.dumps(dossier(dossier_id=key.decode(), fee_vnd="free"))
    await produce(bootstrap, SOURCE["services"], [(key, raw)])
    [record] = await consume(bootstrap, DEADLETTER, keyed(key), until=bool)
    letter = DeadLetter.model_validate_json(record.value)
    assert letter.error == "schema" and letter.field == "fee_vnd"
    assert letter.reason == "fee_vnd: input should be a valid integer"
    assert letter.original() == raw
    assert (
        await consume(
            bootstrap, VALIDATED["services"], keyed(key), until=lambda kept: False, timeout=2
        )
        == []
    )


async def test_array_with_one_bad_element(bootstrap, worker, unique):
    key = f"gw-{unique}".encode()
    good = [
        air_quality(refDevice=f"AQ1-{unique}", id=f"1-{unique}"),
        air_quality(refDevice=f"AQ3-{unique}", id=f"3-{unique}"),
    ]
    bad = air_quality(refDevice=f"AQ2-{unique}", id=f"2-{unique}", pm10=float("inf"))
    bad["pm10"] = "Infinity"
    await produce(bootstrap, SOURCE["city"], [(key, orjson.dumps([good[0], bad, good[1]]))])
    accepted = await consume(
        bootstrap,
        VALIDATED["city"],
        lambda r: unique.encode() in (r.key or b""),
        until=lambda kept: len(kept) >= 2,
    )
    assert sorted(r.key for r in accepted) == [f"AQ1-{unique}".encode(), f"AQ3-{unique}".encode()]
    [record] = await consume(bootstrap, DEADLETTER, keyed(key), until=bool)
    letter = DeadLetter.model_validate_json(record.value)
    assert letter.element == 1
    assert letter.reason == "[1] pm10: value is not a number (got str)"
    assert orjson.loads(letter.original()) == bad


async def test_a_tombstone_is_dead_lettered_and_ingest_goes_on(bootstrap, worker, unique):
    key = f"gw-{unique}".encode()
    after = air_quality(refDevice=f"AQ-{unique}", id=f"urn:{unique}")
    await produce(bootstrap, SOURCE["city"], [(key, None), (key, orjson.dumps(after))])  # type: ignore[list-item]
    [record] = await consume(bootstrap, DEADLETTER, keyed(key), until=bool)
    letter = DeadLetter.model_validate_json(record.value)
    assert (letter.error, letter.reason) == ("json", "message has no value (a tombstone)")
    assert letter.original() == b""
    assert await consume(bootstrap, VALIDATED["city"], keyed(f"AQ-{unique}".encode()), until=bool)


# Debian's kcat (librdkafka 2.0.2) cannot talk to Tansu (README, "Broker versions"):
# this runs on the session's Apache Kafka broker only.
@pytest.mark.skipif("apache" not in BROKERS, reason="kcat needs Apache Kafka (IOC_TEST_BROKER)")
@pytest.mark.parametrize("broker", ["apache"], indirect=True)
async def test_a_message_from_kcat_is_dead_lettered_naming_the_field(bootstrap, worker, unique):
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is missing: `make system-deps` installs it"
    key = f"kcat-{unique}"
    event = orjson.dumps(air_quality(refDevice=f"AQ-{unique}", pm25="high")).decode()
    subprocess.run(
        [kcat, "-b", bootstrap, "-t", SOURCE["city"], "-P", "-K", "|"],
        input=f"{key}|{event}\n", text=True, check=True, timeout=30,
    )  # fmt: skip
    [record] = await consume(bootstrap, DEADLETTER, keyed(key.encode()), until=bool)
    letter = DeadLetter.model_validate_json(record.value)
    assert (letter.error, letter.field) == ("schema", "pm25")
    assert letter.reason == "pm25: value is not a number (got str)"
    assert letter.original() == event.encode()


async def test_worker_keeps_going_after_1000_random_byte_strings(bootstrap, worker, unique):
    generator = random.Random(unique)
    key = f"fuzz-{unique}".encode()
    garbage = [(key, generator.randbytes(generator.randint(0, 200))) for _ in range(1000)]
    valid = auth_failure(source={"ip": "198.51.100.77"}, host={"name": f"h-{unique}"})
    valid["event"] = {**valid["event"], "id": f"ev-{unique}"}
    await produce(bootstrap, SOURCE["security"], [*garbage, (key, orjson.dumps(valid))])
    dead = await consume(bootstrap, DEADLETTER, keyed(key), until=lambda kept: len(kept) >= 1000)
    assert len(dead) == 1000
    assert {DeadLetter.model_validate_json(r.value).error for r in dead} <= {"json", "schema"}
    [record] = await consume(
        bootstrap, VALIDATED["security"], lambda r: f"ev-{unique}".encode() in r.value, until=bool
    )
    assert record.key == b"198.51.100.77"
    assert worker.alive()


async def test_metrics_count_accepted_and_rejected(bootstrap, worker, unique):
    key = f"m-{unique}".encode()
    await produce(bootstrap, SOURCE["city"], [(key, b"nope")])
    await consume(bootstrap, DEADLETTER, keyed(key), until=bool)
    with urllib.request.urlopen(worker.url("/metrics"), timeout=5) as response:
        text = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'ioc_ingest_events_rejected_total{error="json",family="city"}' in text
    assert 'ioc_ingest_events_accepted_total{family="city"}' in text
