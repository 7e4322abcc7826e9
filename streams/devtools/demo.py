"""`ioc demo`: embedded broker, worker and simulator as one process tree.

Stops everything on Ctrl-C, SIGTERM or after --duration, and leaves no process
behind: the children run in their own sessions (so a terminal's Ctrl-C reaches only
this process, which stops them in order: simulator, worker, broker) and die with it.

The simulator first sends --backfill of history (so that hourly and daily windows
close within a short demo), then live traffic; a line every `PROGRESS_EVERY_S` shows
what the worker has done. At the end the demo prints the worker's counters and, read
back from `ioc.aggregates`, the final results and running updates per aggregate, with
the configured aggregates that had no final result, and, read back from `ioc.alerts`, the
firing and resolved alerts per rule with the first alerts' summaries (every alert is
also copied to `alerts.jsonl` in the log directory, since the broker keeps nothing).

With `--with-sinks` it also starts a local VictoriaMetrics and Alertmanager
(streams/devtools/servers.py) before the broker, points the worker's time-series and
Alertmanager sinks at them, and at the end, once the sinks have caught up, prints
what they hold: series and points of `ioc_aggregate_*` per aggregate, and the active
alerts per alertname (also written to `alertmanager-alerts.json` in the log
directory). They stop last, after the broker; their data stays in the log directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from models.alerts import Alert
from models.rules import default_rules, load_rules
from streams.core.cases import BACKLOG_AGGREGATE
from streams.core.windows import HourlyAqi, default_aggregates, load_aggregates
from streams.core.windows.hourly_aqi import DERIVED
from streams.devtools.brokers import EmbeddedBroker
from streams.devtools.processes import spawn, stop
from streams.devtools.servers import (
    LocalAlertmanager,
    LocalServer,
    LocalVictoriaMetrics,
    SeriesTally,
    ServerError,
    alertnames,
)
from streams.devtools.simulate import Progress, Simulation, run
from streams.worker.kafka import client_options
from streams.worker.settings import Settings
from streams.worker.topics import AGGREGATES, ALERTS

__all__ = [
    "Samples",
    "Tally",
    "alert_counts",
    "count_aggregates",
    "expected_aggregates",
    "expected_rules",
    "read_alerts",
    "read_metrics",
    "run_demo",
    "sink_environment",
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: (aggregate, final) → records of `ioc.aggregates`.
Tally = Counter[tuple[str, bool]]

PROGRESS_EVERY_S: Final = 10.0
#: Alerts per rule whose summaries the end of the demo prints (the earliest first).
EXAMPLES_PER_RULE: Final = 2


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


def alert_counts(samples: Samples) -> tuple[float, float]:
    """(firing, resolved) alert state changes the rule stage has written to `ioc.alerts`."""
    firing = resolved = 0.0
    for (name, labels), value in samples.items():
        if name == "ioc_rules_alerts_total":
            state = dict(labels).get("state")
            if state == "firing":
                firing += value
            elif state == "resolved":
                resolved += value
    return firing, resolved


def _summary(samples: Samples) -> list[str]:
    lines = []
    for (name, labels), value in sorted(samples.items()):
        if name.startswith("ioc_") and name.endswith("_total") and value:
            label_text = ",".join(f"{key}={val}" for key, val in labels)
            lines.append(f"  {name}{{{label_text}}} {value:g}")
    return lines


def expected_aggregates(settings: Settings) -> list[str]:
    """What the worker is configured to put in `ioc.aggregates`: the pack's aggregates,
    then the derived ones (the hourly AQI when the pack can feed it, the case backlog)."""
    path = settings.windows.aggregates
    pack = load_aggregates(path) if path is not None else default_aggregates()
    names = [aggregate.name for aggregate in pack]
    if HourlyAqi.for_pack(pack) is not None:
        names.append(DERIVED)
    return [*names, BACKLOG_AGGREGATE]


async def _read_topic(
    options: dict[str, Any], topic: str, on_record: Callable[[Any], None], timeout: float
) -> bool:
    """Every record of `topic` from the beginning, passed to `on_record`, and whether
    every partition was read to its end within `timeout`. No consumer group: nothing is
    committed and nothing is left behind.

    Reads up to the high watermark that fetch responses carry (not ListOffsets, which
    some brokers answer wrongly; docs/BROKERS.md)."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata that partitions_for_topic reads
        partitions = consumer.partitions_for_topic(topic) or set()
        remaining = {TopicPartition(topic, partition) for partition in partitions}
        if not remaining:
            return True
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        deadline = time.monotonic() + timeout
        empty_rounds = 0
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=20_000)
            for records in batches.values():
                for record in records:
                    on_record(record)
            for tp in list(remaining):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    remaining.discard(tp)
            empty_rounds = 0 if batches else empty_rounds + 1
            if empty_rounds >= 5:
                # No fetch response has carried a high watermark: empty partitions.
                return True
    finally:
        await consumer.stop()
    return not remaining


