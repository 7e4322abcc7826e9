"""Where the open windows' accumulators live: in RAM (the default) or spilled to RocksDB.

`WindowEngine` keeps, per input partition and aggregate, a mapping (group key, pane
start) → accumulator: a `PaneStore`. With `IOC_WINDOWS__STORE=memory` (the default)
that is a plain dict: nothing is faster, and nothing else is needed while the open
windows fit in memory. With `IOC_WINDOWS__STORE=rocksdb` each input partition gets a
RocksDB database under `IOC_DATA_DIR` (`RocksPartition`), and each aggregate a view of
it (`RocksPanes`) with one RAM cache per partition in front, for deployments with
millions of open windows (an aggregate per `source.ip`, say).

**The local database is a spill area, not a second source of state.** The Kafka
changelog stays the only truth: on assignment a partition's database is created empty
and filled from the changelog, exactly as the memory store is rebuilt, and it is
deleted when the partition is revoked (`WindowEngine.drop`). A local copy is never
reused after a restart or a handover: it could be older or newer than the offsets
checkpointed with the changelog, and reconciling the two would be a second recovery
protocol to get right, for a saving (reading the changelog) that the memory store
has to pay anyway. So writes skip RocksDB's write-ahead log, and each process writes
under its own directory `<data dir>/windows/<pid>-<token>/`, locked while it runs; a
new process deletes the directories of processes that are gone, so a crash leaks disk
only until the next start.

Write-back, at checkpoint time: the engine mutates cached accumulators in place and
marks them dirty (its own dirty sets, which the store reads and never writes). At
every checkpoint `take_dirty` serialises the dirty panes for the changelog anyway; the
same keys and payloads go to RocksDB in one WriteBatch. A dirty accumulator therefore
stays in RAM until the next checkpoint, and the cache holds at most
`IOC_WINDOWS__STORE_CACHE_PANES` accumulators plus those changed since the last
checkpoint. Beyond the cap, clean ones are evicted, least recently loaded or written
first (a clean accumulator equals its RocksDB copy, so eviction writes nothing).

What stays in RAM for each open window in either mode is the engine's deadline index:
the window's group key in a list (8 bytes plus the key, ~60 bytes for an IP address).
The accumulator with its pane key (~0.5 kB with a few statistics, more with `distinct`
or percentiles) is what moves to disk. Measured with `bench/window_store.py`, 1M open
windows of one aggregate per `source.ip`: 563 MB in memory, 137 MB with RocksDB and
10,000 cached per partition (RocksDB's shared cache and memtables included).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from rocksdict import Options, Rdict

__all__ = [
    "PaneCodec",
    "PaneKey",
    "PaneStore",
    "RocksPanes",
    "RocksPartition",
    "RocksStores",
]

PaneKey = tuple[Any, int]  # (group key, pane start)
Accumulator = list[Any]

#: RocksDB memory for the whole process, whatever the number of partitions: one block
#: cache, with the memtables charged to it. Per-DB defaults (64 MB memtables, twice,
#: for each of a dozen partitions) would cost more RAM than the accumulators saved.
BLOCK_CACHE_BYTES: Final = 64 << 20
MEMTABLES_BYTES: Final = 32 << 20
MEMTABLE_BYTES: Final = 8 << 20
#: Restored entries are written in batches of this many, to bound the batch's memory.
RESTORE_BATCH: Final = 10_000


class PaneStore(Protocol):
    """One aggregate's accumulators on one input partition. A dict is one.

    `get` returns the accumulator itself: the engine mutates it in place and adds its
    key to the aggregate's dirty set, which it clears at each checkpoint.
    """

    def get(self, key: PaneKey, /) -> Accumulator | None: ...

    def __setitem__(self, key: PaneKey, acc: Accumulator, /) -> None: ...

    def pop(self, key: PaneKey, default: None, /) -> Accumulator | None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[PaneKey]: ...


class PaneCodec(Protocol):
    """One aggregate's panes as RocksDB entries: the changelog's state keys (UTF-8)
    and payloads, so that restoring copies changelog bytes as they are."""

    @property
    def prefix(self) -> bytes:
        """Every key of the aggregate starts with this, and no other aggregate's does."""
        ...

    def key(self, pane: PaneKey, /) -> bytes: ...

    def pane(self, key: bytes, /) -> PaneKey: ...

    def load(self, payload: bytes, /) -> Accumulator: ...


