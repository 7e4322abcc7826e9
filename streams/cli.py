"""`ioc` — the command line: broker, worker, simulate, demo, schema export, checks."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence, Sized
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from streams.worker.settings import Settings

if TYPE_CHECKING:
    from streams.devtools.simulate import Simulation

__all__ = ["main"]

log = logging.getLogger("ioc")


def _with(settings: Settings, section: str, **changes: object) -> Settings:
    changes = {key: value for key, value in changes.items() if value is not None}
    if not changes:
        return settings
    updated = getattr(settings, section).model_copy(update=changes)
    return settings.model_copy(update={section: updated})


def cmd_schema_export(args: argparse.Namespace, settings: Settings) -> int:
    from models import FAMILIES

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, family in FAMILIES.items():
        path = out / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(family.json_schema(), option=orjson.OPT_INDENT_2))
        print(path)
    return 0


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.devtools.brokers import local_broker

    settings = _with(settings, "broker", port=args.port, kind=args.kind)
    broker = local_broker(settings.broker, log=None)
    broker.start(settings.broker.start_timeout_s)
    what = {
        "tansu": "embedded Tansu broker (memory only)",
        "apache": f"Apache Kafka {settings.broker.kafka_version} (KRaft, data removed on stop)",
    }[settings.broker.kind]
    print(f"{what} on {broker.bootstrap}; Ctrl-C stops it", flush=True)
    stop = _stop_on_signals()
    while not stop.is_set() and broker.wait_for(0.2) is None:
        pass
    broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import topics
    from streams.worker.kafka import ensure_topics

    asyncio.run(ensure_topics(settings.kafka, topics.ALL))
    print("\n".join(topics.ALL))
    return 0


def _check_files(files: list[Path], load: Callable[[Path], Sized], noun: str) -> int:
    """`ioc aggregates check` / `ioc rules check`: every problem of every file, exit 1
    if any file has one."""
    from models.aggregates import ConfigError

    failed = False
    for path in files:
        try:
            loaded = load(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failed = True
        except OSError as exc:
            print(f"{path}: {exc.strerror}", file=sys.stderr)
            failed = True
        else:
            print(f"{path}: {len(loaded)} {noun}, valid")
    return 1 if failed else 0


def cmd_aggregates_check(args: argparse.Namespace, settings: Settings) -> int:
    from streams.core.windows import load_aggregates

    return _check_files(args.files, load_aggregates, "aggregates")


def cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    from models.aggregates import AggregateConfigError, load_aggregates
    from models.rules import load_rules

    try:
        aggregates = load_aggregates(args.aggregates) if args.aggregates else None
    except (AggregateConfigError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"invalid:\n{exc}"
        print(f"{args.aggregates}: {reason}", file=sys.stderr)
        return 1
    return _check_files(args.files, lambda path: load_rules(path, aggregates), "rules")


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from models.aggregates import AggregateConfigError, load_aggregates
    from models.rules import RuleConfigError, default_rules, load_rules
    from streams.backtest import backtest
    from streams.core.windows import default_aggregates

    try:
        aggregates = load_aggregates(args.aggregates) if args.aggregates else default_aggregates()
        rules = load_rules(args.rules, aggregates) if args.rules else default_rules(aggregates)
        with args.events.open("rb") as lines:
            result = backtest(lines, rules, aggregates, settings)
    except (AggregateConfigError, RuleConfigError) as exc:
        print(f"ioc backtest: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ioc backtest: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    for reason in result.skipped[:20]:
        print(f"skipped {reason}", file=sys.stderr)
    for alert in result.alerts:
        at = alert.starts_at_ms if alert.ends_at_ms is None else alert.ends_at_ms
        when = datetime.fromtimestamp(at / 1000, UTC).isoformat().replace("+00:00", "Z")
        group = " ".join(
            f"{k}={v}" for k, v in alert.labels.items() if k not in ("alertname", "severity")
        )
        print(f"{when}  {alert.state:<8}  {alert.rule:<24} {alert.labels['severity']:<8} {group}")
        print(f"    {alert.annotations.get('summary_vi', '')}")
        print(f"    {alert.annotations.get('summary_en', '')}")
    if args.out is not None:
        args.out.write_bytes(b"".join(alert.to_json() + b"\n" for alert in result.alerts))
    firing = sum(alert.state == "firing" for alert in result.alerts)
    print(
        f"{result.events} events, {result.rejected} rejected by ingest, "
        f"{len(result.skipped)} lines skipped: {firing} alerts fired, "
        f"{len(result.alerts) - firing} resolved"
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from models.rules import RuleConfigError
    from streams.core.windows import AggregateConfigError
    from streams.worker.app import SinkConfigError, create_app

    settings = _with(settings, "web", port=args.web_port)
    try:
        app = create_app(settings)
    except AggregateConfigError as exc:
        print(f"ioc worker: invalid aggregates, not starting:\n{exc}", file=sys.stderr)
        return 2
    except RuleConfigError as exc:
        print(f"ioc worker: invalid rules, not starting:\n{exc}", file=sys.stderr)
        return 2
    except SinkConfigError as exc:
        print(f"ioc worker: invalid sink settings, not starting: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_prepare_topics(settings))
    level = settings.log_level

    @app.task
    async def restore_root_log_level() -> None:
        # Faust's worker sets the root logger to DEBUG for its spinner at some levels;
        # every library debug call would then build a record.
        logging.getLogger().setLevel(level.upper())

    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits


async def _prepare_topics(settings: Settings) -> None:
    from streams.worker import topics
    from streams.worker.changelog import CHANGELOG_CONFIG
    from streams.worker.kafka import ensure_topics

    # Topics get explicit configs; Faust would create them without (docs/BROKERS.md).
    await ensure_topics(settings.kafka, topics.ALL)
    # Faust creates its leader topic after joining the group, and the metadata change
    # then costs a second join (≈ half the session timeout): create it first.
    await ensure_topics(settings.kafka, [topics.faust_leader(settings.app_id)], partitions=1)
    changelogs = [
        topics.changelog(settings.app_id, stage) for stage in ("windows", "cases", "rules")
    ]
    await ensure_topics(settings.kafka, changelogs, config=CHANGELOG_CONFIG)
    await ensure_topics(settings.kafka, [topics.rule_inputs(settings.app_id)])


def _simulation(args: argparse.Namespace) -> Simulation:
    from streams.devtools.simulate import Simulation

    return Simulation(
        seed=args.seed,
        start=datetime.now(UTC),
        rate=args.rate,
        duration=args.duration,
        bad_share=args.bad_share,
        backfill=args.backfill,
    )


def _seconds(text: str) -> float:
    """`26h`, `90m`, `1d`, `30s` or a plain number of seconds (argparse type)."""
    from models.aggregates import parse_duration

    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_duration(text) / 1000
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration of 0 or more")
    return seconds


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.devtools.simulate import Progress, run
    from streams.worker.kafka import client_options

    progress = Progress()

    async def simulate() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await run(
            _simulation(args),
            client_options(settings.kafka),
            manifest=args.manifest,
            record=args.record,
            stop=stop,
            progress=progress,
        )

    sent = asyncio.run(simulate())
    backfill = ""
    if progress.backfill_s is not None:
        backfill = f" ({progress.backfill_sent} of history in {progress.backfill_s:.1f} s)"
    print(f"sent {sent} messages{backfill}", flush=True)
    return 0


def _stop_on_signals() -> _Flag:
    flag = _Flag()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: flag.set())
    return flag


class _Flag:
    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.devtools.demo import run_demo

    return run_demo(settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ioc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    broker = commands.add_parser("broker", help="run the embedded Tansu broker (memory only)")
    broker.add_argument("--port", type=int, help="default: IOC_BROKER__PORT (9092)")
    broker.add_argument(
        "--kind", choices=["tansu", "apache"], help="default: IOC_BROKER__KIND (tansu)"
    )
    broker.set_defaults(run=cmd_broker)

    worker = commands.add_parser("worker", help="run the stream processor (Faust worker)")
    worker.add_argument("--web-port", type=int, help="default: IOC_WEB__PORT (6066)")
    worker.set_defaults(run=cmd_worker)

    topics = commands.add_parser("topics", help="create the project's topics if missing")
    topics.set_defaults(run=cmd_topics)

    def simulation_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--rate", type=float, default=200.0, help="messages per second")
        command.add_argument("--seed", type=int, default=1)
        command.add_argument(
            "--bad-share", type=float, default=0.01, help="share of deliberately malformed messages"
        )
        command.add_argument(
            "--manifest", type=Path, help="write the injected incidents (ground truth) as JSON"
        )
        command.add_argument(
            "--record", type=Path, help="also write every message as JSONL (topic, key, value)"
        )

    def backfill_option(command: argparse.ArgumentParser, default: str) -> None:
        command.add_argument(
            "--backfill",
            type=_seconds,
            default=default,  # a string: argparse converts it only for the command run
            metavar="DURATION",
            help="first produce this much history (e.g. 26h; 0: none) as fast as possible,"
            " one reading per device per 5 min, no incidents, nothing malformed;"
            f" then live traffic (default: {default})",
        )

    simulate = commands.add_parser("simulate", help="produce realistic provincial traffic")
    simulation_options(simulate)
    simulate.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    backfill_option(simulate, "0")
    simulate.set_defaults(run=cmd_simulate)

    demo = commands.add_parser("demo", help="broker + worker + simulator in one process tree")
    simulation_options(demo)
    demo.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    # Long enough that yesterday's local day has closed (end + 30 min grace) whatever
    # the time of day, so every daily aggregate has a final result.
    backfill_option(demo, "26h")
    demo.add_argument(
        "--with-sinks",
        action="store_true",
        help="also start a local VictoriaMetrics and Alertmanager, have the worker write"
        " window finals and alerts to them, and print what they hold at the end",
    )
    demo.add_argument(
        "--victoriametrics-port", type=int, metavar="PORT", help="with --with-sinks (default: free)"
    )
    demo.add_argument(
        "--alertmanager-port", type=int, metavar="PORT", help="with --with-sinks (default: free)"
    )
    demo.set_defaults(run=cmd_demo)

    schema = commands.add_parser("schema", help="JSON Schemas of the wire contract")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write one JSON Schema file per family")
    export.add_argument("dir")
    export.set_defaults(run=cmd_schema_export)

    aggregates = commands.add_parser("aggregates", help="window aggregate definitions")
    aggregates_commands = aggregates.add_subparsers(dest="aggregates_command", required=True)
    check = aggregates_commands.add_parser(
        "check", help="validate aggregates YAML files; print every problem with file and line"
    )
    check.add_argument("files", nargs="+", type=Path)
    check.set_defaults(run=cmd_aggregates_check)

    rules = commands.add_parser("rules", help="alert rule definitions")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    rules_check = rules_commands.add_parser(
        "check", help="validate rules YAML files; print every problem with file and line"
    )
    rules_check.add_argument("files", nargs="+", type=Path)
    rules_check.add_argument(
        "--aggregates",
        type=Path,
        metavar="FILE",
        help="check against this aggregates file (default: the default pack)",
    )
    rules_check.set_defaults(run=cmd_rules_check)

    backtest = commands.add_parser(
        "backtest", help="run the rules offline over recorded events; print the alerts"
    )
    backtest.add_argument(
        "--events",
        type=Path,
        required=True,
        metavar="FILE.jsonl",
        help="events of the wire contract, or `ioc simulate --record` lines",
    )
    backtest.add_argument("--rules", type=Path, metavar="FILE", help="default: the shipped pack")
    backtest.add_argument(
        "--aggregates", type=Path, metavar="FILE", help="default: the shipped pack"
    )
    backtest.add_argument(
        "--out", type=Path, metavar="FILE.jsonl", help="also write the alert records as JSONL"
    )
    backtest.set_defaults(run=cmd_backtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
