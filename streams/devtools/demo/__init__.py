"""`ioc demo`: embedded broker, worker and simulator as one process tree.

Before anything starts, the console's users file (`<data_dir>/users.json` unless
`IOC_CONSOLE__USERS_FILE` says otherwise) gets the demo's users, `operator` and
`viewer`, with new random passwords every run (reset if they exist); once the worker is
ready the demo prints the console's address (`/`, the wall layout `/?wall=1`) and these
credentials. Every address it prints answers.

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
Alertmanager sinks at them, prints their query APIs (Debian's packages have no UI),
and at the end, once the sinks have caught up, prints
what they hold: series and points of `ioc_aggregate_*` per aggregate, and the active
alerts per alertname (also written to `alertmanager-alerts.json` in the log
directory). They stop last, after the broker; their data stays in the log directory.

The parts, by responsibility:

    options   DemoOptions: what the command line asked for, typed
    console   the demo's console users and their passwords of this run
    run       the process tree: servers, broker, worker, simulator; in order
    traffic   the simulator, the progress line while it runs, the console's logins
    worker    the `ioc worker` child, and waiting until it has caught up
    readback  `ioc.aggregates` and `ioc.alerts` read back from the beginning
    report    what is printed (pure formatting)
    sinks     --with-sinks: the local VictoriaMetrics and Alertmanager

Scraping the worker's `/metrics` is streams.devtools.scrape (the benchmarks use it too).
"""

from __future__ import annotations

from streams.devtools.demo.options import DemoOptions
from streams.devtools.demo.run import run_demo

__all__ = ["DemoOptions", "run_demo"]