class RocksStores:
    """Opens a RocksDB spill per input partition, under one directory of this process.

    One per process (or stage): the block cache and memtable budget are shared by
    every database it opens.
    """

    def __init__(self, root: Path, *, cache_panes: int) -> None:
        if cache_panes < 1:
            raise ValueError("cache_panes must be at least 1")
        # Imported here so that the memory store never needs the package.
        from rocksdict import (
            BlockBasedOptions,
            Cache,
            DBCompressionType,
            Options,
            WriteBufferManager,
        )

        self.root = root
        self.cache_panes = cache_panes
        cache = Cache(BLOCK_CACHE_BYTES)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(MEMTABLE_BYTES)
        options.set_write_buffer_manager(
            WriteBufferManager.new_write_buffer_manager_with_cache(MEMTABLES_BYTES, False, cache)
        )
        options.set_compression_type(DBCompressionType.lz4())
        options.set_keep_log_file_num(1)
        table = BlockBasedOptions()
        table.set_block_cache(cache)
        # A new pane is looked up before it is created: the bloom filter answers most
        # of those misses without reading a block.
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        self._options = options
        self._dir: Path | None = None
        self._lock: IO[str] | None = None
        self._opened = 0

    def open(self, partition: str, dirty: Sequence[Container[PaneKey]]) -> RocksPartition:
        """An empty database for `partition` (a new one at every call, so a partition
        being restored never meets its previous copy). `dirty[i]` is the engine's set
        of aggregate i's panes changed since the last checkpoint: those stay in RAM."""
        directory = self._claim()
        self._opened += 1
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", partition)
        return RocksPartition(
            directory / f"{safe}.{self._opened}", self._options, self.cache_panes, dirty
        )

    def _claim(self) -> Path:
        """This process's directory, created (and the dead processes' removed) once."""
        if self._dir is not None:
            return self._dir
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep()
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Locked under a temporary name, then renamed: a sweeper never meets a `.lock`
        # file that its live owner has not locked yet. And the lock comes before the
        # directory: a directory without a lock file is dead.
        locking = self.root / f"{name}.locking"
        lock = locking.open("w")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locking.rename(self.root / f"{name}.lock")
        (self.root / name).mkdir()
        self._lock, self._dir = lock, self.root / name
        return self._dir

    def _sweep(self) -> None:
        """Remove the directories of processes that no longer hold their lock."""
        for lock_path in [*self.root.glob("*.lock"), *self.root.glob("*.locking")]:
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another process swept it just now
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive (possibly this one)
                _remove(self.root / lock_path.name.split(".")[0])  # "<pid>-<token>"
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        for path in self.root.iterdir():
            if path.is_dir() and not path.with_name(f"{path.name}.lock").exists():
                _remove(path)

    def close(self) -> None:
        """Remove this process's directory. Close the partitions first."""
        if self._dir is not None:
            _remove(self._dir)
            assert self._lock is not None
            (self.root / f"{self._dir.name}.lock").unlink(missing_ok=True)
            self._lock.close()
            self._dir = self._lock = None


def _remove(path: Path) -> None:
    # Missing is fine: a process sweeping at the same time removed it first.
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


