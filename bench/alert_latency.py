"""Produce→alert latency of the rule path through a real `ioc worker`, on a real broker.

    python bench/alert_latency.py [--broker tansu|apache] [--seconds 60] [--rate 2000]
        [--setting default] [--setting IOC_KAFKA__FETCH_MAX_WAIT_MS=5,IOC_KAFKA__LINGER_MS=0]

"From the triggering event reaching Kafka to the alert record in ioc.alerts, p50/p99,
at a steady 2,000 events/s." For each broker (both in sequence unless `--broker` names
one) and each `--setting` (worker environment overrides; `default` = none; by default
the defaults, then a 5 ms fetch wait), on a fresh broker and a fresh worker:

- a rules file with one `count` rule: security authentication failures per source.ip,
  window 1m, gte 5, keep_firing_for 0s;
- background load: valid security events (successful logins, so they never trigger)
  at a steady `--rate` events/s, sent every 10 ms, event time = now;
- triggers: every `--trigger-every` s a fresh source.ip sends 5 failures: 4, and once
  those are acknowledged, the 5th. The trigger time is when the producer's future for
  the 5th resolves (acked: it is in Kafka);
- a consumer on ioc.alerts notes when the `firing` alert for that ip arrives.
  Latency = arrival − trigger ack, both on this process's perf_counter. It includes
  this consumer's own fetch (on Tansu, which holds a fetch for its full max wait, up to
  CONSUMER_FETCH_WAIT_MS more).

The path is producer → ioc.security.events → ingest → ioc.security.validated →
rules-route → <app>-rules-inputs → rules → ioc.alerts: three stage hops. Consumers on
the two middle topics find the trigger's records by event id, and their CreateTime
(set by the worker's producer when a stage sends them, wall-clock ms) splits the
latency per hop: ingest (ack → validated sent), route (→ rule input sent), rule
(→ alert sent), out (alert sent → arrival here). The worker's own histogram
`ioc_rules_alert_latency_seconds` (rule input's timestamp → alert sent: the last hop
only) is read from /metrics at the end for comparison.

Figures are for this machine and this run, never an assertion; the load average is
printed (2 cores, shared with the broker and the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.core.progress import is_progress
from streams.devtools.brokers import local_broker
from streams.devtools.processes import free_port, spawn, stop
from streams.devtools.scrape import read_metrics
from streams.worker import topics
from streams.worker.settings import BrokerSettings
from streams.worker.topics import ALERTS, SOURCE, VALIDATED

RULES_YAML = """
rules:
  - name: bench_brute_force
    kind: count
    family: security
    filter: {event.category: authentication, event.outcome: failure}
    group_by: [source.ip]
    window: 1m
    gte: 5
    keep_firing_for: 0s
    summary: {vi: "Dò mật khẩu từ {source.ip}", en: "Brute force from {source.ip}"}
