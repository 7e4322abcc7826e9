"""`ioc demo`: embedded broker, worker and simulator as one process tree.

Stops everything on Ctrl-C, SIGTERM or after --duration, and leaves no process
behind: the children run in their own sessions (so a terminal's Ctrl-C reaches only
this process, which stops them in order: simulator, worker, broker) and die with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from streams.broker import EmbeddedBroker
from streams.kafka import client_options
from streams.processes import spawn, stop
from streams.settings import Settings
from streams.simulate import Simulation, run

__all__ = ["Samples", "read_metrics", "run_demo"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read_metrics(url: str, timeout: float = 2.0) -> Samples:
    """Samples of a Prometheus /metrics page keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def _summary(samples: Samples) -> list[str]:
    lines = []
    for (name, labels), value in sorted(samples.items()):
        if name.startswith("ioc_") and name.endswith("_total") and value:
            label_text = ",".join(f"{key}={val}" for key, val in labels)
            lines.append(f"  {name}{{{label_text}}} {value:g}")
    return lines


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    logs = settings.data_dir / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    metrics_url = f"http://{settings.web.host}:{settings.web.port}/metrics"
    broker_log = (logs / "broker.log").open("wb")
    worker_log = (logs / "worker.log").open("wb")
    with broker_log, worker_log:
        broker = EmbeddedBroker(settings.broker.host, settings.broker.port, log=broker_log)
        broker.start(settings.broker.start_timeout_s)
        worker: subprocess.Popen[bytes] | None = None
        try:
            # The worker reads its settings from the environment like any worker;
            # only the bootstrap differs: the broker this demo started.
            environment = {**os.environ, "IOC_KAFKA__BOOTSTRAP": broker.bootstrap}
            worker = spawn(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=environment,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            print(
                f"ioc demo\n"
                f"  broker   {broker.bootstrap} (embedded Tansu, memory only)\n"
                f"  metrics  {metrics_url}\n"
                f"  logs     {logs}/\n"
                f"  traffic  {args.rate:g} messages/s, seed {args.seed}, "
                f"{args.bad_share:.0%} malformed"
                + (f", {args.duration:g} s" if args.duration else "")
                + "\nCtrl-C stops everything.",
                flush=True,
            )
            simulation = Simulation(
                seed=args.seed,
                start=datetime.now(UTC),
                rate=args.rate,
                duration=args.duration,
                bad_share=args.bad_share,
            )
            kafka = settings.kafka.model_copy(update={"bootstrap": broker.bootstrap})
            started = time.monotonic()
            sent = asyncio.run(_simulate(simulation, client_options(kafka), args, worker))
            print(f"\nsent {sent} messages in {time.monotonic() - started:.1f} s", flush=True)
            if worker.poll() is not None:
                print(f"the worker stopped with code {worker.returncode}: see {logs}/worker.log")
                return 1
            samples = _wait_for_ingest(metrics_url, sent, worker, timeout=60.0)
            print("what the worker counted:", *_summary(samples), sep="\n", flush=True)
            return 0
        finally:
            if worker is not None:
                stop(worker)
            broker.stop()
            print("stopped the worker and the broker", flush=True)


async def _simulate(
    simulation: Simulation,
    options: dict[str, object],
    args: argparse.Namespace,
    worker: subprocess.Popen[bytes],
) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)

    async def watch_worker() -> None:
        while worker.poll() is None and not stop_requested.is_set():
            await asyncio.sleep(0.5)
        stop_requested.set()

    watcher = asyncio.create_task(watch_worker())
    try:
        return await run(
            simulation, options, manifest=args.manifest, record=args.record, stop=stop_requested
        )
    finally:
        stop_requested.set()
        await watcher


def _wait_for_ingest(
    url: str, sent: int, worker: subprocess.Popen[bytes], timeout: float
) -> Samples:
    """Poll /metrics until ingest has read every message sent (or time runs out)."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            samples = read_metrics(url)
        except OSError:
            samples = {}
        if total(samples, "ioc_ingest_messages_total") >= sent:
            break
        time.sleep(0.5)
    return samples