async def count_aggregates(options: dict[str, Any], timeout: float = 60.0) -> tuple[Tally, bool]:
    """Every record of `ioc.aggregates` from the beginning, counted by aggregate and
    final flag, and whether every partition was read to its end within `timeout`."""
    tally: Tally = Counter()

    def count(record: Any) -> None:
        value = orjson.loads(record.value)
        tally[value["aggregate"], bool(value["final"])] += 1

    complete = await _read_topic(options, AGGREGATES, count, timeout)
    return tally, complete


async def read_alerts(
    options: dict[str, Any], copy_to: Path | None = None, timeout: float = 60.0
) -> tuple[list[Alert], int, bool]:
    """Every record of `ioc.alerts` from the beginning (in partition order), the number
    of records that are not alerts, and whether every partition was read to its end
    within `timeout`. With `copy_to`, the raw records go there too, one JSON a line."""
    alerts: list[Alert] = []
    invalid = 0
    copy = copy_to.open("wb") if copy_to is not None else None

    def keep(record: Any) -> None:
        nonlocal invalid
        try:
            alerts.append(Alert.from_json(record.value))
        except ValueError:
            invalid += 1
            return
        if copy is not None:
            copy.write(record.value + b"\n")

    try:
        complete = await _read_topic(options, ALERTS, keep, timeout)
    finally:
        if copy is not None:
            copy.close()
    return alerts, invalid, complete


def expected_rules(settings: Settings) -> list[str]:
    """The rules the worker is configured with, in the pack's order."""
    path = settings.windows.aggregates
    aggregates = load_aggregates(path) if path is not None else default_aggregates()
    rules_path = settings.rules.rules
    rules = load_rules(rules_path, aggregates) if rules_path else default_rules(aggregates)
    return [rule.name for rule in rules]


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _alerts_summary(
    alerts: Iterable[Alert],
    complete: bool,
    rules: list[str],
    live_from_ms: int | None = None,
    invalid: int = 0,
    examples: int = EXAMPLES_PER_RULE,
) -> list[str]:
    """Per rule: firing and resolved alerts, how many of the firing ones started
    before `live_from_ms` (in the history, which has no incidents), then the summaries
    of the earliest firing alerts of each rule that fired, live ones first."""
    # A later record of an identity supersedes the earlier (a firing alert whose
    # flapping flag changed, or a replay): count identities, not records.
    latest: dict[str, Alert] = {}
    records = 0
    for alert in alerts:
        latest[alert.identity] = alert
        records += 1
    firing: dict[str, list[Alert]] = {}
    resolved: Counter[str] = Counter()
    for alert in latest.values():
        if alert.state == "firing":
            firing.setdefault(alert.rule, []).append(alert)
        else:
            resolved[alert.rule] += 1
    names = rules + sorted((set(firing) | set(resolved)) - set(rules))
    width = max(map(len, names), default=10)
    history = live_from_ms is not None
    header = f"  {'rule':<{width}}  {'firing':>8}  {'resolved':>8}"
    lines = [header + (f"  {'history':>8}" if history else "")]
    for name in names:
        row = f"  {name:<{width}}  {len(firing.get(name, [])):>8}  {resolved[name]:>8}"
        if live_from_ms is not None:
            early = sum(a.starts_at_ms < live_from_ms for a in firing.get(name, []))
            row += f"  {early:>8}"
        lines.append(row)
    if history:
        lines.append("(history: firing alerts that started before the live traffic)")
    if records > len(latest):
        repeated = records - len(latest)
        lines.append(f"{repeated} records repeated an identity already written (counted once)")
    if invalid:
        lines.append(f"{invalid} records were not alerts")
    if not complete:
        lines.append("(not read to the end in time: the counts are partial)")
    silent = [name for name in rules if name not in firing]
    if silent:
        lines.append("no alert from: " + ", ".join(silent))
    live = live_from_ms if live_from_ms is not None else -(1 << 62)
    for name in names:
        # The live part's alerts first: those are what the incidents caused.
        first = sorted(
            firing.get(name, []), key=lambda alert: (alert.starts_at_ms < live, alert.starts_at_ms)
        )
        if not first:
            continue
        shown = first[:examples]
        more = f" (first {len(shown)} of {len(first)})" if len(first) > len(shown) else ""
        lines.append(f"{name}{more}:")
        for alert in shown:
            flapping = " flapping" if alert.flapping else ""
            severity = alert.labels.get("severity", "?")
            when = " (history)" if alert.starts_at_ms < live else ""
            lines.append(f"  {_clock(alert.starts_at_ms)}{when} {severity}{flapping}")
            lines.append(f"    vi: {alert.annotations.get('summary_vi', '')}")
            lines.append(f"    en: {alert.annotations.get('summary_en', '')}")
    return lines


