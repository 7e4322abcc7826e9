"""Open windows in RAM or in RocksDB: memory and throughput at N open windows.

    python bench/window_store.py --store memory --windows 1000000
    python bench/window_store.py --store rocksdb --windows 1000000 [--cache-panes 100000]

One aggregate per `source.ip` (count, distinct and last `user.name`, 1 h windows): the
shape that opens millions of windows. N source IPs each send one failed login within
the same hour, over 4 partitions, with a checkpoint (`take_dirty` of every partition)
every 5,000 events as the window stage does. Reports:

- events/s while the N windows open (each event a new window);
- RSS with all N open (and the peak), accumulators in RAM, the store's size on disk;
- events/s of a second event per IP (every window updated again: with rocksdb and a
  cache smaller than N, nearly every one is read back from disk);
- how long closing all N windows takes (the idle clock closes them in one `advance`).

Run each mode in its own process: a process's RSS does not shrink back. Figures are
for this machine and run, never an assertion.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.aggregates import Aggregate
from models.timefmt import rfc3339
from streams.core.windows import WindowEngine
from streams.core.windows.store import RocksStores

PARTITIONS = 4
BATCH = 5000
T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z, an hour boundary
USERS = ["admin", "root", "guest", "oracle", "test", "ubuntu", "pi", "support"]

BY_SOURCE_IP = Aggregate.model_validate(
    {
        "name": "auth_failures_by_source_ip_1h",
        "family": "security",
        "filter": {"event.category": "authentication", "event.outcome": "failure"},
        "group_by": ["source.ip"],
        "values": ["user.name"],
        "statistics": ["count", "distinct", "last"],
        "window": {"size": "1h", "grace": "5m"},
    }
)


def events(count: int, second: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """(partition, validated event), generated as consumed so they take no memory."""
    for i in range(count):
        t = T0 + i * 1_500_000 // count + (1_800_000 if second else 0)
        ip = f"{10 + (i >> 24) % 240}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        yield (
            f"ioc.security.validated:{i % PARTITIONS}",
            {
                "@timestamp": rfc3339(t),
                "event": {"category": ["authentication"], "outcome": "failure"},
                "source": {"ip": ip},
                "user": {"name": USERS[(i + second) % len(USERS)]},
                "organization": {"name": "SO-TTTT"},
            },
        )


def feed(engine: WindowEngine, count: int, second: bool) -> float:
    """Events/s of one pass, checkpoints included."""
    start = time.perf_counter()
    for n, (partition, event) in enumerate(events(count, second), 1):
        engine.process(partition, event, 0)
        if n % BATCH == 0:
            for p in range(PARTITIONS):
                engine.take_dirty(f"ioc.security.validated:{p}")
    for p in range(PARTITIONS):
        engine.take_dirty(f"ioc.security.validated:{p}")
    return count / (time.perf_counter() - start)


def memory_mb() -> tuple[float, float]:
    """(RSS, peak RSS) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def disk_mb(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--cache-panes", type=int, default=100_000)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="ioc-bench-store-"))
    store = None
    if args.store == "rocksdb":
        store = RocksStores(scratch, cache_panes=args.cache_panes)
    engine = WindowEngine([BY_SOURCE_IP], allowed_lateness_ms=5000, store=store)
    gc.collect()
    base, _ = memory_mb()
    label = args.store
    if store is not None:
        label += f", {args.cache_panes:,} accumulators cached per partition"
    print(f"store: {label}; {PARTITIONS} partitions; RSS before: {base:,.0f} MB")

    opening = feed(engine, args.windows, second=False)
    gc.collect()
    rss, peak = memory_mb()
    print(f"open {engine.open_windows():,} windows: {opening:>9,.0f} events/s")
    print(
        f"  RSS {rss:,.0f} MB (peak {peak:,.0f} MB, +{rss - base:,.0f} MB for the windows);"
        f" {engine.cached_entries():,} accumulators in RAM; {disk_mb(scratch):,.0f} MB on disk"
    )
    updating = feed(engine, args.windows, second=True)
    rss, peak = memory_mb()
    print(f"update every window once: {updating:>9,.0f} events/s; RSS {rss:,.0f} MB")
    start = time.perf_counter()
    finals = len(engine.advance(10**15))  # every partition idle: all windows close
    print(f"close all: {finals:,} finals in {time.perf_counter() - start:.1f} s")
    engine.close()
    if store is not None:
        store.close()
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
