"""`ioc` — the command line: broker, worker, simulate, demo, schema export, checks.

parser     the verbs and their options (argparse)
commands   what each verb does, given its arguments and the settings
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from streams.cli.parser import build_parser
from streams.worker.settings import Settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ioc` with `argv` (default: the process's arguments); the exit code."""
    args = build_parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.run(args, settings))
