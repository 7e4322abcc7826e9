"""The rule stage's crash recovery, differentially: one partition of the rule inputs read
by a stage that crashes at random points (also halfway through writing a checkpoint)
gives the same alerts as the same partition read without a crash. No broker: the
changelog is a list, the outbox is in memory, and the loop is BatchStage._consume's."""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from models.aggregates import default_aggregates
from models.rulefile import default_rules
from streams.core import lineage, progress
from streams.core.ingest import process_message
from streams.core.progress import NEVER, Frontier
from streams.core.rules.engine import RuleEngine
from streams.core.rules.plan import RuleInput
from streams.worker import topics
from streams.worker.metrics import Metrics
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import IngestSettings, Settings
from streams.worker.stages.rules import RuleStage, route_table
from streams.worker.topics import ALERTS, DEADLETTER, VALIDATED
from tests.conftest import NOW, air_quality, auth_failure

SETTINGS = Settings(_env_file=None)
AGGREGATES = default_aggregates()
RULES = default_rules(AGGREGATES)
TABLE = route_table(RULES, AGGREGATES)
TP = TopicPartition(topics.rule_inputs(SETTINGS.app_id), 0)
S, M = 1000, 60_000
T0 = int(NOW.timestamp() * 1000) - 3 * 60 * M
SPAN = 30 * M
#: The wall clock, constant and before the real one: the rules follow progress, and no
#: idle timeout can run out (`keep_alive` at recovery takes the real clock, later).
WALL = T0 + SPAN
#: Of the events' disorder within a source: below the allowed lateness (5 s), so the
#: uninterrupted run judges nothing late.
DISORDER_MS = 3 * S

ORGS = ["SO-TTTT", "SO-TNMT", "SO-GTVT", "SO-YTE", "UBND-CL"]
ADDRESSES = ["203.0.113.7", "198.51.100.4", "192.0.2.9"]
USERS = [f"u{n}" for n in range(12)]
DEVICES = ["HD-AQ-001", "HD-AQ-002", "HD-AQ-003", "HD-AQ-004"]

Alerts = set[tuple[str, bytes]]  # (identity, JSON)


@dataclass
class Record:
    """What aiokafka's ConsumerRecord gives the stage."""

    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0
    topic: str = TP.topic
    partition: int = TP.partition


# -- the partition: rule inputs and progress, as the router writes them ----------------


def validated(family: str, event: dict[str, Any]) -> dict[str, Any]:
    result = process_message(family, orjson.dumps(event), IngestSettings(), NOW)
    assert result.accepted, result.rejected
    return orjson.loads(result.accepted[0].value)  # type: ignore[no-any-return,unused-ignore]


def silences(
    rng: random.Random, names: list[str], shortest: int, longest: int
) -> dict[str, tuple[int, int]]:
    """Per name, at most one stretch of event time it sends nothing: some longer than
    the absence rule's `after`, some shorter."""
    out: dict[str, tuple[int, int]] = {}
    for name in names:
        if rng.random() < 0.7:
            start = T0 + rng.randrange(3 * M, SPAN - 5 * M)
            out[name] = (start, start + rng.randrange(shortest, longest))
    return out


def quiet(silent: dict[str, tuple[int, int]], name: str, at_ms: int) -> bool:
    span = silent.get(name)
    return span is not None and span[0] <= at_ms < span[1]


