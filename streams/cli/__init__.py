"""`ioc` — the command line: broker, worker, simulate, demo, schema export, checks.

parser     the verbs and their options (argparse)
commands   what each verb does, given its arguments and the settings
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from sinks.redaction import redact_text
from streams.cli.parser import build_parser
from streams.worker.settings import Settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ioc` with `argv` (default: the process's arguments); the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # pydantic quotes each invalid input, so a sink URL with its token would
        # reach the terminal and the service's log as configured.
        problems = [
            f"  {'.'.join(map(str, error['loc']))}: {redact_text(error['msg'])}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        print("ioc: invalid settings, not starting:", *problems, sep="\n", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.run(args, settings))
