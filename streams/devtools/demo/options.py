"""What `ioc demo` was asked to do, typed: built once from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from streams.devtools.simulate import Simulation

__all__ = ["DemoOptions"]


@dataclass(frozen=True)
class DemoOptions:
    """The traffic to simulate, and whether to start the sinks' servers too."""

    rate: float = 200.0  # messages per second
    seed: int = 1
    bad_share: float = 0.01  # share of deliberately malformed messages
    duration: float | None = None  # seconds; None: until Ctrl-C
    backfill: float = 26 * 3600.0  # seconds of history sent first; 0: none
    manifest: Path | None = None  # where to write the injected incidents
    record: Path | None = None  # where to write every message as JSONL
    with_sinks: bool = False
    victoriametrics_port: int | None = None  # None: a free port
    alertmanager_port: int | None = None  # None: a free port

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoOptions:
        """From the namespace of `ioc demo` (streams.cli.parser)."""
        return cls(
            rate=args.rate,
            seed=args.seed,
            bad_share=args.bad_share,
            duration=args.duration,
            backfill=args.backfill,
            manifest=args.manifest,
            record=args.record,
            with_sinks=args.with_sinks,
            victoriametrics_port=args.victoriametrics_port,
            alertmanager_port=args.alertmanager_port,
        )

    def simulation(self, start: datetime) -> Simulation:
        """The simulator's traffic, its live part starting at `start`."""
        return Simulation(
            seed=self.seed,
            start=start,
            rate=self.rate,
            duration=self.duration,
            bad_share=self.bad_share,
            backfill=self.backfill,
        )