"""
RULE = "bench_brute_force"
TICK_S = 0.01  # background load is sent in batches this often
WARM_UP_S = 2.0  # load without triggers first
DRAIN_S = 15.0  # after the load, how long to wait for the last alerts
CONSUMER_FETCH_WAIT_MS = 5  # this process's consumers: small, it adds to the figures
HEALTH_TIMEOUT_S = 120.0
BACKGROUND_IPS = [f"10.77.{n // 250}.{n % 250}" for n in range(1000)]


def event(ip: str, outcome: str, at: str, event_id: str | None = None) -> bytes:
    """A valid ECS security event (the shape of tests/conftest.py auth_failure)."""
    body: dict[str, Any] = {"category": ["authentication"], "outcome": outcome}
    body["action"] = "ssh_login"
    if event_id is not None:
        body["id"] = event_id
    return orjson.dumps(
        {
            "@timestamp": at,
            "event": body,
            "source": {"ip": ip},
            "destination": {"ip": "10.20.1.5", "port": 22},
            "user": {"name": "admin"},
            "host": {"name": "dvc-portal-01"},
            "organization": {"name": "SO-TTTT"},
            "observer": {"type": "ids"},
        }
    )


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the worker ----------------------------------------------------------------------


class Worker:
    """One `ioc worker` process (as tests/integration/conftest.py starts it)."""

    def __init__(self, bootstrap: str, directory: Path, env: dict[str, str]) -> None:
        self.app_id = f"bench-alerts-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.log_path = directory / f"{self.app_id}.log"
        self.env = {
            **os.environ,
            "IOC_KAFKA__BOOTSTRAP": bootstrap,
            "IOC_APP_ID": self.app_id,
            "IOC_WEB__PORT": str(self.port),
            "IOC_DATA_DIR": str(directory / self.app_id),
            "IOC_RULES__RULES": str(directory / "rules.yaml"),
            **env,
        }
        self.process: Any = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.process = spawn(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {HEALTH_TIMEOUT_S:.0f} s: {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


# -- the measurement -----------------------------------------------------------------


@dataclass
class Run:
    sent: int = 0  # events acknowledged, background and triggers
    failed: int = 0
    seconds: float = 0.0  # of load
    ack: dict[str, float] = field(default_factory=dict)  # ip → perf_counter at the ack
    ack_wall_ms: dict[str, float] = field(default_factory=dict)  # ip → time.time() ms
    arrival: dict[str, float] = field(default_factory=dict)  # ip → perf_counter
    alert_sent_ms: dict[str, int] = field(default_factory=dict)  # alert CreateTime
    validated_ms: dict[str, int] = field(default_factory=dict)  # trigger's validated record
    routed_ms: dict[str, int] = field(default_factory=dict)  # trigger's rule input
    duplicates: int = 0  # firing alerts seen twice for one ip


def trigger_id(ip: str) -> str:
    return f"bench-{ip}-trigger"


def ip_of_trigger(event_id: object) -> str | None:
    if (
        isinstance(event_id, str)
        and event_id.startswith("bench-")
        and event_id.endswith("-trigger")
    ):
        return event_id[len("bench-") : -len("-trigger")]
    return None


async def watch(consumer: AIOKafkaConsumer, on_record: Any, done: asyncio.Event) -> None:
    while not done.is_set():
        batches = await consumer.getmany(timeout_ms=100)
        arrived = time.perf_counter()
        for records in batches.values():
            for record in records:
                if not is_progress(record.headers):
                    on_record(record, arrived)


async def measure(bootstrap: str, app_id: str, args: argparse.Namespace) -> Run:
    run = Run()
    done = asyncio.Event()

    def on_alert(record: Any, arrived: float) -> None:
        alert = orjson.loads(record.value)
        ip = alert.get("labels", {}).get("source.ip")
        if alert.get("state") != "firing" or ip not in run.ack_wall_ms:
            return
        if ip in run.arrival:
            run.duplicates += 1
            return
        run.arrival[ip] = arrived
        run.alert_sent_ms[ip] = record.timestamp

    def on_validated(record: Any, arrived: float) -> None:
        if b"-trigger" not in record.value:
            return
        ip = ip_of_trigger(orjson.loads(record.value).get("event", {}).get("id"))
        if ip is not None:
            run.validated_ms.setdefault(ip, record.timestamp)

    def on_input(record: Any, arrived: float) -> None:
        ip = ip_of_trigger(orjson.loads(record.value)[4])
        if ip is not None:
            run.routed_ms.setdefault(ip, record.timestamp)

    # A fresh broker: every topic starts empty, so reading from the beginning is
    # reading from the end (and avoids Tansu's wrong ListOffsets(latest)).
    watchers = {
        ALERTS: on_alert,
        VALIDATED["security"]: on_validated,
        topics.rule_inputs(app_id): on_input,
    }
    consumers = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=CONSUMER_FETCH_WAIT_MS,
        )
        for topic in watchers
    ]
    load = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    triggers = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1)
    started: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for client in [*consumers, load, triggers]:
            await client.start()
            started.append(client)
        for consumer, on_record in zip(consumers, watchers.values(), strict=True):
            tasks.append(asyncio.create_task(watch(consumer, on_record, done)))
        await asyncio.sleep(1.0)  # the consumers' first fetches are in flight

        def acked(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                run.failed += 1
            else:
                run.sent += 1

        async def trigger(number: int) -> None:
            ip = f"198.18.{number // 250}.{number % 250}"
            at = now_text()
            first = [
                await triggers.send(SOURCE["security"], event(ip, "failure", at, f"bench-{ip}-{n}"))
                for n in range(4)
            ]
            for future in first:
                await future
                run.sent += 1
            last = await triggers.send(
                SOURCE["security"], event(ip, "failure", now_text(), trigger_id(ip))
            )
            await last
            run.ack[ip], run.ack_wall_ms[ip] = time.perf_counter(), time.time() * 1000
            run.sent += 1

        source = SOURCE["security"]
        begin = time.perf_counter()
        end = begin + args.seconds
        queued = 0
        next_trigger = begin + WARM_UP_S
        number = 0
        pending_triggers: list[asyncio.Task[None]] = []
        while (now := time.perf_counter()) < end:
            due = int((now - begin) * args.rate) - queued
            if due > 0:
                at = now_text()
                for n in range(due):
                    ip = BACKGROUND_IPS[(queued + n) % len(BACKGROUND_IPS)]
                    future = await load.send(source, event(ip, "success", at))
                    future.add_done_callback(acked)
                queued += due
            if now >= next_trigger:
                pending_triggers.append(asyncio.create_task(trigger(number)))
                number += 1
                next_trigger += args.trigger_every
            await asyncio.sleep(TICK_S)
        run.seconds = time.perf_counter() - begin
        await load.flush()
        await asyncio.gather(*pending_triggers)
        deadline = time.perf_counter() + DRAIN_S
        while len(run.arrival) < len(run.ack) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # the middle topics' consumers catch up
    finally:
        done.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in reversed(started):
            await client.stop()
    return run


# -- the report ----------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def spread(values: list[float]) -> str:
    if not values:
        return "no data"
    return (
        f"p50 {percentile(values, 0.5):6.1f}  p90 {percentile(values, 0.9):6.1f}  "
        f"p99 {percentile(values, 0.99):6.1f}  max {max(values):6.1f}  "
        f"mean {statistics.fmean(values):6.1f} ms"
    )


def report(broker: str, setting: str, run: Run, worker: Worker) -> dict[str, float]:
    latencies = {ip: (run.arrival[ip] - run.ack[ip]) * 1000 for ip in run.arrival}
    missing = sorted(set(run.ack) - set(run.arrival))
    print(f"\n== broker {broker}, worker settings: {setting}")
    print(
        f"sent {run.sent:,} events in {run.seconds:.1f} s = {run.sent / run.seconds:,.0f} "
        f"events/s ({run.failed} failed); triggers {len(run.ack)}, firing alerts "
        f"received {len(run.arrival)}" + (f", {run.duplicates} repeated" if run.duplicates else "")
    )
    if missing:
        print(f"MISSING alerts for {len(missing)} triggers: {', '.join(missing)}")
    print(f"produce→alert latency   {spread(list(latencies.values()))}")
    hops: dict[str, list[float]] = {"ingest": [], "route": [], "rule": [], "out": []}
    for ip in latencies:
        if ip in run.validated_ms and ip in run.routed_ms:
            ack_ms = run.ack_wall_ms[ip]
            arrival_ms = ack_ms + latencies[ip]
            hops["ingest"].append(run.validated_ms[ip] - ack_ms)
            hops["route"].append(run.routed_ms[ip] - run.validated_ms[ip])
            hops["rule"].append(run.alert_sent_ms[ip] - run.routed_ms[ip])
            hops["out"].append(arrival_ms - run.alert_sent_ms[ip])
    labels = {
        "ingest": "ack → validated sent",
        "route": "→ rule input sent",
        "rule": "→ alert sent",
        "out": "alert sent → here",
    }
    for hop, values in hops.items():  # CreateTime: ms resolution
        print(f"  {hop:6s} {labels[hop]:22s} {spread(values)}")
    try:
        samples = read_metrics(worker.url("/metrics"))
    except (urllib.error.URLError, OSError) as exc:
        print(f"worker /metrics unreadable: {exc!r}")
    else:
        name = "ioc_rules_alert_latency_seconds"
        count = samples.get((f"{name}_count", ()), 0.0)
        total = samples.get((f"{name}_sum", ()), 0.0)
        buckets = sorted(
            (float(dict(labels_)["le"]), value)
            for (sample, labels_), value in samples.items()
            if sample == f"{name}_bucket"
        )
        shown = []
        for le, value in buckets:  # cumulative, up to the first that holds them all
            shown.append(f"≤{le:g}s:{value:.0f}")
            if value >= count:
                break
        mean = f", mean {total / count * 1000:.1f} ms" if count else ""
        print(
            f"worker {name} (rule input sent → alert sent): count {count:.0f}{mean}; "
            f"cumulative {'  '.join(shown)}"
        )
    values = list(latencies.values())
    return {
        "p50": percentile(values, 0.5) if values else float("nan"),
        "p99": percentile(values, 0.99) if values else float("nan"),
        "missing": float(len(missing)),
    }


def parse_setting(text: str) -> dict[str, str]:
    if text == "default":
        return {}
    env = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("IOC_"):
            raise argparse.ArgumentTypeError(f"{item!r}: expected IOC_NAME=VALUE")
        env[key.strip()] = value.strip()
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", choices=["tansu", "apache"], action="append")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="background events/s")
    parser.add_argument("--trigger-every", type=float, default=0.5, help="seconds")
    parser.add_argument(
        "--setting", action="append",
        help="worker env overrides, `IOC_A=1,IOC_B=2`, or `default`; repeatable, one run "
        "each (default: `default` and IOC_KAFKA__FETCH_MAX_WAIT_MS=5)",
    )  # fmt: skip
    args = parser.parse_args()
    brokers = args.broker or ["tansu", "apache"]
    settings = args.setting or ["default", "IOC_KAFKA__FETCH_MAX_WAIT_MS=5"]
    envs = [parse_setting(setting) for setting in settings]

    load_at_start = os.getloadavg()
    results: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-alert-latency-") as name:
        directory = Path(name)
        (directory / "rules.yaml").write_text(RULES_YAML)
        for kind in brokers:
            for setting, env in zip(settings, envs, strict=True):
                # A fresh broker each run: a new worker group would otherwise start by
                # reading the last run's whole load.
                log = (directory / f"{kind}-{len(results)}.log").open("wb")
                broker = local_broker(BrokerSettings(kind=kind, port=free_port()), log=log)
                worker: Worker | None = None
                try:
                    broker.start()
                    worker = Worker(broker.bootstrap, directory, env).start()
                    run = asyncio.run(measure(broker.bootstrap, worker.app_id, args))
                    results.append((kind, setting, report(kind, setting, run, worker)))
                except (RuntimeError, TimeoutError) as exc:
                    print(f"\n== broker {kind}, {setting}: failed: {exc}")
                finally:
                    if worker is not None:
                        worker.stop()
                    broker.stop()
                    log.close()

    print(
        f"\nload average (1, 5, 15 min) at start {' '.join(f'{v:.2f}' for v in load_at_start)}, "
        f"at end {' '.join(f'{v:.2f}' for v in os.getloadavg())} (2 cores)"
    )
    for kind, setting, figures in results:
        print(
            f"{kind:7s} {setting:50s} p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms"
            + (f"  missing {figures['missing']:.0f}" if figures["missing"] else "")
        )


if __name__ == "__main__":
    main()
