"""Window engine throughput, without Kafka: the CPU budget of the window stage.

    python bench/windows.py [--events 300000] [--keys 1000] [--repeat 3]
                            [--store memory|rocksdb] [--cache-panes 100000]

Generates air-quality readings as `ioc.city.validated` carries them (normalised JSON,
times in UTC "…Z"; checked against ingest's own output for one reading), one reading
per station every 12 s of event time, slightly out of order, and runs them through a
`WindowEngine` with the default pack's city aggregates. Reports events/s for:

- process() only, on decoded dicts;
- orjson.loads of the record value + process();
- the stage's loop: loads + process, take_dirty and advance every 5,000 records
  (one checkpoint per fetched batch), serialising the changed state.

Best of `--repeat` runs, each on a fresh engine. `--store rocksdb` keeps the
accumulators in RocksDB (under a temporary directory) behind a cache of `--cache-panes`
per partition, as `IOC_WINDOWS__STORE=rocksdb` does. Figures are for this machine and
run, never an assertion.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from streams.core.ingest import process_message
from streams.core.windows import WindowEngine, default_aggregates
from streams.core.windows.store import RocksStores
from streams.worker.settings import IngestSettings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PARTITIONS = 4
BATCH = 5000
T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z
DISTRICTS = ["TP Hải Dương", "TP Chí Linh", "TX Kinh Môn", "Nam Sách", "Kim Thành", "Thanh Hà"]


def readings(count: int, keys: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(partition, validated JSON) in the order a consumer would read them."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        key = i % keys
        t = T0 + (i // keys) * 12_000 + key * 12_000 // keys + rng.randint(-3000, 0)
        device = f"HD-AQ-{key:04d}"
        # As pydantic writes it: microseconds, "Z".
        stamp = (EPOCH + timedelta(milliseconds=t)).isoformat().replace("+00:00", "Z")
        pm25 = round(rng.lognormvariate(3.8, 0.3), 1)
        event = {
            "id": f"urn:ngsi-ld:AirQualityObserved:{device}:{stamp}",
            "type": "AirQualityObserved",
            "refDevice": device,
            "dateObserved": stamp,
            "areaServed": DISTRICTS[key % len(DISTRICTS)],
            "location": {"type": "Point", "coordinates": [106.31 + key / 1e4, 20.94]},
            "pm25": pm25,
            "pm10": round(pm25 * rng.uniform(1.35, 1.8), 1),
            "no2": round(rng.uniform(15, 45), 1),
            "o3": round(rng.uniform(15, 85), 1),
            "co": round(rng.uniform(0.4, 1.3), 2),
            "so2": round(rng.uniform(5, 15), 1),
            "airQualityIndex": float(rng.randint(40, 180)),
            "temperature": round(rng.uniform(15, 25), 1),
            "relativeHumidity": round(rng.uniform(0.6, 0.95), 2),
        }
        out.append((f"ioc.city.validated:{key % PARTITIONS}", orjson.dumps(event)))
    return out


def check_format(value: bytes) -> None:
    """The generated record is exactly what ingest forwards for the same reading."""
    event = orjson.loads(value)
    when = datetime.fromisoformat(event["dateObserved"])
    [accepted] = process_message(
        "city", value, IngestSettings(), when + timedelta(minutes=1)
    ).accepted
    assert orjson.loads(accepted.value) == event, (accepted.value, value)


def timed(
    run: Callable[[WindowEngine], int], repeat: int, store: RocksStores | None
) -> tuple[float, int]:
    best, outputs = float("inf"), 0
    for _ in range(repeat):
        aggregates = [a for a in default_aggregates() if a.family == "city"]
        engine = WindowEngine(
            aggregates, allowed_lateness_ms=5000, idle_timeout_ms=30_000, store=store
        )
        start = time.perf_counter()
        outputs = run(engine)
        best = min(best, time.perf_counter() - start)
        engine.close()
    return best, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    parser.add_argument("--cache-panes", type=int, default=100_000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ioc-bench-"))
    store = None
    if args.store == "rocksdb":
        store = RocksStores(scratch, cache_panes=args.cache_panes)

    records = readings(args.events, args.keys)
    check_format(records[0][1])
    decoded = [(partition, orjson.loads(value)) for partition, value in records]
    now = int(datetime.now(UTC).timestamp() * 1000)
    aggregates = [a.name for a in default_aggregates() if a.family == "city"]
    print(f"{args.events:,} readings, {args.keys:,} stations, {PARTITIONS} partitions")
    if args.store == "rocksdb":
        print(f"store: rocksdb, {args.cache_panes:,} accumulators cached per partition")
    print(f"city aggregates: {', '.join(aggregates)} (a reading matches 3 of them)")

    def process_only(engine: WindowEngine) -> int:
        n = 0
        for partition, event in decoded:
            n += len(engine.process(partition, event, now))
        return n

    def with_loads(engine: WindowEngine) -> int:
        n = 0
        for partition, value in records:
            n += len(engine.process(partition, orjson.loads(value), now))
        return n

    def stage_loop(engine: WindowEngine) -> int:
        n = 0
        for start in range(0, len(records), BATCH):
            for partition, value in records[start : start + BATCH]:
                n += len(engine.process(partition, orjson.loads(value), now))
            for p in range(PARTITIONS):
                engine.take_dirty(f"ioc.city.validated:{p}")
            n += len(engine.advance(now))
        return n

    for label, run in (
        ("process() only", process_only),
        ("orjson.loads + process()", with_loads),
        ("+ take_dirty/advance per 5,000", stage_loop),
    ):
        seconds, outputs = timed(run, args.repeat, store)
        rate = args.events / seconds
        print(
            f"{label:32s} {rate:>10,.0f} events/s  ({1e6 / rate:.1f} µs/event, {outputs:,} outputs)"
        )
    if store is not None:
        store.close()
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