def _aggregates_summary(tally: Tally, complete: bool, expected: list[str]) -> list[str]:
    names = expected + sorted({name for name, _ in tally} - set(expected))
    width = max(map(len, names), default=10)
    lines = [f"  {'aggregate':<{width}}  {'final':>8}  {'running':>8}"]
    for name in names:
        lines.append(f"  {name:<{width}}  {tally[name, True]:>8}  {tally[name, False]:>8}")
    missing = [name for name in expected if not tally[name, True]]
    if not complete:
        lines.append("(not read to the end in time: the counts are partial)")
    if missing:
        lines.append("no final result for: " + ", ".join(missing))
    else:
        lines.append(f"every configured aggregate ({len(expected)}) has final results")
    return lines


def sink_environment(victoriametrics_url: str, alertmanager_url: str) -> dict[str, str]:
    """The worker's settings (environment) for sinks into the demo's own servers."""
    return {
        "IOC_SINKS__TIMESERIES__KIND": "victoriametrics",
        "IOC_SINKS__TIMESERIES__URL": victoriametrics_url,
        "IOC_SINKS__ALERTMANAGER__URL": alertmanager_url,
    }


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    logs = settings.data_dir / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    servers: list[LocalServer] = []
    if getattr(args, "with_sinks", False):
        victoria = LocalVictoriaMetrics(
            logs / "victoria-metrics", port=getattr(args, "victoriametrics_port", None)
        )
        alertmanager = LocalAlertmanager(
            logs / "alertmanager", port=getattr(args, "alertmanager_port", None)
        )
        servers = [victoria, alertmanager]
        try:
            for server in servers:
                server.check_installed()
        except ServerError as exc:
            print(f"ioc demo --with-sinks: {exc}", file=sys.stderr)
            return 2
    try:
        for server in servers:
            server.start()
        return _run_demo(settings, args, logs, servers)
    except ServerError as exc:
        print(f"ioc demo --with-sinks: {exc}", file=sys.stderr)
        return 2
    finally:
        if servers:
            for server in servers:
                server.stop()
            print("stopped VictoriaMetrics and Alertmanager", flush=True)