def events(rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """(family, entity, validated event) in the order ingest read them: firewalls of
    several organizations (some go silent), bursts of failed logins, a few successes,
    air quality stations (some go silent)."""
    orgs = silences(rng, ORGS, 4 * M, 20 * M)  # firewall_silent: after 10m
    devices = silences(rng, DEVICES, 8 * M, 25 * M)  # sensor_silent: after 15m
    out: list[tuple[str, str, dict[str, Any]]] = []
    clock, n = T0, 0
    burst: str | None = None
    while clock < T0 + SPAN:
        clock += rng.randrange(300, 8000)
        at_ms = clock - rng.randrange(0, DISORDER_MS)
        stamp = _iso(at_ms)
        n += 1
        kind = rng.random()
        if kind < 0.45:
            org = rng.choice(ORGS)
            if quiet(orgs, org, at_ms):
                continue
            event = auth_failure(**{
                "@timestamp": stamp,
                "event": {"id": f"fw{n}", "category": ["network"], "outcome": "success"},
                "observer": {"type": "firewall"}, "organization": {"name": org},
                "source": {"ip": f"10.9.{n % 7}.{n % 5}"},
            })  # fmt: skip
            out.append(("security", org, validated("security", event)))
        elif kind < 0.85:
            if burst is None or rng.random() < 0.05:
                burst = rng.choice(ADDRESSES)
            ip = burst if rng.random() < 0.8 else rng.choice(ADDRESSES)
            outcome = "success" if rng.random() < 0.07 else "failure"
            event = auth_failure(**{
                "@timestamp": stamp, "source": {"ip": ip},
                "event": {"id": f"a{n}", "category": ["authentication"], "outcome": outcome},
                "user": {"name": rng.choice(USERS[:4] if rng.random() < 0.7 else USERS)},
            })  # fmt: skip
            out.append(("security", ip, validated("security", event)))
        else:
            device = rng.choice(DEVICES)
            if quiet(devices, device, at_ms):
                continue
            event = air_quality(
                id=f"urn:ngsi-ld:AirQualityObserved:{device}:{n}", refDevice=device,
                dateObserved=stamp,
            )  # fmt: skip
            out.append(("city", device, validated("city", event)))
    return out


def _iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()


def progress_record(family: str, part: int, frontier_ms: int) -> tuple[bytes | None, bytes, Any]:
    source = f"{VALIDATED[family]}:{part}"  # type: ignore[index]
    value = progress.encode([Frontier(source, "events", family, frontier_ms, False)])
    return None, value, tuple(progress.HEADERS)


def announcements() -> list[tuple[bytes | None, bytes, Any]]:
    """What a router sends on assignment, before it routes anything (NEVER)."""
    return [progress_record(f, p, NEVER) for f in ("security", "city") for p in (0, 1)]


def partition(seed: int) -> list[Record]:
    """One partition of the rule inputs: each event's inputs with the lineage the router
    gives them (`<family>/<ingest partition>><validated partition>:<offset>:0:<index>`),
    progress of the four validated partitions at random points after what they cover,
    and now and then the router's crash: its announcements, then the records it sent
    since its last commit, again (same lineage), before it goes on."""
    rng = random.Random(seed)
    sent: list[tuple[bytes | None, bytes, Any]] = announcements()
    newest = {"security": NEVER, "city": NEVER}
    ingest_offsets = {"security": 0, "city": 0}
    committed = len(sent)  # what the router had sent at its last commit
    for family, entity, event in events(rng):
        part = zlib.crc32(entity.encode()) % 2  # ingest keys events by entity
        offset = ingest_offsets[family] = ingest_offsets[family] + 1
        path = f"{family}/0>{part}"
        for index, item in enumerate(TABLE.event_inputs(family, event)):
            sent.append((item.key, item.to_json(), tuple(lineage.header(path, offset, 0, index))))
            newest[family] = max(newest[family], item.at_ms)
        if rng.random() < 0.4:
            # The frontier of one validated partition: ingest's, as of some event read.
            family = rng.choice(["security", "security", "city"])
            if newest[family] != NEVER:
                sent.append(progress_record(family, rng.randrange(2), newest[family]))
        if rng.random() < 0.1:
            committed = len(sent)
        elif rng.random() < 0.01:
            sent += announcements() + sent[committed:]
            committed = len(sent)
    # The sources go on far past the last event: every silence is judged, every alert ends.
    sent += [progress_record(f, p, T0 + SPAN + 120 * M) for f in newest for p in (0, 1)]
    return [
        Record(offset, key, value, headers, timestamp=T0 + offset)
        for offset, (key, value, headers) in enumerate(sent)
    ]


# -- the stage, its consumer and its changelog -------------------------------------------


class Consumer:
    """What the stage asks of its consumer outside the batch loop."""

    def __init__(self) -> None:
        self.sought: int | None = None

    def highwater(self, tp: TopicPartition) -> int | None:
        return None  # not known: still reading, never idle by the wall clock

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought = offset


@dataclass
class Durable:
    """What survives a crash: the changelog, the group's committed offset, the alerts
    flushed before a checkpoint; and every alert any incarnation sent."""

    changelog: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    committed: int | None = None
    alerts: Alerts = field(default_factory=set)
    sent: Alerts = field(default_factory=set)
    deadletters: list[bytes | None] = field(default_factory=list)
    crashes: int = 0
    cut_checkpoints: int = 0
    pending_at_checkpoints: int = 0


def alerts_of(outbox: MemoryOutbox) -> Alerts:
    sent = [value for _, value in outbox.on(ALERTS) if value is not None]
    return {(orjson.loads(value)["identity"], value) for value in sent}


def new_stage(
    changelog: list[tuple[bytes, bytes | None]], rng: random.Random | None = None
) -> tuple[RuleStage, MemoryOutbox, Consumer]:
    """A stage whose recovery reads `changelog` (in batches of random sizes)."""
    stage = RuleStage(SETTINGS, Metrics(), RULES, AGGREGATES)
    outbox, consumer = MemoryOutbox(), Consumer()
    stage._outbox = outbox  # type: ignore[assignment]
    stage._consumer = consumer  # type: ignore[assignment,unused-ignore]
    log, sizes = list(changelog), rng or random.Random(0)

    async def changelog_batches(partition: int) -> AsyncIterator[list[tuple[bytes, Any]]]:
        start = 0
        while start < len(log):
            size = sizes.randrange(1, 40)
            yield log[start : start + size]
            start += size

    stage.changelog_batches = changelog_batches  # type: ignore[method-assign]
    return stage, outbox, consumer


async def incarnation(
    records: list[Record], durable: Durable, rng: random.Random, crash_every: float,
    batch_max: int, tick_every: float, checkpoint_every: float,
) -> bool:  # fmt: skip
    """A worker from recovery on, until it crashes (True) or has read everything."""
    stage, outbox, consumer = new_stage(durable.changelog, rng)
    await stage.on_assigned([TP])
    # Without a seek, the consumer reads on from the group's committed offset.
    position = consumer.sought if consumer.sought is not None else (durable.committed or 0)

    def survive() -> None:
        durable.sent |= alerts_of(outbox)
        durable.deadletters += [value for _, value in outbox.on(DEADLETTER)]

    async def checkpoint(cut: bool) -> None:
        """`checkpoint()`: outputs flushed, then the state records, then the commit; a
        crash (`cut`) keeps only a prefix of the records."""
        durable.alerts |= alerts_of(outbox)
        if TP not in stage.positions:
            return
        at = stage.positions[TP]
        durable.pending_at_checkpoints += stage.engines[TP].pending
        saved = [(key, value) for _, _, key, value in stage.state_records(TP, at)]
        if cut:
            durable.cut_checkpoints += 1
            saved = saved[: rng.randrange(0, len(saved) + 1)]
        durable.changelog += saved
        if not cut:
            durable.committed = at

    while position < len(records):
        batch = records[position : position + rng.randrange(1, batch_max + 1)]
        await stage.handle(TP, batch, WALL)
        position = stage.positions[TP] = batch[-1].offset + 1
        if rng.random() < tick_every:
            await stage.tick(WALL)
        if rng.random() < crash_every:
            if rng.random() < 0.5:
                await checkpoint(cut=True)
            survive()
            durable.crashes += 1
            return True
        if rng.random() < checkpoint_every:
            await checkpoint(cut=False)
    await stage.tick(WALL)
    await checkpoint(cut=False)
    survive()
    return False


async def run(
    records: list[Record], rng: random.Random, crashes: int, schedule: tuple | None = None
) -> Durable:
    """Incarnations until one reads to the end; `crashes` at most, at random points.
    `schedule`: (most records a batch, chance of a tick after one, of a checkpoint)."""
    batch_max, tick_every, checkpoint_every = schedule or (
        rng.choice([1, 3, 10, 50, 200]), rng.choice([0.05, 0.3, 1.0]),
        rng.choice([0.02, 0.1, 0.5]),
    )  # fmt: skip
    crash_every = 0.0 if not crashes else rng.choice([0.01, 0.03, 0.1])
    durable = Durable()
    while await incarnation(
        records, durable, rng, crash_every if durable.crashes < crashes else 0.0,
        batch_max, tick_every, checkpoint_every,
    ):  # fmt: skip
        pass
    return durable


STORIES = 100  #: partitions, each read by two crashing runs of their own
_expected: dict[int, Alerts] = {}


@functools.cache
def story(n: int) -> list[Record]:
    return partition(n)


async def uninterrupted(n: int) -> Alerts:
    """The alerts of story `n` read without a crash, by a schedule of batches, ticks and
    checkpoints of its own: they depend on event time only."""
    if n not in _expected:
        straight = await run(story(n), random.Random(n), crashes=0, schedule=(100, 0.5, 0.1))
        assert straight.deadletters == []  # nothing late, nothing foreign
        assert straight.alerts == straight.sent
        _expected[n] = straight.alerts
    return _expected[n]


def describe(alerts: Alerts) -> list[str]:
    return sorted(f"{identity} {orjson.loads(value)['labels']}" for identity, value in alerts)


@pytest.mark.parametrize("seed", range(2 * STORIES))
async def test_a_stage_crashing_anywhere_gives_the_alerts_of_one_that_did_not(seed):
    expected = await uninterrupted(seed // 2)
    rng = random.Random(seed)
    crashed = await run(story(seed // 2), rng, crashes=rng.randrange(1, 5))
    assert crashed.deadletters == []
    missing, extra = expected - crashed.alerts, crashed.sent - expected
    assert not missing and not extra, (describe(missing), describe(extra))


async def test_the_stories_hold_what_recovery_must_keep():
    """Absences, counts, upstream replays; checkpoints with inputs pending, cut short."""
    rules: set[str] = set()
    replays = pending = cut = 0
    for n in range(10):
        rules |= {orjson.loads(value)["labels"]["alertname"] for _, value in await uninterrupted(n)}
        records = story(n)
        marks = [lineage.read(r.headers) for r in records if not progress.is_progress(r.headers)]
        replays += len(marks) - len(set(marks))
        crashed = await run(records, random.Random(n), crashes=3)
        pending += crashed.pending_at_checkpoints
        cut += crashed.cut_checkpoints
    assert {"firewall_silent", "sensor_silent", "brute_force"} <= rules
    assert replays > 0 and pending > 0 and cut > 0


# -- what the seeds above found, one at a time ---------------------------------------------


def silent(device: str, at_ms: int) -> RuleInput:
    return RuleInput("sensor_silent", (device,), at_ms)


def city_at(made: RuleEngine, at_ms: int) -> None:
    made.observe_progress([Frontier(f"{VALIDATED['city']}:0", "events", "city", at_ms, False)])


def test_a_checkpoint_taken_while_pending_inputs_are_read_again_still_names_the_rest():
    first = RuleEngine(RULES)
    city_at(first, T0)
    first.advance(0)
    items = [silent(f"d{n}", T0 + 1 + n) for n in range(10)]
    for offset, item in enumerate(items):
        first.process(item, 0, offset)
    assert first.pending == 10
    log = dict(first.take_dirty(10))
    second = RuleEngine(RULES)
    second.restore(log.items())
    for offset in range(4):
        assert second.rereading(offset)
        second.process(items[offset], 0, offset)
    log.update(second.take_dirty(4))  # checkpointed before reading offsets 4-9 again
    third = RuleEngine(RULES)
    third.restore(log.items())
    # Else 4-9 would be read as new inputs, and the lineage drop them as applied.
    assert third.resume_from == 0
    assert [offset for offset in range(12) if third.rereading(offset)] == list(range(10))


def test_the_pending_bitmap_is_written_again_when_only_the_position_moved():
    made = RuleEngine(RULES)
    city_at(made, T0)
    made.advance(0)
    made.process(silent("d0", T0 + 1), 0, 0)  # pending
    log = dict(made.take_dirty(1))
    # brute_force has no progress (yet): its inputs are applied at once, and the pending
    # set does not change.
    for offset in range(1, 5):
        made.process(RuleInput("brute_force", ("203.0.113.7",), T0 + offset), 0, offset)
    log.update(made.take_dirty(5))
    restored = RuleEngine(RULES)
    restored.restore(log.items())
    assert restored.resume_from == 0 and restored.rereading(0)
    assert all(restored.skip(offset) for offset in range(1, 5))  # not applied twice


async def test_time_waits_for_the_inputs_pending_at_the_checkpoint_to_be_read_again():
    city = [progress_record("city", part, T0) for part in (0, 1)]
    inputs = [silent(f"d{n}", T0 + (n + 1) * S) for n in range(10)]
    sent = city + [(i.key, i.to_json(), tuple(lineage.header("city/0>0", n, 0, 0)))
                   for n, i in enumerate(inputs)]  # fmt: skip
    sent += [progress_record("city", part, T0 + 60 * M) for part in (0, 1)]
    records = [Record(n, key, value, headers) for n, (key, value, headers) in enumerate(sent)]
    first, first_out, _ = new_stage([])
    await first.on_assigned([TP])
    await first.handle(TP, records, WALL)  # all pending: no tick has passed them yet
    log = [(key, value) for _, _, key, value in first.state_records(TP, len(records))]
    await first.tick(WALL)
    again, again_out, consumer = new_stage(log)
    await again.on_assigned([TP])
    assert consumer.sought == len(city)
    await again.tick(WALL)  # before the inputs pending at the checkpoint are read again
    await again.handle(TP, records[len(city) :], WALL)
    again.positions[TP] = len(records)
    await again.tick(WALL)
    assert again_out.on(DEADLETTER) == []  # none judged late by the restored progress
    assert alerts_of(again_out) == alerts_of(first_out) != set()
