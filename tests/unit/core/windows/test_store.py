"""The RocksDB store against the memory store: the same results, a bounded cache, and
local databases that live only as long as their partition."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from streams.core.windows import WATERMARK_KEY, WindowEngine, default_aggregates
from streams.core.windows.plan import Plan
from streams.core.windows.store import RocksStores
from streams.worker.settings import Settings
from streams.worker.stages.windows import pane_stores
from tests.unit.core.windows.conftest import TINY_CACHE
from tests.unit.core.windows.events import CITY, T0, M
from tests.unit.core.windows.test_eviction import reading
from tests.unit.core.windows.test_properties import AGGREGATES, IDLE, LATENESS, streams

Stores = Callable[[int], RocksStores]
Changelog = dict[str, dict[str, bytes | None]]

LAYOUTS = {
    plan.state_prefix: plan.layout
    for plan in (Plan(index, aggregate) for index, aggregate in enumerate(AGGREGATES))
}


def decoded(changelog: Changelog) -> dict[str, dict[str, Any]]:
    """Payloads as accumulators: a `distinct` set reloaded from disk lists its values
    in another order than the set it was saved from, so the bytes may differ."""

    def load(key: str, payload: bytes | None) -> Any:
        if payload is None or key == WATERMARK_KEY:
            return payload
        return LAYOUTS[key.partition("|")[0] + "|"].load(orjson.loads(payload))

    return {
        partition: {key: load(key, payload) for key, payload in items.items()}
        for partition, items in changelog.items()
    }


def engines(stores: Stores, cache_panes: int = TINY_CACHE) -> tuple[WindowEngine, WindowEngine]:
    options = {"allowed_lateness_ms": LATENESS, "idle_timeout_ms": IDLE}
    memory = WindowEngine(AGGREGATES, **options)
    rocks = WindowEngine(AGGREGATES, **options, store=stores(cache_panes))
    return memory, rocks


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=streams())
def test_memory_and_rocksdb_engines_agree_on_every_output(rocks_stores, ops):
    memory, rocks = engines(rocks_stores)
    changelogs: list[Changelog] = [defaultdict(dict), defaultdict(dict)]
    try:
        for op in ops:
            if op[0] == "event":
                _, partition, event, _, now = op
                assert rocks.process(partition, event, now) == memory.process(partition, event, now)
            elif op[0] == "advance":
                assert rocks.advance(op[1]) == memory.advance(op[1])
            else:
                for engine, changelog in zip((memory, rocks), changelogs, strict=True):
                    for partition in engine.partitions:
                        changelog[partition].update(engine.take_dirty(partition))
                assert decoded(changelogs[0]) == decoded(changelogs[1])
                assert rocks.open_windows() == memory.open_windows()
                for partition in memory.partitions:
                    assert rocks.cached_entries(partition) <= TINY_CACHE
            if op[0] == "restart":
                rocks.close()
                memory, rocks = engines(rocks_stores)
                for engine, changelog in zip((memory, rocks), changelogs, strict=True):
                    for partition, items in changelog.items():
                        engine.restore(partition, items.items())
                assert rocks.cached_entries() == 0  # restored straight to disk
            assert rocks.state_entries() == memory.state_entries()
        assert rocks.state_entries() == 0
    finally:
        rocks.close()


@pytest.mark.slow
def test_the_cache_stays_within_its_cap_while_100k_windows_are_open(rocks_stores):
    keys, cap, batch = 100_000, 1000, 5000
    [station] = [a for a in default_aggregates() if a.name == "air_station_5m"]
    memory = WindowEngine([station], allowed_lateness_ms=5000)
    rocks = WindowEngine([station], allowed_lateness_ms=5000, store=rocks_stores(cap))
    finals = 0
    try:
        for window in range(2):  # the second closes the first's 100k windows as it goes
            start = T0 + window * 5 * M
            for key in range(keys):
                event = reading(key, start + key * 5 * M // keys)
                outputs = rocks.process(CITY, event, 0)
                assert outputs == memory.process(CITY, event, 0)
                finals += len(outputs)
                # At most one pane changed per event since the checkpoint.
                assert rocks.cached_entries() <= cap + key % batch + 1
                if key % batch == batch - 1:  # no `distinct`: the payloads are the same bytes
                    assert sorted(rocks.take_dirty(CITY)) == sorted(memory.take_dirty(CITY))
                    assert rocks.cached_entries() <= cap
            assert rocks.state_entries() == memory.state_entries() >= keys
        assert finals > 0.9 * keys
        assert rocks.open_windows() == memory.open_windows()
        assert rocks.advance(10**15) == memory.advance(10**15)  # idle: closes the rest
    finally:
        rocks.close()


def test_restore_fills_the_database_and_continues_exactly(rocks_stores):
    before, rocks = engines(rocks_stores, cache_panes=2)
    try:
        for device in range(20):
            before.process(CITY, _air(T0, device), 0)
        changelog = before.take_dirty(CITY)
        memory = WindowEngine(AGGREGATES, allowed_lateness_ms=LATENESS, idle_timeout_ms=IDLE)
        memory.restore(CITY, changelog)
        rocks.restore(CITY, changelog)
        assert rocks.state_entries() == memory.state_entries() == before.state_entries() > 20
        assert rocks.cached_entries() == 0
        for device in range(20):
            event = _air(T0 + 4000, device)
            assert rocks.process(CITY, event, 0) == memory.process(CITY, event, 0)
        assert decoded({CITY: dict(rocks.take_dirty(CITY))}) == decoded(
            {CITY: dict(memory.take_dirty(CITY))}
        )
        assert rocks.cached_entries() <= 2
        assert rocks.advance(10**15) == memory.advance(10**15)
        assert rocks.state_entries() == 0
    finally:
        rocks.close()


def _air(t: int, device: int) -> dict:
    from tests.unit.core.windows.events import air

    return air(t, device=f"AQ-{device}", pm25=float(device), areaServed=f"D{device % 3}")


def test_a_partition_database_is_deleted_when_the_partition_goes(tmp_path):
    stores = RocksStores(tmp_path, cache_panes=10)
    engine = WindowEngine(AGGREGATES, store=stores)
    engine.process(CITY, _air(T0, 1), 0)
    engine.take_dirty(CITY)
    [mine] = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert [path.name for path in mine.iterdir()] == ["ioc.city.validated_0.1"]
    engine.restore(CITY, [])  # a fresh database replaces the old one
    assert [path.name for path in mine.iterdir()] == ["ioc.city.validated_0.2"]
    engine.drop(CITY)
    assert list(mine.iterdir()) == []
    engine.close()
    stores.close()
    assert list(tmp_path.iterdir()) == []


def test_a_new_process_removes_the_directories_of_dead_ones(tmp_path):
    dead = tmp_path / "123-dead"
    (dead / "ioc.city.validated_0.1").mkdir(parents=True)
    (tmp_path / "123-dead.lock").touch()
    orphan = tmp_path / "456-orphan"  # no lock file at all
    orphan.mkdir()
    alive = tmp_path / "789-alive"
    alive.mkdir()
    with (tmp_path / "789-alive.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stores = RocksStores(tmp_path, cache_panes=10)
        engine = WindowEngine(AGGREGATES, store=stores)
        engine.process(CITY, _air(T0, 1), 0)  # the first partition claims a directory
        left = {path.name for path in tmp_path.iterdir()}
        assert "123-dead" not in left and "123-dead.lock" not in left
        assert "456-orphan" not in left
        assert {"789-alive", "789-alive.lock"} <= left
        engine.close()
        stores.close()


def test_settings_choose_the_store(tmp_path):
    assert pane_stores(Settings(data_dir=tmp_path)) is None
    rocks = pane_stores(
        Settings(data_dir=tmp_path, windows={"store": "rocksdb", "store_cache_panes": 7})
    )
    assert isinstance(rocks, RocksStores)
    assert rocks.root == tmp_path / "windows" and rocks.cache_panes == 7


def test_the_memory_store_does_not_import_rocksdict():
    code = (
        "import sys\n"
        "from streams.worker.settings import Settings\n"
        "from streams.core.windows import WindowEngine, default_aggregates\n"
        "from streams.worker.stages.windows import pane_stores\n"
        "engine = WindowEngine(default_aggregates(), store=pane_stores(Settings()))\n"
        "assert 'rocksdict' not in sys.modules\n"
    )
    root = Path(__file__).parents[4]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
