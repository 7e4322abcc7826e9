"""The window stage's wiring of the derived hourly AQI, with an in-memory outbox and
changelog: no broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from streams.core import lineage
from streams.core.windows import default_aggregates
from streams.worker import changelog
from streams.worker.changelog import Checkpointer
from streams.worker.metrics import Metrics
from streams.worker.outbox import MemoryOutbox
from streams.worker.settings import Settings
from streams.worker.stages.windows import WindowStage
from streams.worker.topics import AGGREGATES, DEADLETTER, VALIDATED
from tests.unit.core.windows.events import T0, M, air

H = 60 * M
TP = TopicPartition(VALIDATED["city"], 0)
WALL = 2_000_000_000_000  # the wall clock: event times are far in its past


@dataclass
class Record:
    value: bytes
    offset: int
    key: bytes = b"HD-AQ-001"
    topic: str = TP.topic  # where aiokafka's ConsumerRecord says it was read
    partition: int = TP.partition
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


class Consumer:
    """What the stage asks of its consumer outside the batch loop."""

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int:
        return 0  # nothing left to read: idle partitions may close by the wall clock

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed = offsets

    async def stop(self) -> None:
        pass


def stage(settings: Settings | None = None) -> WindowStage:
    settings = settings or Settings(_env_file=None)
    made = WindowStage(settings, Metrics(), default_aggregates())
    made._outbox = MemoryOutbox()  # type: ignore[assignment]
    made._consumer = Consumer()  # type: ignore[assignment]
    made._checkpointers[TP] = Checkpointer(TP.topic)
    return made


def readings(hours: range, first_offset: int = 0) -> list[Record]:
    """Six readings an hour of one station, steady: PM2.5 40 µg/m³, PM10 100 µg/m³."""
    times = [T0 + h * H + m * 10 * M for h in hours for m in range(6)]
    return [
        Record(orjson.dumps(air(t, device="HD-AQ-001", pm25=40.0, pm10=100.0)), offset)
        for offset, t in enumerate(times, first_offset)
    ]


async def handle(made: WindowStage, records: list[Record]) -> None:
    """A batch, as the stage's loop hands it over."""
    await made.handle(TP, records, WALL)
    made.positions[TP] = records[-1].offset + 1


def aqi_records(made: WindowStage) -> dict[int, dict[str, Any]]:
    outbox: MemoryOutbox = made.outbox  # type: ignore[assignment]
    records = [orjson.loads(value) for _, value in outbox.on(AGGREGATES)]
    return {r["window_start_ms"]: r for r in records if r["aggregate"] == "aqi_station_1h"}


async def test_finals_of_air_station_1h_give_aqi_records_also_when_idle_closes_them():
    made = stage()
    await handle(made, readings(range(3)))
    # Hours 0 and 1 closed by later events, hour 2 still open.
    assert sorted(aqi_records(made)) == [T0, T0 + H]
    # Silent past the idle timeout (30 s): the watermark runs on with the wall clock
    # from T0 + 2h 50m, and 20 minutes later passes hour 2's end + grace.
    await made.tick(WALL + 30_000 + 20 * M)
    records = aqi_records(made)
    assert sorted(records) == [T0, T0 + H, T0 + 2 * H]
    assert records[T0]["statistics"]["aqi"] is None  # one hour is no NowCast
    # Steady 40 and 100: PM2.5 50 + 2·(40 − 25) = 80, PM10 50 + (100 − 50)/2 = 75.
    assert records[T0 + 2 * H]["statistics"]["aqi"] == 80
    assert records[T0 + 2 * H]["count"] == 6
    assert records[T0 + H]["identity"] == f"aqi_station_1h|HD-AQ-001|TP Hải Dương|{T0 + H}"


async def test_a_pack_without_air_station_1h_derives_nothing():
    pack = [a for a in default_aggregates() if a.name != "air_station_1h"]
    made = WindowStage(Settings(_env_file=None), Metrics(), pack)
    assert made.derived == {}


async def test_state_checkpointed_together_and_restored_apart(monkeypatch):
    first = stage()
    await handle(first, readings(range(3)))
    saved = first.state_records(TP, 18)
    keys = [key.decode() for _, _, key, _ in saved]
    assert any(k.startswith(f"{TP.topic}|aqi|") for k in keys)
    assert any(k.startswith(f"{TP.topic}|air_station_1h#") for k in keys)
    assert keys[-1] == f"{TP.topic}|@checkpoint"  # one checkpoint for both

    async def changelog_batches(partition: int):
        yield [(key, value) for _, _, key, value in saved]

    second = stage()
    monkeypatch.setattr(second, "changelog_batches", changelog_batches)
    await second.on_assigned([TP])
    # Neither side took the other's keys for stale state to tombstone.
    assert second.state_records(TP, 18) == []
    derived_first, derived_second = first.derived[TP.topic], second.derived[TP.topic]
    assert derived_second.state_entries() == derived_first.state_entries() == 2

    more = readings(range(3, 5), first_offset=18)
    await handle(first, more)
    await handle(second, more)
    after_first = {k: v for k, v in aqi_records(first).items() if k >= T0 + 2 * H}
    assert aqi_records(second) == after_first
    assert sorted(after_first) == [T0 + 2 * H, T0 + 3 * H]

    await second.on_revoked([TP])
    assert derived_second.state_entries() == 0


