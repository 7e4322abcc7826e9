"""`ioc demo`: embedded broker, worker and simulator as one process tree.

Stops everything on Ctrl-C, SIGTERM or after --duration, and leaves no process behind.
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
from streams.settings import Settings

__all__ = ["read_metrics", "run_demo"]


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


def _summary(samples: Samples) -> list[str]:
    lines = []
    for (name, labels), value in sorted(samples.items()):
        if name.startswith("ioc_") and name.endswith("_total") and value:
            label_text = ",".join(f"{key}={val}" for key, val in labels)
            lines.append(f"  {name}{{{label_text}}} {value:g}")
    return lines


def _child_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    env = dict(os.environ)
    env["IOC_KAFKA__BOOTSTRAP"] = bootstrap
    env["IOC_WEB__PORT"] = str(settings.web.port)
    return env


def _stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.simulate import Simulation

    logs = settings.data_dir / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    metrics_url = f"http://{settings.web.host}:{settings.web.port}/metrics"
    with (
        (logs / "broker.log").open("wb") as broker_log,
        EmbeddedBroker(settings.broker.host, settings.broker.port, log=broker_log) as broker,
    ):
        kafka = settings.kafka.model_copy(update={"bootstrap": broker.bootstrap})
        with (logs / "worker.log").open("wb") as worker_log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=_child_env(settings, broker.bootstrap),
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                print(
                    f"ioc demo\n"
                    f"  broker   {broker.bootstrap} (embedded Tansu, memory only)\n"
                    f"  metrics  {metrics_url}\n"
                    f"  logs     {logs}/\n"
                    f"  traffic  {args.rate:g} messages/s, seed {args.seed}, "
                    f"{args.bad_share:.0%} malformed\n"
                    f"Ctrl-C stops everything.",
                    flush=True,
                )
                simulation = Simulation(
                    seed=args.seed,
                    start=datetime.now(UTC),
                    rate=args.rate,
                    duration=args.duration,
                    bad_share=args.bad_share,
                )
                started = time.monotonic()
                sent = asyncio.run(_simulate(simulation, client_options(kafka), args, worker))
                elapsed = time.monotonic() - started
                print(f"\nsent {sent} messages in {elapsed:.1f} s; waiting for ingest to catch up")
                samples = _wait_for_ingest(metrics_url, sent, worker, timeout=30.0)
                if samples:
                    print("what the worker counted:", *_summary(samples), sep="\n")
            finally:
                _stop_process(worker)
    print("stopped broker and worker")
    return 0 if worker.returncode in (0, -signal.SIGTERM) else 1


async def _simulate(
    simulation: object,
    options: dict[str, object],
    args: argparse.Namespace,
    worker: subprocess.Popen[bytes],
) -> int:
    from streams.simulate import run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def watch_worker() -> None:
        while worker.poll() is None and not stop.is_set():
            await asyncio.sleep(0.5)
        if worker.poll() is not None:
            print(f"the worker exited with code {worker.returncode}; see its log", flush=True)
        stop.set()

    watcher = asyncio.create_task(watch_worker())
    try:
        return await run(simulation, options, manifest=args.manifest, record=args.record, stop=stop)
    finally:
        stop.set()
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
            time.sleep(0.5)
            continue
        read = sum(v for (name, _), v in samples.items() if name == "ioc_ingest_messages_total")
        if read >= sent:
            break
        time.sleep(0.5)
    return samples
