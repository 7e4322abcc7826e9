"""The simulator: deterministic, realistic, valid, and its incidents really happen."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

import streams.devtools.simulate.producer as producer_module
from streams.core.ingest import process_message
from streams.devtools.simulate import Incident, Progress, SimMessage, Simulation, run
from streams.devtools.simulate.generator import BACKFILL_STEP_S, FAMILY_SHARE, backfill_rate
from streams.devtools.simulate.incidents import WINDOWS
from streams.devtools.simulate.malformed import legacy_vietnamese
from streams.devtools.simulate.producer import manifest_json, record_line
from streams.devtools.simulate.scenario import DEVICES, DISTRICTS
from streams.worker.settings import IngestSettings
from streams.worker.topics import SOURCE

START = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # 10:00 in Hải Dương
FAMILY = {topic: family for family, topic in SOURCE.items()}
INGEST = IngestSettings()


# -- reading the messages back, independently of the processor ---------------------------


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "Relationship":
        return value["object"]
    if isinstance(value, dict) and value.get("type") in ("Property", "GeoProperty"):
        inner = value["value"]
        return inner["@value"] if isinstance(inner, dict) and "@value" in inner else inner
    return value


def _nest(event: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in event.items():
        *parents, leaf = [key] if key.startswith("@") else key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


def normalised(family: str, event: dict[str, Any]) -> dict[str, Any]:
    if family == "city":
        return {key: _unwrap(value) for key, value in event.items()}
    return _nest(event) if family == "security" else event


def event_time(family: str, event: dict[str, Any]) -> datetime:
    name = {"services": "occurred_at", "security": "@timestamp"}.get(family) or (
        "observationDateTime" if event["type"] == "FloodMonitoring" else "dateObserved"
    )
    return datetime.fromisoformat(event[name])


def events(messages: list[SimMessage]) -> list[tuple[str, dict[str, Any], SimMessage]]:
    """(family, normalised event, message) of every well-formed event, arrays flattened."""
    out = []
    for message in messages:
        if message.malformed:
            continue
        family = FAMILY[message.topic]
        value = orjson.loads(message.value)
        for event in value if isinstance(value, list) else [value]:
            out.append((family, normalised(family, event), message))
    return out


def within(incident: Incident, family: str, event: dict[str, Any]) -> bool:
    return incident.starts_at <= event_time(family, event) <= incident.ends_at


# -- one 60 s demo run at 200 messages/s, shared by the tests that only read it ----------


@pytest.fixture(scope="module")
def demo() -> Simulation:
    return Simulation(seed=3, start=START, rate=200, duration=60, bad_share=0.02)


@pytest.fixture(scope="module")
def messages(demo: Simulation) -> list[SimMessage]:
    return list(demo.messages())


@pytest.fixture(scope="module")
def parsed(messages: list[SimMessage]) -> list[tuple[str, dict[str, Any], SimMessage]]:
    return events(messages)


@pytest.fixture(scope="module")
def incidents(demo: Simulation) -> dict[str, Incident]:
    return {incident.kind: incident for incident in demo.incidents()}


# -- determinism -------------------------------------------------------------------------


def on_the_beat(message: SimMessage, rate: float) -> bool:
    """Background messages come exactly every 1/rate s; bursts at drawn times."""
    return abs(message.at * rate - round(message.at * rate)) < 1e-6


def first(simulation: Simulation, count: int) -> list[SimMessage]:
    return list(itertools.islice(simulation.messages(), count))


def test_same_arguments_give_the_same_bytes():
    def make(seed: int) -> Simulation:
        return Simulation(seed=seed, start=START, rate=500, duration=None, bad_share=0.05)

    one = first(make(11), 5000)
    assert one == first(make(11), 5000)
    assert one == first(make(11), 5000)  # messages() starts afresh on every call
    other = first(make(12), 5000)
    assert [m.value for m in one] != [m.value for m in other]


def test_a_finite_run_stops_at_its_duration_in_time_order(messages):
    ats = [message.at for message in messages]
    assert ats == sorted(ats)
    assert ats[0] >= 0 and ats[-1] < 60
    assert sum(on_the_beat(m, 200) for m in messages) == 60 * 200


def test_arguments_are_checked():
    for bad in (
        {"rate": 0},
        {"duration": -1.0},
        {"bad_share": 1.5},
        {"start": datetime(2026, 11, 26, 10)},
    ):
        with pytest.raises(ValueError):
            Simulation(**{"seed": 1, "start": START, "rate": 10, **bad})


# -- shape of the traffic ----------------------------------------------------------------


def test_family_shares_follow_the_rate():
    before_incidents = first(Simulation(seed=5, start=START, rate=200), 20_000)  # 100 s
    shares = Counter(FAMILY[m.topic] for m in before_incidents)
    assert abs(shares["city"] / 20_000 - 0.45) < 0.02
    assert abs(shares["services"] / 20_000 - 0.10) < 0.02
    assert abs(shares["security"] / 20_000 - 0.45) < 0.02
    assert before_incidents[-1].at == pytest.approx(100, abs=0.1)


def test_every_district_and_topic_appears(parsed):
    assert {FAMILY[m.topic] for _, _, m in parsed} == {"city", "services", "security"}
    districts = {d.name for d in DISTRICTS}
    assert len(districts) == 12
    assert {e["areaServed"] for f, e, _ in parsed if f == "city"} == districts
    assert {e["district"] for f, e, _ in parsed if f == "services"} == districts


def test_keys_name_the_entity(parsed):
    for family, event, message in parsed:
        if family == "city":
            single = message.value.startswith(b"{")
            assert message.key == (event["refDevice"].encode() if single else None)
        elif family == "services":
            assert message.key == event.get("dossier_id", event.get("feedback_id")).encode()
        else:
            entity = event["source"]["ip"] if "source" in event else event["host"]["name"]
            assert message.key == entity.encode()


def test_both_forms_of_each_family_are_sent(messages):
    city = [m.value for m in messages if FAMILY[m.topic] == "city" and not m.malformed]
    security = [m.value for m in messages if FAMILY[m.topic] == "security" and not m.malformed]
    assert 0.02 < sum(b'"Relationship"' in v for v in city) / len(city) < 0.08  # NGSI-LD
    assert 0.02 < sum(v.startswith(b"[") for v in city) / len(city) < 0.08  # gateway batches
    assert 0.05 < sum(b'"source.ip"' in v for v in security) / len(security) < 0.15  # dotted


def test_event_times_are_start_plus_at(parsed):
    for family, event, message in parsed:
        offset = (event_time(family, event) - START).total_seconds()
        assert offset == pytest.approx(message.at, abs=0.01), (family, event)


def test_event_ids_are_unique_within_a_run_and_differ_between_starts(parsed, demo):
    def ids(items: list[tuple[str, dict[str, Any], SimMessage]]) -> list[str]:
        return [e.get("id") or e.get("event_id") or e["event"]["id"] for _, e, _ in items]

    these = ids(parsed)
    assert len(these) == len(set(these))
    later = Simulation(
        seed=3, start=START + timedelta(hours=1), rate=200, duration=60, bad_share=0.02
    )
    assert not set(these) & set(ids(events(first(later, 3000))))


def test_units_and_ranges_are_plausible(parsed):
    for family, event, _ in parsed:
        if family != "city":
            continue
        lon, lat = event["location"]["coordinates"]
        assert 106.1 <= lon <= 106.6 and 20.6 <= lat <= 21.2
        for ratio in ("relativeHumidity", "occupancy"):
            assert 0 <= event.get(ratio, 0) <= 1
        assert event.get("co", 0) < 10  # mg/m³, not µg/m³
        assert event.get("pm25", 0) >= 0
        stamp = event.get("dateObserved") or event["observationDateTime"]
        assert event["id"] == f"urn:ngsi-ld:{event['type']}:{event['refDevice']}:{stamp}"
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(hours=7)


def test_some_dossiers_are_resolved_late_most_on_time(parsed):
    resolved = [
        e
        for f, e, _ in parsed
        if f == "services" and e["kind"] == "dossier" and e["status"] == "resolved"
    ]
    late = [e for e in resolved if e["resolved_at"] > e["due_at"]]
    assert resolved and 0 < len(late) < len(resolved) / 2
    for _, event, _ in parsed:
        if "fee_vnd" in event:
            assert isinstance(event["fee_vnd"], int) and event["fee_vnd"] >= 0
            assert event["due_at"]


# -- validity against the processor ------------------------------------------------------


def test_well_formed_messages_validate_and_malformed_ones_are_rejected(messages):
    errors: Counter[tuple[str, str]] = Counter()
    for message in messages:
        family = FAMILY[message.topic]
        now = START + timedelta(seconds=message.at)
        result = process_message(family, message.value, INGEST, now)
        if message.malformed:
            assert result.rejected, message
            errors.update((family, rejected.error) for rejected in result.rejected)
        else:
            assert result.rejected == [], (message, result.rejected)
    for family in ("city", "services", "security"):
        assert errors[family, "json"] and errors[family, "schema"]


def test_the_malformed_share_is_close_to_bad_share(messages):
    background = [m for m in messages if on_the_beat(m, 200)]
    share = sum(m.malformed for m in background) / len(background)
    assert abs(share - 0.02) < 0.006
    # Only background messages are replaced: the incidents stay whole.
    assert not any(m.malformed for m in messages if not on_the_beat(m, 200))


def test_bad_share_zero_and_one():
    assert not any(
        m.malformed for m in first(Simulation(seed=1, start=START, rate=100, bad_share=0.0), 2000)
    )
    every = first(Simulation(seed=1, start=START, rate=100, bad_share=1.0), 2000)
    assert all(m.malformed for m in every if on_the_beat(m, 100))


def test_legacy_vietnamese_is_not_utf8():
    raw = legacy_vietnamese('{"areaServed": "Ninh Giang", "ghiChu": "Dữ liệu được đồng bộ"}')
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert raw.decode("cp1258").startswith('{"areaServed": "Ninh Giang"')


# -- the incidents -----------------------------------------------------------------------


def test_a_finite_run_has_each_incident_once_inside_it(demo):
    listed = demo.incidents()
    assert sorted(i.kind for i in listed) == sorted(WINDOWS)
    assert listed == demo.incidents(horizon=10_000)  # the duration decides
    for incident in listed:
        assert START <= incident.starts_at < incident.ends_at <= START + timedelta(seconds=60)
        begin, end = WINDOWS[incident.kind]
        assert (incident.starts_at - START).total_seconds() == pytest.approx(60 * begin)
        assert (incident.ends_at - START).total_seconds() == pytest.approx(60 * end)
        assert incident.family == {
            "pollution_episode": "city",
            "flood_rise": "city",
            "sensor_silent": "city",
            "overdue_dossiers": "services",
        }.get(incident.kind, "security")
        orjson.dumps(incident.as_json())


def test_an_endless_run_repeats_incidents_every_cycle_with_new_entities():
    simulation = Simulation(seed=3, start=START, rate=10)
    assert len(simulation.incidents()) == len(WINDOWS)
    three = simulation.incidents(horizon=1800)
    assert len(three) == 3 * len(WINDOWS)
    by_cycle = [[i for i in three if i.details["cycle"] == c] for c in range(3)]
    for incident, next_one in zip(by_cycle[0], by_cycle[1], strict=True):
        assert next_one.kind == incident.kind
        assert next_one.starts_at - incident.starts_at == timedelta(seconds=600)
    assert {i.entity for i in by_cycle[0]} != {i.entity for i in by_cycle[1]}


def test_brute_force_many_failures_then_one_success(parsed, incidents):
    incident = incidents["brute_force"]
    attempts = [
        e
        for f, e, _ in parsed
        if f == "security" and e.get("source", {}).get("ip") == incident.entity
    ]
    assert all(within(incident, "security", e) for e in attempts)  # nowhere else
    failures = [e for e in attempts if e["event"]["outcome"] == "failure"]
    assert len(failures) >= 30
    assert {e["event"]["category"][0] for e in attempts} == {"authentication"}
    last = attempts[-1]
    assert last["event"]["outcome"] == "success"
    assert (last["user"]["name"], last["source"]["ip"]) == (
        failures[0]["user"]["name"],
        incident.entity,
    )


def test_password_spraying_tries_many_users(parsed, incidents):
    incident = incidents["password_spraying"]
    failures = [
        e
        for f, e, _ in parsed
        if f == "security"
        and e.get("source", {}).get("ip") == incident.entity
        and within(incident, "security", e)
        and e["event"]["outcome"] == "failure"
    ]
    assert len({e["user"]["name"] for e in failures}) >= 15


def test_port_scan_touches_many_ports(parsed, incidents):
    incident = incidents["port_scan"]
    ports = {
        e["destination"]["port"]
        for f, e, _ in parsed
        if f == "security"
        and e.get("source", {}).get("ip") == incident.entity
        and within(incident, "security", e)
    }
    assert len(ports) >= 60


def test_malware_on_several_hosts(parsed, incidents):
    incident = incidents["malware_outbreak"]
    assert len(incident.entity) == 64 and incident.entity == incident.entity.lower()
    hosts = {
        e["host"]["name"]
        for f, e, _ in parsed
        if f == "security"
        and e.get("file", {}).get("hash", {}).get("sha256") == incident.entity
        and within(incident, "security", e)
    }
    assert len(hosts) >= 3


def test_pollution_episode_far_above_150(parsed, incidents):
    incident = incidents["pollution_episode"]
    readings = [
        e["pm25"]
        for f, e, _ in parsed
        if f == "city" and e["refDevice"] == incident.entity and within(incident, f, e)
    ]
    assert len(readings) >= 20
    assert sum(pm25 > 150 for pm25 in readings) >= 0.7 * len(readings)
    assert max(readings) > 250


def test_flood_rises_through_alert_then_danger(parsed, incidents):
    incident = incidents["flood_rise"]
    levels = [
        e
        for f, e, _ in parsed
        if f == "city" and e["refDevice"] == incident.entity and within(incident, f, e)
    ]
    current = [e["currentLevel"] for e in levels]
    alert, danger = levels[0]["alertLevel"], levels[0]["dangerLevel"]
    assert max(current) - current[0] > 0.5
    assert current[0] < alert
    first_alert = next(i for i, level in enumerate(current) if level >= alert)
    first_danger = next(i for i, level in enumerate(current) if level >= danger)
    assert first_alert < first_danger


def test_silent_sensor_reports_before_and_not_during(parsed, incidents):
    incident = incidents["sensor_silent"]
    times = [
        event_time(f, e) for f, e, _ in parsed if f == "city" and e["refDevice"] == incident.entity
    ]
    assert any(t < incident.starts_at for t in times)
    assert not any(incident.starts_at <= t <= incident.ends_at for t in times)


def test_overdue_dossiers_only_at_the_incident_agency(parsed, incidents):
    incident = incidents["overdue_dossiers"]
    overdue = [
        e
        for f, e, _ in parsed
        if f == "services" and e["status"] != "resolved" and e["due_at"] < e["occurred_at"]
    ]
    assert {e["agency"] for e in overdue} == {incident.entity}
    assert len({e["dossier_id"] for e in overdue}) >= 10
    stuck = {e["dossier_id"] for e in overdue}
    assert not any(
        e.get("dossier_id") in stuck and e["status"] == "resolved"
        for f, e, _ in parsed
        if f == "services"
    )


def test_incidents_of_later_cycles_happen_too():
    simulation = Simulation(seed=9, start=START, rate=20, bad_share=0.0)
    messages = list(itertools.takewhile(lambda m: m.at < 1200, simulation.messages()))
    parsed = events(messages)
    second = {i.kind: i for i in simulation.incidents(horizon=1200) if i.details["cycle"] == 1}
    brute = second["brute_force"]
    failures = [
        e
        for f, e, _ in parsed
        if f == "security" and e.get("source", {}).get("ip") == brute.entity and within(brute, f, e)
    ]
    assert len(failures) >= 30
    silent = second["sensor_silent"]
    assert not any(
        e["refDevice"] == silent.entity and within(silent, f, e)
        for f, e, _ in parsed
        if f == "city"
    )


# -- the backfill: thinned history before start -----------------------------------------

DAY = 24 * 3600.0


@pytest.fixture(scope="module")
def backfilled() -> Simulation:
    return Simulation(seed=4, start=START, rate=200, duration=30, bad_share=0.02, backfill=DAY)


@pytest.fixture(scope="module")
def history(backfilled: Simulation) -> list[SimMessage]:
    return [m for m in backfilled.messages() if m.at < 0]


def test_the_backfill_comes_first_in_time_order_then_the_live_run(backfilled, history):
    messages = list(backfilled.messages())
    ats = [m.at for m in messages]
    assert ats == sorted(ats) and messages[: len(history)] == history
    assert ats[0] == -DAY and history[-1].at > -60
    live = messages[len(history) :]
    assert sum(on_the_beat(m, 200) for m in live) == 30 * 200
    assert messages == list(backfilled.messages())  # deterministic, afresh on each call


def test_the_backfill_is_small_with_every_device_once_per_step(history):
    # One reading per device per 5 minutes, the other families at their share (and the
    # overdue cases closed): about 30k messages for a day, 17 million at 200/s.
    assert len(history) == pytest.approx(backfill_rate(BACKFILL_STEP_S) * DAY, rel=0.02)
    shares = Counter(FAMILY[m.topic] for m in history)
    for family, share in FAMILY_SHARE.items():
        assert shares[family] / len(history) == pytest.approx(share, abs=0.02)
    readings = Counter(e["refDevice"] for f, e, _ in events(history) if f == "city")
    assert set(readings) == {device.id for device in DEVICES}
    expected = DAY / BACKFILL_STEP_S
    assert all(0.9 * expected < count < 1.1 * expected for count in readings.values())


def test_the_backfill_is_history_that_validates_and_keeps_the_event_times(history):
    assert not any(m.malformed for m in history)  # future_time would not be future there
    for message in history:
        result = process_message(FAMILY[message.topic], message.value, INGEST, START)
        assert result.accepted and result.rejected == [], (message, result.rejected)
    for family, event, message in events(history):
        offset = (event_time(family, event) - START).total_seconds()
        assert offset == pytest.approx(message.at, abs=0.01), (family, event)


def test_the_backfill_injects_no_incident_and_the_live_ones_keep_their_times(backfilled, history):
    incidents = backfilled.incidents()
    assert incidents == Simulation(seed=4, start=START, rate=200, duration=30).incidents()
    attackers = ("203.0.113.", "198.51.100.")  # the incidents' address ranges only
    for family, event, _ in events(history):
        if family == "security" and "source" in event:
            assert not event["source"]["ip"].startswith(attackers)
    live = events([m for m in backfilled.messages() if m.at >= 0])
    brute = next(i for i in incidents if i.kind == "brute_force")
    attempts = [
        (e, m)
        for f, e, m in live
        if f == "security" and e.get("source", {}).get("ip") == brute.entity
    ]
    assert len(attempts) >= 30
    for event, message in attempts:
        assert within(brute, "security", event)
        offset = (event_time("security", event) - START).total_seconds()
        assert offset == pytest.approx(message.at, abs=0.01)


def test_no_dossier_stays_open_past_due_in_the_backfill(history):
    # Only the overdue_dossiers incident may leave cases open past due (a clean ground
    # truth for the rules), however thin the history: at its pace a case waits hours
    # for its next step, so the desk closes overdue cases as they fall due.
    step = timedelta(seconds=1 / (backfill_rate(BACKFILL_STEP_S) * FAMILY_SHARE["services"]))
    open_due: dict[str, datetime] = {}
    for family, event, message in events(history):
        if family != "services":
            continue
        case = event.get("dossier_id") or event["feedback_id"]
        if event["status"] in ("resolved", "returned"):
            open_due.pop(case, None)
        else:
            open_due[case] = datetime.fromisoformat(event["due_at"])
        now = START + timedelta(seconds=message.at)
        assert not [case for case, due in open_due.items() if due < now - 20 * step]


def test_the_live_part_continues_the_same_province(backfilled, history):
    cases = {e.get("dossier_id") for f, e, _ in events(history) if f == "services"}
    live = [m for m in backfilled.messages() if m.at >= 0]
    later = {e.get("dossier_id") for f, e, _ in events(live) if f == "services"}
    assert cases & later - {None}  # dossiers opened in the history move on live


def test_backfill_arguments_are_checked():
    for bad in ({"backfill": -1.0}, {"backfill": float("inf")}, {"backfill_step": 0}):
        with pytest.raises(ValueError):
            Simulation(**{"seed": 1, "start": START, "rate": 10, **bad})


# -- the producer, without Kafka ---------------------------------------------------------


class FakeProducer:
    """Stands in for AIOKafkaProducer: records what would be sent."""

    last: FakeProducer | None = None

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.flushed = self.stopped = False
        FakeProducer.last = self

    async def start(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def flush(self) -> None:
        self.flushed = True

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    monkeypatch.setattr(producer_module, "AIOKafkaProducer", FakeProducer)
    return FakeProducer


async def test_run_paces_records_and_writes_the_manifest(fake_kafka, tmp_path):
    simulation = Simulation(seed=2, start=START, rate=400, duration=1.0, bad_share=0.05)
    expected = list(simulation.messages())
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = await run(
        simulation,
        {"bootstrap_servers": "x:9092"},
        manifest=tmp_path / "manifest.json",
        record=tmp_path / "record.jsonl",
    )
    assert loop.time() - began >= 0.9  # real time, not as fast as possible
    producer = fake_kafka.last
    assert producer is not None and producer.flushed and producer.stopped
    assert producer.options["bootstrap_servers"] == "x:9092" and producer.options["linger_ms"] == 5
    assert sent == len(expected) == len(producer.sent)
    assert producer.sent == [(m.topic, m.value, m.key) for m in expected]
    manifest = orjson.loads((tmp_path / "manifest.json").read_bytes())
    assert manifest["seed"] == 2 and manifest["duration"] == 1.0
    assert [i["kind"] for i in manifest["incidents"]] == [i.kind for i in simulation.incidents()]
    lines = (tmp_path / "record.jsonl").read_bytes().splitlines()
    assert len(lines) == sent


async def test_run_stops_when_asked(fake_kafka):
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    sent = await run(Simulation(seed=2, start=START, rate=100), {}, stop=stop)
    assert 10 < sent < 100
    assert fake_kafka.last is not None and fake_kafka.last.stopped


async def test_run_sends_the_backfill_at_once_then_waits_before_going_live(fake_kafka, tmp_path):
    simulation = Simulation(seed=2, start=START, rate=100, duration=0.5, backfill=6 * 3600.0)
    expected = list(simulation.messages())
    history = sum(m.at < 0 for m in expected)
    progress = Progress()
    seen_before_live: list[int] = []

    async def before_live() -> None:
        assert fake_kafka.last is not None
        seen_before_live.append(len(fake_kafka.last.sent))

    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = await run(
        simulation,
        {},
        manifest=tmp_path / "manifest.json",
        progress=progress,
        before_live=before_live,
    )
    assert 0.4 <= loop.time() - began < 5  # six hours of history, not six hours
    assert sent == progress.sent == len(expected)
    assert seen_before_live == [history] and progress.backfill_sent == history
    assert progress.backfill_s is not None and progress.backfill_s < 5
    manifest = orjson.loads((tmp_path / "manifest.json").read_bytes())
    assert manifest["backfill"] == {
        "start": (START - timedelta(hours=6)).isoformat(),
        "end": START.isoformat(),
        "seconds": 6 * 3600.0,
        "device_step_s": BACKFILL_STEP_S,
        "incidents": [],
        "malformed": 0,
    }
    assert len(manifest["incidents"]) == len(WINDOWS)


def test_record_lines_keep_json_and_base64_the_rest():
    good = SimMessage("ioc.city.observations", b"HD-AQ-001", b'{"a":1}', 0.0)
    assert orjson.loads(record_line(good)) == {
        "topic": "ioc.city.observations",
        "key": "HD-AQ-001",
        "value": {"a": 1},
    }
    for raw in (b'{"pm25":1e999}', b'{"a":', legacy_vietnamese('{"a":"Hải Dương"}')):
        line = orjson.loads(record_line(SimMessage("t", None, raw, 0.0, malformed=True)))
        assert line["key"] is None and base64.b64decode(line["value_b64"]) == raw


def test_manifest_of_an_endless_run_covers_its_horizon():
    manifest = orjson.loads(manifest_json(Simulation(seed=1, start=START, rate=10), 1200))
    assert manifest["duration"] is None and manifest["cycle_s"] == 600
    assert manifest["backfill"] is None
    assert len(manifest["incidents"]) == 2 * len(WINDOWS)
