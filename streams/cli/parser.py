"""The verbs of `ioc` and their options; each verb's `run` is in streams.cli.commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli import commands

__all__ = ["DESCRIPTION", "build_parser", "seconds"]

DESCRIPTION = "`ioc` — the command line: broker, worker, simulate, demo, schema export, checks."


def seconds(text: str) -> float:
    """`26h`, `90m`, `1d`, `30s` or a plain number of seconds (argparse type)."""
    from models.timefmt import parse_duration

    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text) / 1000
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration of 0 or more")
    return value


def _simulation_options(command: argparse.ArgumentParser) -> None:
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


def _backfill_option(command: argparse.ArgumentParser, default: str) -> None:
    command.add_argument(
        "--backfill",
        type=seconds,
        default=default,  # a string: argparse converts it only for the command run
        metavar="DURATION",
        help="first produce this much history (e.g. 26h; 0: none) as fast as possible,"
        " one reading per device per 5 min, no incidents, nothing malformed;"
        f" then live traffic (default: {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ioc", description=DESCRIPTION)
    verbs = parser.add_subparsers(dest="command", required=True)

    broker = verbs.add_parser("broker", help="run the embedded Tansu broker (memory only)")
    broker.add_argument("--port", type=int, help="default: IOC_BROKER__PORT (9092)")
    broker.add_argument(
        "--kind", choices=["tansu", "apache"], help="default: IOC_BROKER__KIND (tansu)"
    )
    broker.set_defaults(run=commands.cmd_broker)

    worker = verbs.add_parser("worker", help="run the stream processor (Faust worker)")
    worker.add_argument("--web-port", type=int, help="default: IOC_WEB__PORT (6066)")
    worker.set_defaults(run=commands.cmd_worker)

    topics = verbs.add_parser("topics", help="create the project's topics if missing")
    topics.set_defaults(run=commands.cmd_topics)

    simulate = verbs.add_parser("simulate", help="produce realistic provincial traffic")
    _simulation_options(simulate)
    simulate.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    _backfill_option(simulate, "0")
    simulate.set_defaults(run=commands.cmd_simulate)

    demo = verbs.add_parser("demo", help="broker + worker + simulator in one process tree")
    _simulation_options(demo)
    demo.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    # Long enough that yesterday's local day has closed (end + 30 min grace) whatever
    # the time of day, so every daily aggregate has a final result.
    _backfill_option(demo, "26h")
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
    demo.set_defaults(run=commands.cmd_demo)

    schema = verbs.add_parser("schema", help="JSON Schemas of the wire contract")
    schema_verbs = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_verbs.add_parser("export", help="write one JSON Schema file per family")
    export.add_argument("dir")
    export.set_defaults(run=commands.cmd_schema_export)

    aggregates = verbs.add_parser("aggregates", help="window aggregate definitions")
    aggregates_verbs = aggregates.add_subparsers(dest="aggregates_command", required=True)
    check = aggregates_verbs.add_parser(
        "check", help="validate aggregates YAML files; print every problem with file and line"
    )
    check.add_argument("files", nargs="+", type=Path)
    check.set_defaults(run=commands.cmd_aggregates_check)

    rules = verbs.add_parser("rules", help="alert rule definitions")
    rules_verbs = rules.add_subparsers(dest="rules_command", required=True)
    rules_check = rules_verbs.add_parser(
        "check", help="validate rules YAML files; print every problem with file and line"
    )
    rules_check.add_argument("files", nargs="+", type=Path)
    rules_check.add_argument(
        "--aggregates",
        type=Path,
        metavar="FILE",
        help="check against this aggregates file (default: the default pack)",
    )
    rules_check.set_defaults(run=commands.cmd_rules_check)

    backtest = verbs.add_parser(
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
    backtest.set_defaults(run=commands.cmd_backtest)

    users = verbs.add_parser(
        "users", help="the console's users (IOC_CONSOLE__USERS_FILE, default <data_dir>/users.json)"
    )
    users_verbs = users.add_subparsers(dest="users_command", required=True)
    users_add = users_verbs.add_parser("add", help="add a user; asks for the password twice")
    users_add.add_argument("name")
    users_add.add_argument("--role", choices=["viewer", "operator"], required=True)
    users_add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    users_add.set_defaults(run=commands.cmd_users_add)
    users_token = users_verbs.add_parser(
        "token", help="print a new API token for a user, once (the file keeps its SHA-256)"
    )
    users_token.add_argument("name")
    users_token.set_defaults(run=commands.cmd_users_token)
    users_remove = users_verbs.add_parser("remove", help="remove a user and their API tokens")
    users_remove.add_argument("name")
    users_remove.set_defaults(run=commands.cmd_users_remove)
    users_list = users_verbs.add_parser("list", help="the users, their roles and token counts")
    users_list.set_defaults(run=commands.cmd_users_list)
    return parser
