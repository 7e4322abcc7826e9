"""`ioc demo`'s command line, typed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from streams.cli.parser import build_parser
from streams.devtools.demo.options import DemoOptions


def test_the_defaults_of_the_command_line_are_the_dataclass_defaults():
    assert DemoOptions.from_args(build_parser().parse_args(["demo"])) == DemoOptions()


def test_every_option_reaches_the_dataclass(tmp_path: Path):
    args = build_parser().parse_args(
        ["demo", "--rate", "300", "--seed", "7", "--bad-share", "0.05", "--duration", "25",
         "--backfill", "90m", "--manifest", str(tmp_path / "m.json"),
         "--record", str(tmp_path / "r.jsonl"), "--with-sinks",
         "--victoriametrics-port", "18428", "--alertmanager-port", "19093"]
    )  # fmt: skip
    assert DemoOptions.from_args(args) == DemoOptions(
        rate=300.0, seed=7, bad_share=0.05, duration=25.0, backfill=5400.0,
        manifest=tmp_path / "m.json", record=tmp_path / "r.jsonl", with_sinks=True,
        victoriametrics_port=18428, alertmanager_port=19093,
    )  # fmt: skip


def test_the_simulation_is_the_options_traffic():
    start = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    options = DemoOptions(rate=50, seed=3, bad_share=0.1, duration=10, backfill=60)
    simulation = options.simulation(start)
    assert (simulation.seed, simulation.start, simulation.rate) == (3, start, 50)
    assert (simulation.duration, simulation.bad_share, simulation.backfill) == (10, 0.1, 60)
