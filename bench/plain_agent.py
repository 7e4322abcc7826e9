"""Baseline for bench/ingest.py: a plain Faust agent that only counts raw messages.

Run as `python bench/plain_agent.py worker --without-web` with IOC_KAFKA__BOOTSTRAP,
BENCH_APP_ID and BENCH_EXPECT set; prints the elapsed time once BENCH_EXPECT messages
have been read and exits.
"""

from __future__ import annotations

import os
import sys
import time

import faust

from streams.worker.settings import Settings
from streams.worker.topics import SOURCE

settings = Settings()
app = faust.App(
    os.environ["BENCH_APP_ID"],
    # Same transport as ioc (fetch wait from settings): Faust's hard-coded 1.5 s
    # fetch wait would make this baseline fetch-bound on brokers that hold fetches.
    broker=f"ioc://{settings.kafka.bootstrap}",
    broker_session_timeout=settings.kafka.session_timeout_s,
    broker_heartbeat_interval=settings.kafka.heartbeat_interval_s,
    consumer_auto_offset_reset="earliest",
    datadir="/tmp/bench-plain-agent",
    value_serializer="raw",
    key_serializer="raw",
)
app.settings = settings  # read by streams.worker.transport
expect = int(os.environ["BENCH_EXPECT"])
topics = app.topic(*SOURCE.values(), value_type=bytes, value_serializer="raw")
state = {"count": 0, "first": 0.0}


@app.agent(topics)
async def count(stream):  # type: ignore[no-untyped-def]
    async for _value in stream:
        if state["count"] == 0:
            state["first"] = time.perf_counter()
        state["count"] += 1
        if state["count"] >= expect:
            elapsed = time.perf_counter() - state["first"]
            print(f"BENCH plain {expect} {elapsed:.3f}", flush=True)
            os._exit(0)


if __name__ == "__main__":
    sys.exit(app.main())
