"""Engines with either store: tests that take `make_engine` run for both."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.core.windows import Aggregate, WindowEngine
from streams.core.windows.store import RocksStores

#: Small enough that almost every access of the property tests misses the cache.
TINY_CACHE = 3

MakeEngine = Callable[..., WindowEngine]


def scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where RocksDB goes. Opening a database fsyncs several times (about 50 ms on
    the CI disk, 5 ms in RAM) and the property tests open hundreds: /dev/shm when the
    machine has one. Durability means nothing to a spill area rebuilt from the changelog."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        return Path(tempfile.mkdtemp(prefix="ioc-windows-", dir=shm))
    return tmp_path_factory.mktemp("windows-store")


@pytest.fixture(scope="session")
def rocks_stores(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[int], RocksStores]]:
    """RocksStores(cache_panes) under one scratch directory, removed at the end."""
    root = scratch_dir(tmp_path_factory)
    opened: list[RocksStores] = []

    def stores(cache_panes: int) -> RocksStores:
        opened.append(RocksStores(root, cache_panes=cache_panes))
        return opened[-1]

    yield stores
    for store in opened:
        store.close()
    shutil.rmtree(root)


# Session-scoped, so that Hypothesis tests can take it: it holds no per-test state, and
# the engines it makes are closed by the tests (a no-op for the memory store).
@pytest.fixture(scope="session", params=["memory", "rocksdb"])
def make_engine(
    request: pytest.FixtureRequest, rocks_stores: Callable[[int], RocksStores]
) -> MakeEngine:
    """WindowEngine(aggregates, **options), with dicts or RocksDB (cache of TINY_CACHE)."""
    if request.param == "memory":
        return WindowEngine
    store = rocks_stores(TINY_CACHE)

    def make(aggregates: list[Aggregate], **options: Any) -> WindowEngine:
        return WindowEngine(aggregates, store=store, **options)

    return make
