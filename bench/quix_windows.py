"""Baseline for bench/window_stage.py: the same windows in Quix Streams.

Runs with the bench virtualenv's python (Quix Streams' pins conflict with ours, so it
is not a dependency of the project), never imports the project:

    python bench/quix_windows.py --bootstrap HOST:PORT --topic T --group G --output O \
        --expect N --state-dir DIR [--group-by]

A tumbling 1-minute window per refDevice (the message key, or `group_by("refDevice")`
through a repartition topic with --group-by) with count and mean of pm25, on event time
(`dateObserved`), 5 s grace, final results produced to the output topic. Prints
`BENCH quix <N> <seconds> <CPU seconds>` from the first message processed to the N-th,
and exits.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import datetime
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Mean


def event_time_ms(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    # Validated events carry UTC times as "…Z"; Python 3.11 parses that.
    return int(datetime.fromisoformat(value["dateObserved"]).timestamp() * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--group-by", action="store_true")
    args = parser.parse_args()

    progress = {"count": 0, "first": 0.0, "first_cpu": 0.0}

    def processed(topic: str, partition: int, offset: int) -> None:
        # Called after the pipeline has run for a message of any topic the app reads.
        # With group_by the window is fed by the repartition topic: count only those.
        if (topic == args.topic) == args.group_by:
            return
        if progress["count"] == 0:
            progress["first"] = time.perf_counter()
            progress["first_cpu"] = time.process_time()
        progress["count"] += 1
        if progress["count"] == args.expect:
            elapsed = time.perf_counter() - progress["first"]
            cpu = time.process_time() - progress["first_cpu"]
            print(f"BENCH quix {args.expect} {elapsed:.3f} {cpu:.3f}", flush=True)
            app.stop()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=1.0,  # as the ioc stages (IOC_KAFKA__COMMIT_INTERVAL_S)
        state_dir=args.state_dir,
        on_message_processed=processed,
        loglevel=logging.WARNING,
        consumer_extra_config={
            "fetch.wait.max.ms": 50,  # as IOC_KAFKA__FETCH_MAX_WAIT_MS
            # librdkafka's default 1 s backoff stalls on brokers that ignore the
            # per-partition fetch size (docs/BROKERS.md).
            "fetch.queue.backoff.ms": 10,
        },
    )
    source = app.topic(
        args.topic,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=event_time_ms,
    )
    output = app.topic(args.output, value_serializer="json")
    sdf = app.dataframe(source)
    if args.group_by:
        sdf = sdf.group_by("refDevice")
    sdf = (
        sdf.tumbling_window(duration_ms=60_000, grace_ms=5_000)
        .agg(count=Count(), mean=Mean("pm25"))
        .final()
    )
    sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
