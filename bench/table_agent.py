"""Baseline for bench/window_stage.py: a Faust agent updating a tumbling windowed table.

Run as `python bench/table_agent.py worker --without-web -l info` with
IOC_KAFKA__BOOTSTRAP, BENCH_APP_ID and BENCH_EXPECT set. Per refDevice, a 1-minute
tumbling window on event time (`dateObserved`) holds [count, sum of pm25]: the mean's
inputs, as ours and Quix keep them. Faust writes one changelog record per update.
Prints the elapsed wall and CPU time from the first event to the BENCH_EXPECT-th and
exits.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import faust
import orjson

from streams.worker.settings import Settings
from streams.worker.topics import VALIDATED

settings = Settings()
app = faust.App(
    os.environ["BENCH_APP_ID"],
    # Same transport as ioc (fetch wait from settings): Faust's hard-coded 1.5 s fetch
    # wait would make this baseline fetch-bound on brokers that hold fetches.
    broker=f"ioc://{settings.kafka.bootstrap}",
    broker_session_timeout=settings.kafka.session_timeout_s,
    broker_heartbeat_interval=settings.kafka.heartbeat_interval_s,
    broker_commit_interval=settings.kafka.commit_interval_s,
    # The producer settings of the ioc stages: Faust's default linger of 0 sends about
    # one request per changelog record.
    producer_linger=settings.kafka.linger_ms / 1000,
    producer_max_batch_size=settings.kafka.max_batch_bytes,
    consumer_auto_offset_reset="earliest",
    topic_partitions=settings.kafka.partitions,
    datadir=f"/tmp/bench-table-agent-{os.environ['BENCH_APP_ID']}",
)
app.settings = settings  # type: ignore[attr-defined]  # read by streams.worker.transport
expect = int(os.environ["BENCH_EXPECT"])
topic = app.topic(VALIDATED["city"], value_type=bytes, value_serializer="raw")
state = {"count": 0, "first": 0.0, "first_cpu": 0.0, "event_time": 0.0}


def event_time(event: Any) -> float:
    # The agent parses the event once and leaves its time here for the table.
    return state["event_time"]


pm25 = (
    app.Table("pm25-1m", default=lambda: [0, 0.0])
    .tumbling(60, expires=timedelta(minutes=2))
    .relative_to(event_time)  # type: ignore[attr-defined]  # on WindowWrapper, not its ABC
)


@app.agent(topic)
async def aggregate(stream: faust.StreamT[bytes]) -> None:
    async for value in stream:
        if state["count"] == 0:
            state["first"] = time.perf_counter()
            state["first_cpu"] = time.process_time()
        event = orjson.loads(value)
        state["event_time"] = datetime.fromisoformat(event["dateObserved"]).timestamp()
        device = event["refDevice"]
        count, total = pm25[device].current()
        pm25[device] = [count + 1, total + event["pm25"]]
        state["count"] += 1
        if state["count"] >= expect:
            elapsed = time.perf_counter() - state["first"]
            cpu = time.process_time() - state["first_cpu"]
            print(f"BENCH table {expect} {elapsed:.3f} {cpu:.3f}", flush=True)
            os._exit(0)


if __name__ == "__main__":
    sys.exit(app.main())
