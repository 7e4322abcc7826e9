"""`ioc`'s verbs and options: the package keeps the command line it had."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from streams.cli import main
from streams.cli.parser import DESCRIPTION, build_parser, seconds


@pytest.mark.parametrize(
    ("text", "expected"), [("26h", 93_600.0), ("90m", 5400.0), ("1d", 86_400.0), ("30", 30.0)]
)
def test_durations_are_seconds(text: str, expected: float):
    assert seconds(text) == expected


@pytest.mark.parametrize("text", ["-5", "inf", "soon"])
def test_a_duration_must_be_zero_or_more(text: str):
    with pytest.raises(argparse.ArgumentTypeError):
        seconds(text)


def test_every_verb_has_its_command():
    parser = build_parser()
    for argv in (
        ["broker"], ["worker"], ["topics"], ["simulate"], ["demo"], ["schema", "export", "d"],
        ["aggregates", "check", "a.yaml"], ["rules", "check", "r.yaml"],
        ["backtest", "--events", "e.jsonl"],
    ):  # fmt: skip
        assert callable(build_parser().parse_args(argv).run), argv
    assert parser.description == DESCRIPTION


def test_the_backfill_default_depends_on_the_verb():
    assert build_parser().parse_args(["simulate"]).backfill == 0.0
    assert build_parser().parse_args(["demo"]).backfill == 26 * 3600.0


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert DESCRIPTION in " ".join(capsys.readouterr().out.split())  # as wrapped


def test_the_package_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ioc ")
