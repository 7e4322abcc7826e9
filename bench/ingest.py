"""Ingest throughput against a plain Faust agent, measured in one run on one broker.

    python bench/ingest.py [--messages 100000]

Preloads simulator traffic into the source topics of an embedded broker, then lets
(1) a plain Faust agent that only counts raw messages and (2) `ioc worker` (decode,
validate, normalise, produce to the next stage or the dead-letter topic) each read
all of it with a fresh consumer group. Reports messages/s for each and the ratio;
figures are for this machine and this run, never an assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streams.devtools.brokers import EmbeddedBroker
from streams.devtools.processes import free_port, spawn, stop
from streams.devtools.scrape import read_metrics, total
from streams.devtools.simulate import Simulation
from streams.worker.kafka import ensure_topics
from streams.worker.settings import KafkaSettings
from streams.worker.topics import ALL

HERE = Path(__file__).parent


async def preload(bootstrap: str, count: int) -> None:
    await ensure_topics(KafkaSettings(bootstrap=bootstrap), ALL)
    simulation = Simulation(seed=7, start=datetime.now(UTC), rate=20_000.0, bad_share=0.01)
    await send_messages(bootstrap, simulation, count)


async def send_messages(bootstrap: str, simulation: Simulation, count: int) -> None:
    """The simulation's first `count` messages, produced as fast as the broker takes them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        pending = []
        for number, message in enumerate(simulation.messages()):
            if number >= count:
                break
            pending.append(await producer.send(message.topic, message.value, key=message.key))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def plain_faust(bootstrap: str, count: int) -> float:
    env = {
        **os.environ,
        "IOC_KAFKA__BOOTSTRAP": bootstrap,
        "BENCH_APP_ID": f"bench-plain-{uuid.uuid4().hex[:6]}",
        "BENCH_EXPECT": str(count),
    }
    result = subprocess.run(
        [sys.executable, str(HERE / "plain_agent.py"), "worker", "--without-web", "-l", "info"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Faust's worker routes stdout through its logger, so look in both streams.
    for line in (result.stdout + result.stderr).splitlines():
        if "BENCH plain" in line:
            return count / float(line.split()[-1])
    raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])


def ioc_worker(bootstrap: str, count: int) -> float:
    port = free_port()
    env = {
        **os.environ,
        "IOC_KAFKA__BOOTSTRAP": bootstrap,
        "IOC_WEB__PORT": str(port),
        "IOC_APP_ID": f"bench-ioc-{uuid.uuid4().hex[:6]}",
        "IOC_DATA_DIR": "/tmp/bench-ioc",
    }
    worker = spawn(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                read = total(read_metrics(url), "ioc_ingest_messages_total")
            except OSError:
                read = 0
            now = time.perf_counter()
            if read and first is None:
                first, first_read = now, read
            if read >= count:
                assert first is not None
                return (read - first_read) / (now - first)
            time.sleep(0.1)
        raise TimeoutError("ioc worker did not finish")
    finally:
        stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    with EmbeddedBroker(port=free_port()) as broker:
        started = time.perf_counter()
        asyncio.run(preload(broker.bootstrap, args.messages))
        print(f"preloaded {args.messages} messages in {time.perf_counter() - started:.1f} s")
        plain = plain_faust(broker.bootstrap, args.messages)
        print(f"plain Faust agent (count raw messages): {plain:,.0f} messages/s")
        ingest = ioc_worker(broker.bootstrap, args.messages)
        print(f"ioc ingest (validate + produce):        {ingest:,.0f} messages/s")
        print(f"ratio ingest / plain agent: {ingest / plain:.2f}")


if __name__ == "__main__":
    main()
