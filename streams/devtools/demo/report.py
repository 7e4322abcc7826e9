"""What `ioc demo` prints: its banner, and tables of what it counted and read back.

Pure formatting: each function returns the lines (without their newline) and reads
nothing; streams.devtools.demo.run prints them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from models.alerts import Alert
from streams.devtools.demo.options import DemoOptions
from streams.devtools.demo.readback import Tally
from streams.devtools.scrape import Samples
from streams.devtools.servers import SeriesTally
from streams.worker.topics import AGGREGATES, ALERTS

__all__ = [
    "EXAMPLES_PER_RULE",
    "aggregates_summary",
    "alertmanager_summary",
    "alerts_summary",
    "banner",
    "console_summary",
    "counters_summary",
    "sinks_summary",
    "victoriametrics_summary",
]

#: Alerts per rule whose summaries the end of the demo prints (the earliest first).
EXAMPLES_PER_RULE: Final = 2


def banner(
    options: DemoOptions,
    *,
    bootstrap: str,
    web: str,
    logs: Path,
    victoriametrics: str | None = None,
    alertmanager: str | None = None,
) -> str:
    """Where everything is, and what traffic is coming; with the sinks' servers when
    `victoriametrics` and `alertmanager` (their query URLs) are given. Every address
    is one that answers: Debian's packages have no VictoriaMetrics UI (`/vmui` is 404)
    and no Alertmanager UI, so their HTTP APIs are shown."""
    history = ""
    if options.backfill:
        history = (
            f"\n  history  the {options.backfill / 3600:g} h before now first, as fast as"
            " possible (one reading per device per 5 min, no incidents)"
        )
    sinks = ""
    if victoriametrics is not None and alertmanager is not None:
        sinks = (
            f"  victoria {victoriametrics} (VictoriaMetrics' query API: window finals as"
            " ioc_aggregate_<statistic>, e.g. ioc_aggregate_pm25_mean; step=1d looks back a day)\n"
            f"  alerts   {alertmanager} (Alertmanager's API: the alerts of {ALERTS})\n"
            f"  sinks    {web}/sinks (each sink's state as JSON; needs a console login)\n"
        )
    return (
        f"ioc demo\n"
        f"  broker   {bootstrap} (embedded Tansu, memory only)\n"
        f"  console  {web}/ (the operators' console; logins below once the worker is ready)\n"
        f"  metrics  {web}/metrics\n" + sinks + f"  logs     {logs}/\n"
        f"  results  {AGGREGATES} (window results), {ALERTS} (alerts firing and"
        f" resolved), read back at the end; alerts copied to {logs}/alerts.jsonl\n"
        f"  traffic  {options.rate:g} messages/s, seed {options.seed}, "
        f"{options.bad_share:.0%} malformed"
        + (f", {options.duration:g} s" if options.duration else "")
        + history
        + "\nCtrl-C stops everything."
    )


#: What each demo user may do, as the console summary says it.
_ROLE_TEXT: Final = {
    "operator": "acknowledge, silence, unsilence, comment",
    "viewer": "read only",
}


def console_summary(
    web: str,
    passwords: Mapping[str, str],
    roles: Mapping[str, str],
    users_file: Path,
    reset: Iterable[str] = (),
) -> list[str]:
    """The console's addresses and the demo's credentials (name → password, name →
    role), printed once the worker is ready; `reset`: the demo users that were in the
    users file already and got new passwords."""
    lines = [
        f"console ready at {web}/ (wall layout: {web}/?wall=1)",
        f"  demo credentials, new for this run (users file {users_file}):",
    ]
    width = max(map(len, passwords), default=8)
    for name, password in passwords.items():
        role = roles[name]
        lines.append(f"    {name:<{width}}  {password}  role {role}: {_ROLE_TEXT.get(role, role)}")
    if reset := list(reset):
        lines.append(
            f"  {', '.join(reset)} {'was' if len(reset) == 1 else 'were'} in the users file"
            " already: password reset for this run"
        )
    return lines


def counters_summary(samples: Samples) -> list[str]:
    """Every `ioc_*_total` counter of the worker that is not 0, one a line."""
    lines = []
    for (name, labels), value in sorted(samples.items()):
        if name.startswith("ioc_") and name.endswith("_total") and value:
            label_text = ",".join(f"{key}={val}" for key, val in labels)
            lines.append(f"  {name}{{{label_text}}} {value:g}")
    return lines


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def alerts_summary(
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


def aggregates_summary(tally: Tally, complete: bool, expected: list[str]) -> list[str]:
    """Final and running results per aggregate, the configured ones first, and which
    configured aggregates had no final result."""
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


def victoriametrics_summary(series: SeriesTally) -> list[str]:
    """Series and points of `ioc_aggregate_*` per aggregate."""
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


def alertmanager_summary(names: Counter[str]) -> list[str]:
    """Active alerts per alertname."""
    if not names:
        return ["  no active alert"]
    width = max(len("alertname"), *map(len, names))
    lines = [f"  {'alertname':<{width}}  {'active':>8}"]
    for name, count in sorted(names.items()):
        lines.append(f"  {name:<{width}}  {count:>8}")
    lines.append(f"{sum(names.values())} active alerts of {len(names)} rules")
    return lines


def sinks_summary(status: dict[str, Any]) -> list[str]:
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
