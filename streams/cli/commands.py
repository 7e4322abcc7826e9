"""What each verb of `ioc` does: `cmd_<verb>(args, settings)` returns the exit code.

Heavy imports (Faust, aiokafka, the simulator) happen inside the command that needs
them, so that `ioc --help` and the checks start quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sized
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from streams.worker.settings import Settings

if TYPE_CHECKING:
    from streams.devtools.simulate import Simulation
    from streams.worker.console.users import UsersFile

__all__ = [
    "cmd_aggregates_check",
    "cmd_backtest",
    "cmd_broker",
    "cmd_demo",
    "cmd_rules_check",
    "cmd_schema_export",
    "cmd_simulate",
    "cmd_topics",
    "cmd_users_add",
    "cmd_users_list",
    "cmd_users_remove",
    "cmd_users_token",
    "cmd_worker",
]


def _with(settings: Settings, section: str, **changes: object) -> Settings:
    """`settings` with the options given on the command line (not None) in `section`."""
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
    from models.errors import ConfigError

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
    from models.aggregates import load_aggregates
    from models.errors import AggregateConfigError
    from models.rulefile import load_rules

    try:
        aggregates = load_aggregates(args.aggregates) if args.aggregates else None
    except (AggregateConfigError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"invalid:\n{exc}"
        print(f"{args.aggregates}: {reason}", file=sys.stderr)
        return 1
    return _check_files(args.files, lambda path: load_rules(path, aggregates), "rules")


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import AggregateConfigError, RuleConfigError
    from streams.backtest import backtest
    from streams.worker.configuration import resolve

    try:
        configuration = resolve(args.aggregates, args.rules)
        with args.events.open("rb") as lines:
            result = backtest(lines, configuration.rules, configuration.aggregates, settings)
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

    from models.errors import AggregateConfigError, RuleConfigError, SinkConfigError
    from streams.worker.app import create_app
    from streams.worker.kafka import ensure_worker_topics

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
    asyncio.run(ensure_worker_topics(settings))
    level = settings.log_level

    @app.task
    async def restore_root_log_level() -> None:
        # Faust's worker sets the root logger to DEBUG for its spinner at some levels;
        # every library debug call would then build a record.
        logging.getLogger().setLevel(level.upper())

    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits


def _load_users(settings: Settings, verb: str) -> tuple[Path, UsersFile] | None:
    """The users file's path and content, or None (reported) if it cannot be read."""
    from streams.worker.console.users import UsersFileError, load_users

    path = settings.console.users_path(settings.data_dir)
    try:
        return path, load_users(path)
    except UsersFileError as exc:
        print(f"ioc users {verb}: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"ioc users {verb}: {path}: {exc.strerror}", file=sys.stderr)
    return None


def _new_password(from_stdin: bool) -> str | None:
    """The new user's password: stdin's first line, or typed twice; None if unusable."""
    import getpass

    from streams.worker.console.users import MIN_PASSWORD_LENGTH

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            print("ioc users add: the passwords differ", file=sys.stderr)
            return None
    if len(password) < MIN_PASSWORD_LENGTH:
        print(
            f"ioc users add: a password needs at least {MIN_PASSWORD_LENGTH} characters",
            file=sys.stderr,
        )
        return None
    return password


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.console.users import NAME_PATTERN, UserRecord, hash_password, save_users

    if not NAME_PATTERN.fullmatch(args.name):
        print(
            f"ioc users add: {args.name!r}: a name is 1-64 letters, digits, '.', '_' or '-'",
            file=sys.stderr,
        )
        return 1
    loaded = _load_users(settings, "add")
    if loaded is None:
        return 1
    path, users = loaded
    if args.name in users.users:
        # Replacing silently would also keep or drop tokens by surprise.
        print(f"ioc users add: {args.name} exists; `ioc users remove` it first", file=sys.stderr)
        return 1
    password = _new_password(args.password_stdin)
    if password is None:
        return 1
    users.users[args.name] = UserRecord(role=args.role, password=hash_password(password))
    save_users(path, users)
    print(f"{args.name} ({args.role}) added to {path}")
    return 0


def cmd_users_token(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.console.users import new_token, save_users

    loaded = _load_users(settings, "token")
    if loaded is None:
        return 1
    path, users = loaded
    record = users.users.get(args.name)
    if record is None:
        print(f"ioc users token: no user {args.name} in {path}", file=sys.stderr)
        return 1
    token, digest = new_token()
    record.tokens.append(digest)
    save_users(path, users)
    print(f"API token for {args.name}, shown only now:", file=sys.stderr)
    print(token)
    return 0


def cmd_users_remove(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.console.users import save_users

    loaded = _load_users(settings, "remove")
    if loaded is None:
        return 1
    path, users = loaded
    if users.users.pop(args.name, None) is None:
        print(f"ioc users remove: no user {args.name} in {path}", file=sys.stderr)
        return 1
    save_users(path, users)
    print(f"{args.name} removed from {path}")
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    loaded = _load_users(settings, "list")
    if loaded is None:
        return 1
    for name, record in sorted(loaded[1].users.items()):
        print(f"{name}\t{record.role}\t{len(record.tokens)} API token(s)")
    return 0


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


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.devtools.demo import DemoOptions, run_demo

    return run_demo(settings, DemoOptions.from_args(args))


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
