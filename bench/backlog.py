"""A fresh worker on a backlog: the situation after any outage, measured end to end.

    python bench/backlog.py [--messages 100000] [--minutes 10]

Preloads simulator traffic (all three families, every incident type) spanning
`--minutes` of event time into the source topics of an embedded broker, then runs one
`ioc worker` until every stage has read everything it was given (consumer lag 0 on
every partition, twice in a row). Reports the time from the first message ingested
to then, events/s, and what was dead-lettered `late` or dropped as replayed, from the
worker's /metrics. Figures are for this machine and this run, never an assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.devtools.brokers import EmbeddedBroker
from streams.devtools.processes import free_port, spawn, stop
from streams.devtools.scrape import Samples, read_metrics, total
from streams.devtools.simulate import Simulation
from streams.worker.kafka import ensure_worker_topics
from streams.worker.settings import KafkaSettings, Settings

sys.path.insert(0, str(Path(__file__).parent))
from ingest import send_messages  # bench/ingest.py, beside this script


async def preload(bootstrap: str, count: int, minutes: float) -> None:
    await ensure_worker_topics(Settings(kafka=KafkaSettings(bootstrap=bootstrap)))
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    simulation = Simulation(
        seed=7, start=start, rate=count / (minutes * 60), duration=minutes * 60, bad_share=0.01
    )
    await send_messages(bootstrap, simulation, count)


def drained(metrics: Samples) -> bool:
    lags = [value for (name, _), value in metrics.items() if name == "ioc_consumer_lag_records"]
    return bool(lags) and all(value == 0 for value in lags)


def run_worker(bootstrap: str) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "IOC_KAFKA__BOOTSTRAP": bootstrap,
        "IOC_WEB__PORT": str(port),
        "IOC_APP_ID": f"bench-backlog-{uuid.uuid4().hex[:6]}",
        "IOC_DATA_DIR": f"/tmp/bench-backlog-{uuid.uuid4().hex[:6]}",
    }
    worker = spawn(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        first: float | None = None
        calm = 0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                metrics = read_metrics(url)
            except OSError:
                time.sleep(0.2)
                continue
            now = time.perf_counter()
            if first is None and total(metrics, "ioc_ingest_messages_total"):
                first = now
            calm = calm + 1 if first is not None and drained(metrics) else 0
            if calm >= 2:
                return {
                    "seconds": now - first,  # type: ignore[operator]
                    "events": total(metrics, "ioc_ingest_events_accepted_total"),
                    "late": total(metrics, "ioc_windows_late_events_total")
                    + total(metrics, "ioc_rules_late_inputs_total"),
                    "replayed": total(metrics, "ioc_replayed_events_total"),
                    "alerts": total(metrics, "ioc_rules_alerts_total"),
                }
            time.sleep(0.5)
        raise TimeoutError("the worker did not drain its backlog")
    finally:
        stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    with EmbeddedBroker(port=free_port()) as broker:
        asyncio.run(preload(broker.bootstrap, args.messages, args.minutes))
        got = run_worker(broker.bootstrap)
    print(
        f"{args.messages} messages over {args.minutes:g} min of event time: "
        f"{got['events']:,.0f} events drained in {got['seconds']:.1f} s "
        f"({got['events'] / got['seconds']:,.0f} events/s); late {got['late']:,.0f}, "
        f"replayed {got['replayed']:,.0f}, alert records {got['alerts']:,.0f}"
    )


if __name__ == "__main__":
    main()
