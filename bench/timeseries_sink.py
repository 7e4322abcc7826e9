"""Points/s written by LineProtocolSink to a local VictoriaMetrics.

    python bench/timeseries_sink.py [--records 200000] [--batch-lines 5000]

Starts `victoria-metrics` (Debian package) on a free port with a temporary data
directory, writes N final `air_station_5m` results (4 value statistics + count each,
1,000 stations, 5-minute windows) in Kafka-sized batches of 5,000 records with a
flush after each (as the sink stage does), and reports records/s and samples/s
(one record is one line, five VictoriaMetrics samples) including encoding. Figures
are for this machine and run, never an assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from sinks.base import SinkRecord
from sinks.timeseries import LineProtocolSink, TimeseriesConfig
from streams.devtools.servers import LocalVictoriaMetrics

STATIONS = 1000
T0 = (int(time.time() * 1000) - 48 * 3_600_000) // 3_600_000 * 3_600_000


def record(i: int) -> SinkRecord:
    station, window = i % STATIONS, i // STATIONS
    start = T0 + window * 300_000
    value: dict[str, Any] = {
        "identity": f"air_station_5m|HD-AQ-{station:04d}|Huyện {station % 12}|{start}",
        "aggregate": "air_station_5m",
        "family": "city",
        "group": {"refDevice": f"HD-AQ-{station:04d}", "areaServed": f"Huyện {station % 12}"},
        "window_start_ms": start,
        "window_end_ms": start + 300_000,
        "count": 10,
        "final": True,
        "statistics": {
            "count": 10,
            "pm25_count": 10,
            "pm25_mean": 40.0 + (i % 97) / 10,
            "pm25_max": 60.5 + (i % 13),
            "pm10_mean": 70.25,
        },
    }
    raw = orjson.dumps(value)
    return SinkRecord("ioc.aggregates", 0, i, value["identity"].encode(), raw, value)


async def run(url: str, records: int, batch_lines: int, kafka_batch: int) -> None:
    data = [record(i) for i in range(records)]
    sink = LineProtocolSink(TimeseriesConfig(url=url, batch_lines=batch_lines))
    await sink.open()
    started = time.perf_counter()
    for i in range(0, records, kafka_batch):
        await sink.write(data[i : i + kafka_batch])
        assert await sink.flush() == []
    elapsed = time.perf_counter() - started
    await sink.close()
    print(
        f"{records:,} records in {elapsed:.2f} s: {records / elapsed:,.0f} points/s "
        f"({5 * records / elapsed:,.0f} samples/s), batch_lines={batch_lines}, "
        f"written={sink.status.written:,}, retries={sink.status.retries}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch-lines", type=int, default=5000)
    parser.add_argument("--kafka-batch", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = LocalVictoriaMetrics(Path(directory), search_cache=False).start()
        try:
            asyncio.run(run(server.url, args.records, args.batch_lines, args.kafka_batch))
            server.force_flush()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
