"""Hostile input against a real worker: no record stops the pipeline.

One worker on a broker of its own (the cardinality floods would slow every other
test's workers on the session broker) reads every case below at once: malformed
structure, sizes at each limit, broken encodings, impossible numbers and times,
odd keys, records a foreign producer wrote straight into the internal topics, and
floods of 50,000 users and 100,000 devices. Between the cases run good events.

Then, per case: the worker is alive and healthy, every stage has read everything
(lag 0), the bad record is in `ioc.deadletter` with the expected `error`, a reason
that says what is wrong and stays short, and the good events went on. Peak RSS of
the worker stays under `PEAK_RSS_MB`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from models.deadletter import DeadLetter
from streams.worker.topics import AGGREGATES, ALERTS, DEADLETTER, SOURCE, VALIDATED, rule_inputs
from tests.conftest import air_quality, auth_failure, dossier
from tests.integration.conftest import BROKERS, Worker, consume, start_broker

pytestmark = pytest.mark.integration

#: The worker's peak resident memory over the whole suite, floods included.
PEAK_RSS_MB = 1200
#: Dead letters must fit comfortably in one Kafka record.
MAX_LETTER_BYTES = 64 * 1024

NOW = datetime.now(UTC).replace(microsecond=0)


def at(offset_s: float = 0) -> str:
    return (NOW + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def reading(device: str, **changes: Any) -> dict[str, Any]:
    fields = {"refDevice": device, "id": f"urn:{device}", "dateObserved": at(-60), **changes}
    return air_quality(**fields)


def json_nested(depth: int, opener: bytes = b'{"x":', closer: bytes = b"}") -> bytes:
    return opener * depth + b"0" + closer * depth


@dataclass
class Case:
    name: str
    topic: str
    value: bytes | None
    key: bytes | None = None
    #: The dead letter expected: its error and a fragment of its reason; None: accepted.
    error: str | None = None
    reason: str = ""
    stage: str = "ingest"
    #: For an accepted case, the key it must reach the validated topic under.
    accepted_key: bytes | None = None
    partition: int = -1
    offset: int = -1


def _cases(run: str) -> list[Case]:
    city, services, security = SOURCE["city"], SOURCE["services"], SOURCE["security"]

    def dev(name: str) -> str:
        return f"{name}-{run}"

    deep_extra = json.dumps(reading(dev("deep"))).encode()[:-1] + b',"extra":' + json_nested(256)
    deep_extra += b"}"
    many_fields = reading(dev("fields"), **{f"f{i:05d}": i for i in range(30_000)})
    cases = [
        # -- structure --
        Case("nested 256 deep in an extra field", city, deep_extra, error="too_deep",
             reason="nested more than 32 levels deep"),
        Case("array nested 256 deep", city, b"[" * 256 + b"]" * 256, error="too_deep"),
        Case("nested beyond the JSON parser (1100)", city, json_nested(1100), error="json"),
        Case("array of 499,000 zeros", city, b"[" + b"0," * 498_999 + b"0]",
             error="too_large", reason="499000 elements"),
        Case("array of 10,001 objects", city, b"[" + b"{}," * 10_000 + b"{}]",
             error="too_large", reason="the limit is 10000"),
        Case("30,000 fields", city, orjson.dumps(many_fields), error="too_large",
             reason="the validated event is"),
        Case("array of a number", city, b"[1]", error="schema", reason="expected a JSON object"),
        Case("a JSON string", city, b'"AirQualityObserved"', error="schema"),
        # -- size --
        Case("530,000-character refDevice", city,
             orjson.dumps(reading(dev("long"), refDevice="d" * 530_000)), error="schema",
             reason="at most 256"),
        Case("790 KB of invalid JSON", city, b"{" + b"x" * 790_000, error="json"),
        Case("just over the message limit", city, b" " * 1_000_001, error="too_large",
             reason="the limit is 1000000"),
        Case("450,000-character timestamp", security,
             orjson.dumps(auth_failure(**{"@timestamp": "2" * 450_000})), error="schema",
             reason="not an RFC 3339 time"),
        Case("validated event too large to pass on", city,
             orjson.dumps(reading(dev("big"), note="n" * 400_000)), error="too_large",
             reason="the limit is 262144"),
        # -- encoding --
        Case("invalid UTF-8", city, b'{"type": "\xff\xfe"}', error="json"),
        Case("UTF-8 BOM", city, b"\xef\xbb\xbf" + orjson.dumps(reading(dev("bom"))),
             error="json", reason="BOM"),
        Case("lone surrogate", city, b'{"refDevice": "\\ud800"}', error="json"),
        Case("raw NUL in a string", city, b'{"refDevice": "a\x00b"}', error="json"),
        Case("escaped NUL in refDevice", city,
             orjson.dumps(reading(dev("nul") + "\x00")), error="schema", reason="U+0000"),
        Case("bidi override in refDevice", city,
             orjson.dumps(reading(dev("bidi") + "\u202e")), error="schema", reason="U+202E"),
        Case("UTF-16 JSON", city, json.dumps(reading(dev("u16"))).encode("utf-16"),
             error="json"),
        Case("empty value", city, b"", error="json"),
        Case("NUL in free text is kept", city,
             orjson.dumps(reading(dev("text"), note="a\x00b\u202e")),
             accepted_key=dev("text").encode()),
        # -- numbers --
        Case("NaN", city, b'{"pm25": NaN}', error="json"),
        Case("Infinity", city, b'{"pm25": Infinity}', error="json"),
        Case("-Infinity", city, b'{"pm25": -Infinity}', error="json"),
        Case("pm25 1e308", city, orjson.dumps(reading(dev("huge"), pm25=1e308)),
             error="schema", reason="physical range"),
        Case("1e400", city, orjson.dumps(reading(dev("inf"))).replace(b"62.4", b"1e400"),
             error="json", reason="infinity"),
        Case("integer beyond 64 bits", city,
             orjson.dumps(reading(dev("int"))).replace(b"62.4", b"1" + b"0" * 30),
             error="schema", reason="physical range"),
        Case("fee beyond 64 bits", services,
             orjson.dumps(dossier(dossier_id=dev("fee"), event_id=dev("fee"), occurred_at=at(-60),
                                  fee_vnd=1)).replace(b'"fee_vnd":1', b'"fee_vnd":' + b"9" * 25),
             error="schema", reason="fee_vnd"),
        Case("negative pm25", city, orjson.dumps(reading(dev("neg"), pm25=-3.0)),
             error="schema", reason="must not be negative"),
        Case("pm25 as a string", city, orjson.dumps(reading(dev("str"), pm25="62.4")),
             error="schema", reason="not a number"),
        # -- times --
        *[
            Case(f"time: {label}", city, orjson.dumps(reading(dev(f"t{i}"), dateObserved=written)),
                 error="schema", reason=why)
            for i, (label, written, why) in enumerate([
                ("ISO week date", "2026-W48-4T10:00+07:00", "not an RFC 3339 time"),
                ("ISO basic format", "20261126T100000+0700", "not an RFC 3339 time"),
                ("no seconds", "2026-11-26T10:00+07:00", "not an RFC 3339 time"),
                ("no offset", "2026-11-26T10:00:00", "no UTC offset"),
                ("year 1", "0001-01-01T00:00:00Z", "outside the years"),
                ("year 9999", "9999-12-31T23:59:59Z", "outside the years"),
                ("epoch seconds", int(NOW.timestamp()), "looks like seconds"),
                ("a day ahead", at(86_400), "in the future"),
                ("three years ago", at(-3 * 365 * 86_400), "in the past"),
                ("epoch ms of year 9999", 253_402_300_799_000, "out of range"),
            ])
        ],
        Case("dossier due in year 1", services,
             orjson.dumps(dossier(dossier_id=dev("y1"), event_id=dev("y1"), occurred_at=at(-60),
                                  due_at="0001-01-01T00:00:00Z")),
             error="schema", reason="outside the years"),
        # -- keys --
        Case("tombstone", city, None, key=b"gw-1", error="json", reason="tombstone"),
        Case("300 KB binary key, valid event", city, orjson.dumps(reading(dev("key"))),
             key=b"\xff" * 300_000, accepted_key=dev("key").encode()),
        Case("300 KB binary key, invalid event", city, b"{broken", key=b"\xff" * 300_000,
             error="json"),
        Case("no key", city, orjson.dumps(reading(dev("nokey"))), key=None,
             accepted_key=dev("nokey").encode()),
        # -- a foreign producer writing into the internal topics --
        Case("garbage in a validated topic", VALIDATED["city"], b"\x00\x01garbage",
             error="schema", reason="not a validated", stage="windows"),
        Case("year 1 in a validated topic", VALIDATED["services"],
             orjson.dumps({**dossier(dossier_id=dev("v1"), event_id=dev("v1")),
                           "occurred_at": "0001-01-01T00:00:00Z"}),
             error=None, stage="windows"),
        Case("1e308 twice in a validated topic", VALIDATED["city"],
             orjson.dumps(reading(dev("vinf"), pm25=1e308)), error=None, stage="windows"),
        Case("1e308 twice in a validated topic (second)", VALIDATED["city"],
             orjson.dumps(reading(dev("vinf"), pm25=1e308)), error=None, stage="windows"),
        Case("deep JSON in a validated topic", VALIDATED["city"],
             json.dumps(reading(dev("vdeep"), extra=json.loads(json_nested(300)))).encode(),
             error=None, stage="windows"),
        Case("garbage rule input", "@rules", b"[1, 2", error="schema", reason="not a rule input",
             stage="rules"),
        Case("garbage final", AGGREGATES, b"\x00garbage", error="schema", stage="rules-route"),
    ]  # fmt: skip
    return cases


def _floods(run: str) -> list[tuple[str, bytes]]:
    """50,000 users failing to log in to one agency within one window (credential
    stuffing), and 100,000 devices never seen before: arrays of 1,000 events."""
    messages: list[tuple[str, bytes]] = []
    # The last second of a 5-minute window between 100 and 400 s ago: once the source
    # is idle, its event time runs on from there with the wall clock, and the window
    # closes about a minute later (grace), not up to six.
    five_minutes = 300
    window_start = (int(NOW.timestamp()) - 400) // five_minutes * five_minutes
    last_second = at(window_start + five_minutes - 1 - NOW.timestamp())
    for batch in range(50):
        events = [
            auth_failure(**{"@timestamp": last_second}, user={"name": f"user-{run}-{batch}-{i}"},
                         organization={"name": f"SO-FLOOD-{run}"},
                         source={"ip": f"10.{batch}.{i // 250}.{i % 250}"})
            for i in range(1000)
        ]  # fmt: skip
        messages.append((SOURCE["security"], orjson.dumps(events)))
    for batch in range(100):
        events = [reading(f"flood-{run}-{batch}-{i}") for i in range(1000)]
        messages.append((SOURCE["city"], orjson.dumps(events)))
    return messages


def flood_reading(run: str) -> dict[str, Any]:
    """A water level over its danger level from a gauge that does not say its area:
    grouped under `unknown`, it must still fire."""
    return {
        "type": "FloodMonitoring", "refDevice": f"WL-{run}", "dateObserved": at(-30),
        "currentLevel": 9.0, "dangerLevel": 5.0,
    }  # fmt: skip


def _metric_lines(worker: Worker) -> list[str]:
    with urllib.request.urlopen(worker.url("/metrics"), timeout=30) as response:
        return response.read().decode().splitlines()


def _lag(worker: Worker) -> float:
    """Records left to read by all stages; infinite while the worker is too busy to
    answer (a batch of a flood, or its checkpoint, holds the event loop for seconds)."""
    try:
        lines = _metric_lines(worker)
    except (TimeoutError, urllib.error.URLError):
        return float("inf")
    total = 0.0
    for line in lines:
        if line.startswith("ioc_consumer_lag_records{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _health(worker: Worker) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(worker.url("/health"), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _final_count(records: list[Any]) -> int:
    results = [orjson.loads(record.value) for record in records]
    return sum(result["count"] for result in results if result["final"])


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


@dataclass
class Outcome:
    cases: list[Case]
    letters: dict[tuple[str, int, int], list[DeadLetter]]
    letter_sizes: list[int]
    validated_keys: set[bytes]
    health: tuple[int, dict[str, Any]]
    alive: bool
    peak_rss_mb: float
    drained_s: float
    internal_letters: list[DeadLetter]
    approximate_finals: list[dict[str, Any]]
    flood_alerts: list[dict[str, Any]]
    run: str


async def _produce_all(bootstrap: str, app_id: str, cases: list[Case], run: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for good, case in enumerate(cases):
            topic = rule_inputs(app_id) if case.topic == "@rules" else case.topic
            meta = await (await producer.send(topic, case.value, key=case.key))
            case.partition, case.offset = meta.partition, meta.offset
            # A good event after every case: the stage goes on.
            await producer.send(SOURCE["city"], orjson.dumps(reading(f"good-{run}-{good}")))
        for topic, value in _floods(run):
            await producer.send(topic, value)
        await producer.send(SOURCE["city"], orjson.dumps(flood_reading(run)))
        last = await producer.send(SOURCE["city"], orjson.dumps(reading(f"last-{run}")))
        await last
    finally:
        await producer.stop()


def _run(bootstrap: str, directory: Path) -> Outcome:
    run = uuid.uuid4().hex[:6]
    quiet = "5"  # seconds of silence before event time runs on: the floods' windows close
    worker = Worker(
        bootstrap, directory, IOC_INGEST__IDLE_TIMEOUT_S=quiet, IOC_WINDOWS__IDLE_TIMEOUT_S=quiet,
        IOC_RULES__IDLE_TIMEOUT_S=quiet,
    ).start()  # fmt: skip
    try:
        cases = _cases(run)
        asyncio.run(_produce_all(bootstrap, worker.app_id, cases, run))
        started = time.monotonic()
        last_key = f"last-{run}".encode()
        seen_last = asyncio.run(
            consume(bootstrap, VALIDATED["city"], lambda r: r.key == last_key, bool, timeout=240)
        )
        assert seen_last, f"the last good event never reached validated: {worker.log_path}"
        # Every stage has read everything: lag 0 three scrapes in a row.
        zero, deadline = 0, time.monotonic() + 240
        while zero < 3 and time.monotonic() < deadline and worker.alive():
            zero = zero + 1 if _lag(worker) == 0 else 0
            time.sleep(1)
        drained_s = time.monotonic() - started
        health = _health(worker)
        alive = worker.alive()
        peak = _peak_rss_mb(worker.process.pid) if alive and worker.process else 0.0

        expected = len([c for c in cases if c.error is not None])
        letters = asyncio.run(
            consume(bootstrap, DEADLETTER, lambda r: True,
                    lambda kept: len(kept) >= expected, timeout=30)
        )  # fmt: skip
        by_position: dict[tuple[str, int, int], list[DeadLetter]] = {}
        decoded = [DeadLetter.model_validate_json(r.value) for r in letters]
        for letter in decoded:
            place = (letter.source_topic, letter.partition, letter.offset)
            by_position.setdefault(place, []).append(letter)
        keys = {case.accepted_key for case in cases if case.accepted_key}
        validated = asyncio.run(
            consume(bootstrap, VALIDATED["city"], lambda r: r.key in keys,
                    lambda kept: {r.key for r in kept} >= keys, timeout=30)
        )  # fmt: skip
        org = f"SO-FLOOD-{run}"
        finals = asyncio.run(
            consume(bootstrap, AGGREGATES,
                    lambda r: org.encode() in (r.value or b"") and b"auth_failures_5m" in r.value,
                    lambda kept: _final_count(kept) >= 50_000,
                    timeout=150)
        )  # fmt: skip
        gauge = f"WL-{run}".encode()
        alerts = asyncio.run(
            consume(bootstrap, ALERTS, lambda r: gauge in (r.value or b""), bool, timeout=60)
        )
        return Outcome(
            flood_alerts=[orjson.loads(r.value) for r in alerts],
            cases=cases,
            letters=by_position,
            letter_sizes=[len(r.value) for r in letters],
            validated_keys={r.key for r in validated},
            health=health,
            alive=alive,
            peak_rss_mb=peak,
            drained_s=drained_s,
            internal_letters=[letter for letter in decoded if letter.error == "internal"],
            approximate_finals=[orjson.loads(r.value) for r in finals],
            run=run,
        )
    finally:
        worker.stop()


@pytest.fixture(scope="module", params=BROKERS)
def outcome(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Outcome]:
    broker = start_broker(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield _run(broker.bootstrap, tmp_path_factory.mktemp("hostile"))
    finally:
        broker.stop()


CASE_NAMES = [case.name for case in _cases("names")]


def test_the_worker_survives_everything_and_drains(outcome: Outcome) -> None:
    assert outcome.alive
    status, body = outcome.health
    assert status == 200, body
    assert set(body["stages"].values()) == {"ok"}
    print(f"drained in {outcome.drained_s:.1f} s; peak RSS {outcome.peak_rss_mb:.0f} MB")


def test_peak_memory_stays_bounded(outcome: Outcome) -> None:
    assert 0 < outcome.peak_rss_mb < PEAK_RSS_MB


def test_every_dead_letter_fits_in_a_record(outcome: Outcome) -> None:
    assert outcome.letter_sizes
    assert max(outcome.letter_sizes) < MAX_LETTER_BYTES


def test_no_case_is_an_internal_error(outcome: Outcome) -> None:
    """Each of them is foreseen: `internal` would mean a bug met on the way."""
    assert [(letter.stage, letter.reason) for letter in outcome.internal_letters] == []


def test_a_distinct_count_beyond_its_limit_is_an_approximate_final(outcome: Outcome) -> None:
    """50,000 users in one window: counted with a sketch beyond the exact limit, and
    flagged. (Events are keyed by entity, so one agency's window is counted on each
    validated partition its sources hash to: one final per partition.)"""
    finals = [result for result in outcome.approximate_finals if result["final"]]
    assert sum(result["count"] for result in finals) == 50_000
    for result in finals:
        assert result["approximate"] == ["source.ip_distinct", "user.name_distinct"]
        estimate = result["statistics"]["user.name_distinct"]
        assert abs(estimate - result["count"]) < 0.05 * result["count"]


def test_a_reading_without_its_group_field_still_fires(outcome: Outcome) -> None:
    [alert, *_] = outcome.flood_alerts
    assert alert["labels"]["alertname"] == "water_above_danger_level"
    assert alert["labels"]["areaServed"] == "unknown"
    assert alert["state"] == "firing"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_case_is_answered(outcome: Outcome, name: str) -> None:
    [case] = [c for c in outcome.cases if c.name == name]
    topic = case.topic
    letters = [
        letter
        for (source, partition, offset), found in outcome.letters.items()
        if partition == case.partition and offset == case.offset and source != "@rules"
        and (source == topic or (topic == "@rules" and source.endswith("-rules-inputs")))
        for letter in found
    ]  # fmt: skip
    if case.error is None:
        wrong = [(x.stage, x.error, x.reason) for x in letters if x.error in ("internal",)]
        assert wrong == []
        if case.accepted_key is not None:
            assert case.accepted_key in outcome.validated_keys
        return
    assert letters, f"no dead letter for {name!r} at {topic}[{case.partition}]@{case.offset}"
    # A topic read by two stages (a foreign record in a validated topic) has one each.
    mine = [letter for letter in letters if letter.stage == case.stage]
    assert mine, [(x.stage, x.error, x.reason) for x in letters]
    letter = mine[0]
    assert letter.error == case.error, letter.reason
    assert case.reason in letter.reason
    assert len(letter.reason) < 2100