def _run_demo(
    settings: Settings, args: argparse.Namespace, logs: Path, servers: list[LocalServer]
) -> int:
    web = f"http://{settings.web.host}:{settings.web.port}"
    metrics_url = f"{web}/metrics"
    victoria = next((s for s in servers if isinstance(s, LocalVictoriaMetrics)), None)
    alertmanager = next((s for s in servers if isinstance(s, LocalAlertmanager)), None)
    broker_log = (logs / "broker.log").open("wb")
    worker_log = (logs / "worker.log").open("wb")
    with broker_log, worker_log:
        broker = EmbeddedBroker(settings.broker.host, settings.broker.port, log=broker_log)
        broker.start(settings.broker.start_timeout_s)
        worker: subprocess.Popen[bytes] | None = None
        try:
            # The worker reads its settings from the environment like any worker;
            # only the bootstrap differs: the broker this demo started (and, with
            # --with-sinks, the sinks: the servers this demo started).
            environment = {**os.environ, "IOC_KAFKA__BOOTSTRAP": broker.bootstrap}
            if victoria is not None and alertmanager is not None:
                environment.update(sink_environment(victoria.url, alertmanager.url))
            worker = spawn(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=environment,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            history = ""
            if args.backfill:
                history = (
                    f"\n  history  the {args.backfill / 3600:g} h before now first, as fast as"
                    " possible (one reading per device per 5 min, no incidents)"
                )
            sinks = ""
            if victoria is not None and alertmanager is not None:
                sinks = (
                    f"  vmui     {victoria.ui_url} (VictoriaMetrics: window finals as"
                    " ioc_aggregate_<statistic>, e.g. ioc_aggregate_pm25_mean)\n"
                    f"  alerts   {alertmanager.url} (Alertmanager: the alerts of {ALERTS})\n"
                    f"  sinks    {web}/sinks (each sink's state as JSON)\n"
                )
            print(
                f"ioc demo\n"
                f"  broker   {broker.bootstrap} (embedded Tansu, memory only)\n"
                f"  metrics  {metrics_url}\n" + sinks + f"  logs     {logs}/\n"
                f"  results  {AGGREGATES} (window results), {ALERTS} (alerts firing and"
                f" resolved), read back at the end; alerts copied to {logs}/alerts.jsonl\n"
                f"  traffic  {args.rate:g} messages/s, seed {args.seed}, "
                f"{args.bad_share:.0%} malformed"
                + (f", {args.duration:g} s" if args.duration else "")
                + history
                + "\nCtrl-C stops everything.",
                flush=True,
            )
            simulation = Simulation(
                seed=args.seed,
                start=datetime.now(UTC),
                rate=args.rate,
                duration=args.duration,
                bad_share=args.bad_share,
                backfill=args.backfill,
            )
            kafka = settings.kafka.model_copy(update={"bootstrap": broker.bootstrap})
            options = client_options(kafka)
            started = time.monotonic()
            progress = Progress()
            sent = asyncio.run(_simulate(simulation, options, args, worker, metrics_url, progress))
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
            samples = _wait_for_ingest(metrics_url, sent, worker, timeout=60.0)
            samples = _wait_for_stages(metrics_url, worker, timeout=60.0) or samples
            print("what the worker counted:", *_summary(samples), sep="\n", flush=True)
            tally, complete = asyncio.run(count_aggregates(options))
            print(
                f"{AGGREGATES}, read back from the beginning:",
                *_aggregates_summary(tally, complete, expected_aggregates(settings)),
                sep="\n",
                flush=True,
            )
            alerts, invalid, complete = asyncio.run(read_alerts(options, logs / "alerts.jsonl"))
            live_from_ms = int(simulation.start.timestamp() * 1000)
            print(
                f"{ALERTS}, read back from the beginning (all in {logs}/alerts.jsonl):",
                *_alerts_summary(alerts, complete, expected_rules(settings), live_from_ms, invalid),
                sep="\n",
                flush=True,
            )
            if victoria is not None and alertmanager is not None:
                _print_sinks(web, worker, victoria, alertmanager, logs)
            return 0
        finally:
            if worker is not None:
                stop(worker)
            broker.stop()
            print("stopped the worker and the broker", flush=True)


def _print_sinks(
    web: str,
    worker: subprocess.Popen[bytes],
    victoria: LocalVictoriaMetrics,
    alertmanager: LocalAlertmanager,
    logs: Path,
) -> None:
    """Once the sinks have caught up: their status, and what the servers hold."""
    status = _wait_for_sinks(web, worker, timeout=60.0)
    print(f"sinks ({web}/sinks):", *_sinks_summary(status), sep="\n", flush=True)
    try:
        series = victoria.aggregate_series()
    except (OSError, ValueError) as exc:
        print(f"VictoriaMetrics did not answer: {exc}", flush=True)
    else:
        print(
            f"VictoriaMetrics ({victoria.ui_url}), ioc_aggregate_* by aggregate:",
            *_victoriametrics_summary(series),
            sep="\n",
            flush=True,
        )
    try:
        active = alertmanager.active_alerts()
    except (OSError, ValueError) as exc:
        print(f"Alertmanager did not answer: {exc}", flush=True)
        return
    copy = logs / "alertmanager-alerts.json"
    copy.write_bytes(orjson.dumps(active, option=orjson.OPT_INDENT_2))
    print(
        f"Alertmanager ({alertmanager.url}), active alerts (all in {copy}):",
        *_alertmanager_summary(alertnames(active)),
        sep="\n",
        flush=True,
    )


def _victoriametrics_summary(series: SeriesTally) -> list[str]:
    if not series:
        return ["  no ioc_aggregate_* series"]
    width = max(len("aggregate"), *map(len, series))
    lines = [f"  {'aggregate':<{width}}  {'series':>8}  {'points':>8}"]
    for name, (count, points) in series.items():
        lines.append(f"  {name:<{width}}  {count:>8}  {points:>8}")
    total_series = sum(count for count, _ in series.values())
    total_points = sum(points for _, points in series.values())
    lines.append(
        f"{total_points} points in {total_series} series of {len(series)} aggregates"
        " (finals only; aggregates grouped by addresses, ids or names are not written)"
    )
    return lines


def _alertmanager_summary(names: Counter[str]) -> list[str]:
    if not names:
        return ["  no active alert"]
    width = max(len("alertname"), *map(len, names))
    lines = [f"  {'alertname':<{width}}  {'active':>8}"]
    for name, count in sorted(names.items()):
        lines.append(f"  {name:<{width}}  {count:>8}")
    lines.append(f"{sum(names.values())} active alerts of {len(names)} rules")
    return lines


def _sinks_summary(status: dict[str, Any]) -> list[str]:
    """One line per sink of the worker's `/sinks` JSON."""
    if not status:
        return ["  no answer from the worker"]
    width = max(map(len, status))
    lines = []
    for name, sink in sorted(status.items()):
        line = (
            f"  {name:<{width}}  {sink.get('state', '?')}: written {sink.get('written', 0)},"
            f" rejected {sink.get('rejected', 0)}, retries {sink.get('retries', 0)},"
            f" queued {sink.get('queued', 0)}"
        )
        if sink.get("skipped"):
            line += f", skipped {sink['skipped']} (unbounded labels)"
        if sink.get("last_error"):
            line += f" · last error: {sink['last_error']}"
        lines.append(line)
    return lines


def _read_sinks(web: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{web}/sinks", timeout=2.0) as response:
        status: dict[str, Any] = orjson.loads(response.read())
    return status


def _wait_for_sinks(web: str, worker: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """Poll the worker until its sink stages have read their topics to the end
    (`ioc_consumer_lag_records` of the `sink-*` stages 0), nothing is queued and the
    written counts have stood still for 2 s, or time runs out; the last `/sinks`."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    last: object = None
    still_since = time.monotonic()
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            status = _read_sinks(web)
            samples = read_metrics(f"{web}/metrics")
        except (OSError, ValueError):
            time.sleep(0.5)
            continue
        lag = [
            value
            for (name, labels), value in samples.items()
            if name == "ioc_consumer_lag_records"
            and dict(labels).get("stage", "").startswith("sink")
        ]
        counts = {name: (s.get("written"), s.get("rejected")) for name, s in status.items()}
        queued = sum(int(sink.get("queued", 0)) for sink in status.values())
        if counts != last:
            last, still_since = counts, time.monotonic()
        elif not any(lag) and not queued and time.monotonic() - still_since >= 2.0:
            break
        time.sleep(0.5)
    return status


async def _simulate(
    simulation: Simulation,
    options: dict[str, object],
    args: argparse.Namespace,
    worker: subprocess.Popen[bytes],
    metrics_url: str,
    progress: Progress,
) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)

    async def watch_worker() -> None:
        while worker.poll() is None and not stop_requested.is_set():
            await asyncio.sleep(0.5)
        stop_requested.set()

    async def history_read() -> None:
        # Ingest reads the source partitions in batches, one after another, and a data
        # hub's batch (a JSON array without a key) feeds every validated partition: live
        # arrays read before another partition's history would move that validated
        # partition's watermark to now and make its history late. So the live part
        # waits until ingest has read the history.
        print(
            f"history delivered: {progress.backfill_sent} messages in"
            f" {progress.backfill_s:.1f} s; live traffic starts once ingest has read them",
            flush=True,
        )
        began = time.monotonic()
        first_read: float | None = None  # the worker may still be starting until then
        while not stop_requested.is_set():
            with contextlib.suppress(OSError):  # the web server is not up yet
                samples = await asyncio.to_thread(read_metrics, metrics_url)
                read = total(samples, "ioc_ingest_messages_total")
                now = time.monotonic()
                if read and first_read is None:
                    first_read = now
                if read >= progress.backfill_sent:
                    reading = f"{now - first_read:.1f} s" if first_read else "one poll"
                    print(
                        f"ingest read the history in {reading}"
                        f" ({now - began:.1f} s after its delivery)",
                        flush=True,
                    )
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_requested.wait(), 0.5)

    tasks = [
        asyncio.create_task(watch_worker()),
        asyncio.create_task(_report_progress(metrics_url, progress, stop_requested)),
    ]
    try:
        return await run(
            simulation,
            options,
            manifest=args.manifest,
            record=args.record,
            stop=stop_requested,
            progress=progress,
            before_live=history_read,
        )
    finally:
        stop_requested.set()
        await asyncio.gather(*tasks)


async def _report_progress(url: str, progress: Progress, stop_requested: asyncio.Event) -> None:
    """Every PROGRESS_EVERY_S: what was sent, and the worker's counters with their rates
    over the interval (events/s that ingest accepted and the window stage read)."""
    began = time.monotonic()
    before: tuple[float, float, float] | None = None  # (time, accepted, windowed)
    while not stop_requested.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), PROGRESS_EVERY_S)
        if stop_requested.is_set():
            return
        line = f"[{time.monotonic() - began:4.0f} s] sent {progress.sent}"
        if progress.backfill_s is not None:
            line += f" (history {progress.backfill_sent} in {progress.backfill_s:.1f} s)"
        try:
            # Blocking HTTP off the loop, so that producing never waits for the worker.
            samples = await asyncio.to_thread(read_metrics, url)
        except OSError:
            print(line + " · worker not answering yet", flush=True)
            continue
        now = time.monotonic()
        accepted = total(samples, "ioc_ingest_events_accepted_total")
        windowed = total(samples, "ioc_windows_events_total")
        finals = sum(
            value
            for (name, labels), value in samples.items()
            if name == "ioc_windows_results_total" and ("final", "True") in labels
        )
        line += (
            f" · ingest accepted {accepted:.0f} · windows read {windowed:.0f},"
            f" results {total(samples, 'ioc_windows_results_total'):.0f} ({finals:.0f} final),"
            f" late {total(samples, 'ioc_windows_late_events_total'):.0f}"
        )
        if before is not None:
            seconds = now - before[0]
            line += (
                f" · {(accepted - before[1]) / seconds:.0f} accepted/s,"
                f" {(windowed - before[2]) / seconds:.0f} windowed/s"
            )
        before = (now, accepted, windowed)
        firing, resolved = alert_counts(samples)
        line += f" · alerts {firing:.0f} firing / {resolved:.0f} resolved"
        print(line, flush=True)


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


def _wait_for_stages(url: str, worker: subprocess.Popen[bytes], timeout: float) -> Samples:
    """Poll /metrics until the window and case stages have read what ingest accepted,
    or their counters have stood still for 3 s (a pack without some family never
    reads all of it), or time runs out."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    last: tuple[float, float] | None = None
    still_since = time.monotonic()
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            samples = read_metrics(url)
        except OSError:
            samples = {}
        accepted = total(samples, "ioc_ingest_events_accepted_total")
        services = samples.get(("ioc_ingest_events_accepted_total", (("family", "services"),)), 0)
        read = (
            total(samples, "ioc_windows_events_total"),
            total(samples, "ioc_cases_events_total"),
        )
        if samples and read[0] >= accepted and read[1] >= services:
            break
        if read != last:
            last, still_since = read, time.monotonic()
        elif time.monotonic() - still_since >= 3.0:
            break
        time.sleep(0.5)
    # What the stages produced from the last records goes out within a commit interval.
    time.sleep(1.5)
    return samples
