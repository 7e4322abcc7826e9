"""The demo's process tree: (the sinks' servers,) the broker, the worker, the simulator.

Started in that order and stopped in the reverse: simulator, worker, broker, servers.
Before anything starts, the demo's console users get this run's passwords
(streams.devtools.demo.console); they are printed once the worker is ready.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from models.errors import ServerError
from streams.devtools.brokers import EmbeddedBroker
from streams.devtools.demo.console import DEMO_USERS, DemoLogins, prepare_demo_users
from streams.devtools.demo.options import DemoOptions
from streams.devtools.demo.readback import count_aggregates, read_alerts
from streams.devtools.demo.report import (
    aggregates_summary,
    alerts_summary,
    banner,
    console_summary,
    counters_summary,
)
from streams.devtools.demo.sinks import SinkServers
from streams.devtools.demo.traffic import Announcement, simulate
from streams.devtools.demo.worker import (
    spawn_worker,
    wait_for_ingest,
    wait_for_stages,
    worker_ready,
)
from streams.devtools.processes import stop
from streams.devtools.simulate import Progress
from streams.worker.configuration import configured
from streams.worker.console.users import UsersFileError
from streams.worker.kafka import client_options
from streams.worker.settings import Settings
from streams.worker.topics import AGGREGATES, ALERTS

__all__ = ["run_demo"]


def run_demo(settings: Settings, options: DemoOptions) -> int:
    """Run the demo to its end; the exit code (2: the sinks' servers cannot run, or
    the console's users file cannot be read)."""
    logs = settings.data_dir / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    users_file = settings.console.users_path(settings.data_dir)
    try:
        logins = prepare_demo_users(users_file)
    except (UsersFileError, OSError) as exc:
        print(f"ioc demo: the console's users: {exc}", file=sys.stderr)
        return 2
    servers: SinkServers | None = None
    if options.with_sinks:
        servers = SinkServers.under(logs, options)
        try:
            servers.check_installed()
        except ServerError as exc:
            print(f"ioc demo --with-sinks: {exc}", file=sys.stderr)
            return 2
    try:
        if servers is not None:
            servers.start()
        return _run(settings, options, logs, servers, logins)
    except ServerError as exc:
        print(f"ioc demo --with-sinks: {exc}", file=sys.stderr)
        return 2
    finally:
        if servers is not None:
            servers.stop()
            print("stopped VictoriaMetrics and Alertmanager", flush=True)


def _run(
    settings: Settings,
    options: DemoOptions,
    logs: Path,
    servers: SinkServers | None,
    logins: DemoLogins,
) -> int:
    web = f"http://{settings.web.host}:{settings.web.port}"
    metrics_url = f"{web}/metrics"
    broker_log = (logs / "broker.log").open("wb")
    worker_log = (logs / "worker.log").open("wb")
    with broker_log, worker_log:
        broker = EmbeddedBroker(settings.broker.host, settings.broker.port, log=broker_log)
        broker.start(settings.broker.start_timeout_s)
        worker: subprocess.Popen[bytes] | None = None
        try:
            sink_environment = servers.environment() if servers is not None else None
            worker = spawn_worker(broker.bootstrap, worker_log, sink_environment)
            text = banner(
                options,
                bootstrap=broker.bootstrap,
                web=web,
                logs=logs,
                victoriametrics=servers.victoriametrics_url if servers is not None else None,
                alertmanager=servers.alertmanager.alerts_url if servers is not None else None,
            )
            print(text, flush=True)
            console = console_summary(
                web, logins.passwords, DEMO_USERS, logins.users_file, logins.reset
            )
            announcement = Announcement(lambda: worker_ready(web), "\n".join(console))
            simulation = options.simulation(datetime.now(UTC))
            kafka = settings.kafka.model_copy(update={"bootstrap": broker.bootstrap})
            client = client_options(kafka)
            started = time.monotonic()
            progress = Progress()
            sent = asyncio.run(
                simulate(
                    simulation,
                    client,
                    worker,
                    metrics_url,
                    progress,
                    manifest=options.manifest,
                    record=options.record,
                    announcement=announcement,
                )
            )
            print(f"\nsent {sent} messages in {time.monotonic() - started:.1f} s", flush=True)
            if progress.backfill_s is not None:
                print(
                    f"  of which {progress.backfill_sent} history messages"
                    f" in {progress.backfill_s:.1f} s",
                    flush=True,
                )
            if worker.poll() is not None:
                print(f"the worker stopped with code {worker.returncode}: see {logs}/worker.log")
                return 1
            if options.duration is not None:
                # A short run may end before the worker is ready: its logins come now
                # (not after a Ctrl-C: then the user is leaving).
                announcement.wait(worker, timeout=60.0)
            samples = wait_for_ingest(metrics_url, sent, worker, timeout=60.0)
            samples = wait_for_stages(metrics_url, worker, timeout=60.0) or samples
            print("what the worker counted:", *counters_summary(samples), sep="\n", flush=True)
            # What the worker runs: it read the same settings from the same environment.
            configuration = configured(settings)
            tally, complete = asyncio.run(count_aggregates(client))
            print(
                f"{AGGREGATES}, read back from the beginning:",
                *aggregates_summary(tally, complete, configuration.outputs),
                sep="\n",
                flush=True,
            )
            alerts, invalid, complete = asyncio.run(read_alerts(client, logs / "alerts.jsonl"))
            live_from_ms = int(simulation.start.timestamp() * 1000)
            print(
                f"{ALERTS}, read back from the beginning (all in {logs}/alerts.jsonl):",
                *alerts_summary(alerts, complete, configuration.rule_names, live_from_ms, invalid),
                sep="\n",
                flush=True,
            )
            if servers is not None:
                servers.report(web, worker, logs, logins.token)
            return 0
        finally:
            if worker is not None:
                stop(worker)
            broker.stop()
            print("stopped the worker and the broker", flush=True)