class RocksPartition:
    """One input partition's accumulators: a RocksDB database with a RAM cache in front.

    Cache keys are (aggregate index, pane key); the dict's order is the eviction order.
    """

    def __init__(
        self,
        path: Path,
        options: Options,
        cache_panes: int,
        dirty: Sequence[Container[PaneKey]],
    ) -> None:
        from rocksdict import Rdict, WriteBatch, WriteOptions

        self.path = path
        self._options = options
        self._db: Rdict = Rdict(str(path), options)
        # The database is thrown away after a crash: a write-ahead log buys nothing.
        write = WriteOptions()
        # A property at run time, whatever rocksdict's stub says.
        write.disable_wal = True  # type: ignore[method-assign,assignment]
        self._db.set_write_options(write)
        self._new_batch = lambda: WriteBatch(raw_mode=True)
        self._batch = self._new_batch()
        self._batched = 0
        self._cache: dict[tuple[int, PaneKey], Accumulator] = {}
        self._dirty = dirty
        self._cap = cache_panes
        # Trimming evicts a chunk at a time: deleting from the front of a dict one
        # entry per insert would rescan the deleted slots every time.
        self._slack = max(1, cache_panes // 16)
        self._high = cache_panes  # trim when the cache grows beyond this
        self._views: list[RocksPanes] = []

    def panes(self, index: int, codec: PaneCodec) -> RocksPanes:
        """The view of aggregate `index`; call once per aggregate, in index order."""
        if index != len(self._views):
            raise ValueError(f"views are created in index order; expected {len(self._views)}")
        view = RocksPanes(self, index, codec)
        self._views.append(view)
        return view

    @property
    def cached(self) -> int:
        """Accumulators held in RAM."""
        return len(self._cache)

    def _cache_one(self, ck: tuple[int, PaneKey], acc: Accumulator) -> None:
        self._cache[ck] = acc
        if len(self._cache) > self._high:
            self._trim(keep=ck)

    def _trim(self, keep: tuple[int, PaneKey] | None = None) -> None:
        """Evict clean accumulators from the front down to the cap less the slack.

        `keep` was just handed to the engine, which mutates it before marking it dirty.
        Dirty entries met on the way are moved to the back: they were used recently.
        """
        cache, dirty = self._cache, self._dirty
        excess = len(cache) - max(1, self._cap - self._slack)
        victims: list[tuple[int, PaneKey]] = []
        moved: list[tuple[int, PaneKey]] = []
        for ck in cache:
            if len(victims) >= excess:
                break
            if ck[1] in dirty[ck[0]] or ck == keep:
                moved.append(ck)
            else:
                victims.append(ck)
        for ck in victims:
            del cache[ck]
        for ck in moved:
            cache[ck] = cache.pop(ck)
        if len(victims) < excess:
            # All that is left is dirty: let `cap` more in before scanning them all
            # again (or the checkpoint comes first), so trimming stays linear. The
            # cache stays within the cap plus what changed since the checkpoint.
            self._high = len(cache) + self._cap
        else:
            self._high = self._cap

    def write(self, index: int, pane: PaneKey, key: bytes, payload: bytes | None) -> None:
        """At a checkpoint: aggregate `index`'s dirty `pane`, as the changelog gets it
        (payload None: deleted). Takes effect at `commit`."""
        if payload is None:
            self._batch.delete(key)
            return
        self._batch.put(key, payload)
        ck = (index, pane)
        self._cache[ck] = self._cache.pop(ck)  # just written: most recently used

    def restore(self, index: int, key: bytes, payload: bytes) -> None:
        """A changelog entry of aggregate `index`, written straight to disk (not cached).
        The payload is not decoded here: a bad one fails when its window is used."""
        self._batch.put(key, payload)
        self._views[index].count += 1
        self._batched += 1
        if self._batched >= RESTORE_BATCH:
            self._flush()

    def commit(self) -> None:
        """End of a checkpoint (or restore): write the batch, then trim the cache. The
        engine's dirty sets must be clear by now."""
        self._flush()
        for view in self._views:
            view.gone.clear()
            view.absent = None
        self._high = self._cap
        if len(self._cache) > self._cap:
            self._trim()

    def _flush(self) -> None:
        if not self._batch.is_empty():
            self._db.write(self._batch)
            self._batch = self._new_batch()
        self._batched = 0

    def close(self) -> None:
        """Close and delete the database (its state is in the changelog)."""
        from rocksdict import Rdict

        self._cache.clear()
        self._db.close()
        Rdict.destroy(str(self.path), self._options)
        _remove(self.path)  # destroy leaves the directory itself


class RocksPanes:
    """One aggregate's view of a `RocksPartition`: a `PaneStore`."""

    __slots__ = ("_cache", "_codec", "_db", "_index", "_part", "absent", "count", "gone")

    def __init__(self, part: RocksPartition, index: int, codec: PaneCodec) -> None:
        self._part = part
        self._index = index
        self._codec = codec
        self._cache = part._cache
        self._db = part._db
        self.count = 0  # panes held, cached or not
        #: Popped since the last checkpoint: RocksDB still has them until it.
        self.gone: set[PaneKey] = set()
        #: The last key `get` found nowhere: `__setitem__` of it is a new pane.
        self.absent: PaneKey | None = None

    def get(self, key: PaneKey, /) -> Accumulator | None:
        acc = self._cache.get((self._index, key))
        if acc is not None or key in self.gone:
            return acc
        raw = self._db.get(self._codec.key(key))
        if raw is None:
            self.absent = key
            return None
        acc = self._codec.load(raw)
        self._part._cache_one((self._index, key), acc)
        return acc

    def __setitem__(self, key: PaneKey, acc: Accumulator, /) -> None:
        ck = (self._index, key)
        if ck not in self._cache:
            if key in self.gone:
                self.gone.discard(key)
                self.count += 1
            elif key == self.absent or self._db.get(self._codec.key(key)) is None:
                self.count += 1
        self.absent = None
        self._part._cache_one(ck, acc)

    def pop(self, key: PaneKey, default: None, /) -> Accumulator | None:
        acc = self._cache.pop((self._index, key), None)
        if acc is None:
            if key in self.gone:
                return default
            raw = self._db.get(self._codec.key(key))
            if raw is None:
                return default
            acc = self._codec.load(raw)
        self.gone.add(key)  # deleted from RocksDB at the checkpoint
        self.count -= 1
        return acc

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[PaneKey]:
        """Every pane key, cached or on disk (a scan of the aggregate's keys)."""
        index = self._index
        cached = {key for i, key in self._cache if i == index}
        yield from cached
        prefix = self._codec.prefix
        for raw in self._db.keys(from_key=prefix):
            assert isinstance(raw, bytes)  # raw mode
            if not raw.startswith(prefix):
                break
            key = self._codec.pane(raw)
            if key not in cached and key not in self.gone:
                yield key