@pytest.mark.parametrize("with_derived", [True, False])
async def test_the_changelog_replays_to_what_was_checkpointed(with_derived):
    # The Checkpointer/replay pair the stage relies on keeps both kinds of key.
    made = stage()
    await handle(made, readings(range(3)))
    saved = made.state_records(TP, 18)
    recovered = changelog.replay(TP.topic, [(key, value) for _, _, key, value in saved])
    assert recovered.offset == 18
    aqi_keys = [k for k in recovered.items if k.startswith("aqi|")]
    assert len(aqi_keys) == 2
    if not with_derived:
        # A pack without the source: the engine tombstones the leftover AQI history.
        pack = [a for a in default_aggregates() if a.name != "air_station_1h"]
        bare = WindowStage(Settings(_env_file=None), Metrics(), pack)
        engine = bare.engines[TP.topic]
        engine.restore("p", recovered.items.items())
        dropped = {key for key, payload in engine.take_dirty("p") if payload is None}
        assert set(aqi_keys) <= dropped


async def test_records_not_from_ingest_are_dead_lettered_and_the_batch_goes_on():
    made = stage()
    foreign: list[Any] = [
        Record(None, 0),  # type: ignore[arg-type]  # a tombstone
        Record(b"{not json", 1),
        Record(b'{"type": "x"}', 2),
        Record(b"[1]", 3),
    ]
    await handle(made, [*foreign, *readings(range(1), first_offset=4)])
    outbox: MemoryOutbox = made.outbox  # type: ignore[assignment]
    letters = [orjson.loads(value) for _, value in outbox.on(DEADLETTER)]
    assert [(d["offset"], d["error"]) for d in letters] == [(n, "schema") for n in range(4)]
    assert {(d["stage"], d["family"], d["source_topic"]) for d in letters} == {
        ("windows", "city", TP.topic)
    }
    assert letters[0]["reason"] == "not a validated event: null value" and letters[0]["raw"] == ""
    assert letters[3]["reason"] == "not a validated event: expected a JSON object, got list"
    assert made.engines[TP.topic].cached_entries() > 0  # the valid readings were counted


async def test_stopping_checkpoints_then_removes_the_rocksdb_spills(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, windows={"store": "rocksdb"})
    made = stage(settings)
    await handle(made, readings(range(2)))
    spills = tmp_path / "windows"
    assert any(spills.iterdir())  # a process directory and its lock file
    await made.on_stop()
    assert made.consumer.committed == {TP: 12}  # type: ignore[attr-defined]
    outbox: MemoryOutbox = made.outbox  # type: ignore[assignment]
    assert outbox.on(made.changelog)  # the open windows were saved first
    assert list(spills.iterdir()) == []


def from_ingest(records: list[Record], source_offset: int = 100) -> list[Record]:
    """The records as ingest writes them: each with its lineage header."""
    return [
        Record(r.value, r.offset, headers=tuple(lineage.header(3, source_offset + n, 0)))
        for n, r in enumerate(records)
    ]


async def test_events_ingest_produced_again_after_a_crash_count_once_also_after_a_restore(
    monkeypatch,
):
    once, twice = stage(), stage()
    sent = from_ingest(readings(range(3)))
    await handle(once, sent)
    await handle(twice, sent[:12])
    # Ingest crashed after sending 12 and before committing: it sends them all again.
    again = [Record(r.value, 12 + n, headers=r.headers) for n, r in enumerate(sent)]
    saved = twice.state_records(TP, 12)

    async def changelog_batches(partition: int):
        yield [(key, value) for _, _, key, value in saved]

    restored = stage()
    monkeypatch.setattr(restored, "changelog_batches", changelog_batches)
    await restored.on_assigned([TP])
    await handle(restored, again)
    later = from_ingest(readings(range(5, 6), first_offset=30), source_offset=200)
    await handle(once, later)
    await handle(restored, later)  # closes hours 0-2 on both

    def hourly(made: WindowStage) -> dict[int, int]:
        outbox: MemoryOutbox = made.outbox  # type: ignore[assignment]
        records = [orjson.loads(value) for _, value in outbox.on(AGGREGATES)]
        return {
            r["window_start_ms"]: r["count"]
            for r in records
            if r["aggregate"] == "air_station_1h" and r["final"]
        }

    assert hourly(once) == {T0 + h * H: 6 for h in range(3)}
    # Hour 0 closed before the checkpoint; hour 1 was open across it, counted once.
    assert hourly(restored) == {T0 + h * H: 6 for h in range(1, 3)}
    assert lineage.read(again[0].headers) == ("3", (100, 0))
