"""`ioc backtest`: the rule engine offline, over recorded events, without Kafka.

The same code as the worker, in one process and one partition: ingest's validation
(`process_message`), the window engines and the derived hourly AQI, the rule routes
and the rule engine. The recording is merged by event time first (a stable sort of
the accepted events: those of one time keep the recording's order), which is the
order the live pipeline's per-source watermarks reconstruct whatever the delivery
order; so each family's, aggregate's and rule's watermark is the newest event time it
has seen minus the allowed lateness, nothing is late unless the recording itself has
an event older than that, and nothing is closed by a wall clock: a backtest of one
file always gives the same alerts. Rule inputs are judged in event-time order, as
live (streams.core.rules.engine); those still waiting at the end of the recording
are judged then. What the recording ends in is left as it is: windows still open
give no finals, alerts still firing are reported firing.

Not replayed: `case_backlog` (the case stage judges overdue by the wall clock at
reporting time, which a recording does not have), so rules on it never fire here.

Input lines (JSONL): one event of the wire contract per line, its family recognised
from its fields (`type`: city, `kind`: services, `@timestamp` with `event`:
security), or a line of `ioc simulate --record` (`{"topic", "key", "value"}` or
`value_b64`). A line that is neither is reported and skipped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from models.aggregates import Aggregate
from models.alerts import Alert
from models.families import TIME_FIELDS
from models.results import WindowResult
from models.rules import Rule
from streams.core.ingest import process_message
from streams.core.progress import Frontier
from streams.core.rules.engine import LateInput, RuleEngine
from streams.core.rules.plan import RuleInput
from streams.core.windows import WindowEngine
from streams.core.windows.hourly_aqi import HourlyAqi
from streams.core.windows.plan import event_time_ms, getter
from streams.worker.settings import Settings
from streams.worker.stages.rules import route_table, start_lags, summing_rules
from streams.worker.topics import SOURCE

__all__ = ["BacktestResult", "backtest", "read_lines"]

_FAMILY_OF_TOPIC: dict[str, str] = {topic: family for family, topic in SOURCE.items()}
#: Judge time-driven rules at least this often in event time (windows sliding, `for`).
_ADVANCE_EVERY_MS = 1000


@dataclass
class BacktestResult:
    alerts: list[Alert] = field(default_factory=list)
    finals: list[WindowResult] = field(default_factory=list)  # and the derived AQI's
    events: int = 0  # accepted events
    rejected: int = 0  # messages or elements ingest would dead-letter
    late: int = 0  # events late for a window, or rule inputs late for their rule
    skipped: list[str] = field(default_factory=list)  # lines neither format


def _family_of(event: object) -> str | None:
    if type(event) is not dict:
        return None
    if "type" in event:
        return "city"
    if "kind" in event:
        return "services"
    if "@timestamp" in event and "event" in event:
        return "security"
    return None


def read_lines(lines: Iterable[bytes]) -> Iterator[tuple[str, bytes] | str]:
    """(family, raw message bytes) per line, or a message saying why a line is skipped."""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield f"line {number}: not JSON ({exc})"
            continue
        if type(entry) is dict and "topic" in entry and ("value" in entry or "value_b64" in entry):
            family = _FAMILY_OF_TOPIC.get(entry["topic"])
            if family is None:
                yield f"line {number}: topic {entry['topic']!r} is not a source topic"
            elif "value_b64" in entry:
                yield family, base64.b64decode(entry["value_b64"])
            else:
                yield family, orjson.dumps(entry["value"])
            continue
        family = _family_of(entry)
        if family is None:
            yield f"line {number}: not an event of any family (no type, kind or @timestamp+event)"
            continue
        yield family, line


def backtest(
    lines: Iterable[bytes],
    rules: list[Rule],
    aggregates: list[Aggregate],
    settings: Settings,
    start: datetime | None = None,
) -> BacktestResult:
    """Every alert state change the rules would have written for the recording.

    Ingest judges "more than 5 minutes in the future" against the recording's own
    clock, the newest event time accepted so far (`start`, or the wall clock, before
    the first), not today's: a recorded future-dated event is rejected as it was live.
    """
    time_of: dict[str, Any] = {family: getter(TIME_FIELDS[family]) for family in SOURCE}
    lateness_ms = int(settings.windows.allowed_lateness_s * 1000)
    never_idle = 1 << 62  # event time only: the wall clock plays no part
    engines: dict[str, WindowEngine] = {
        family: WindowEngine(
            [a for a in aggregates if a.family == family],
            allowed_lateness_ms=lateness_ms,
            idle_timeout_ms=never_idle,
        )
        for family in {a.family for a in aggregates}
    }
    derived = HourlyAqi.for_pack(aggregates)
    table = route_table(rules, aggregates)
    rule_engine = RuleEngine(
        rules, summing_rules(rules, aggregates),
        allowed_lateness_ms=int(settings.rules.allowed_lateness_s * 1000),
        idle_timeout_ms=never_idle, start_lags=start_lags(rules, aggregates),
        max_groups=settings.rules.max_groups,  # evictions as the live stage makes them
    )  # fmt: skip
    result = BacktestResult()
    alerts = result.alerts
    next_advance = -(1 << 62)
    newest: dict[str, int] = {}  # per family, the newest event time (merged: the latest)

    def feed_rules(items: list[RuleInput]) -> None:
        for item in items:
            outcome = rule_engine.process(item, 0)
            if type(outcome) is LateInput:
                result.late += 1
            else:
                alerts.extend(outcome)  # type: ignore[arg-type]

    def advance() -> None:
        """The rules' time moves as the live pipeline's does: each with the progress of
        its family's events, or of its aggregate's finals (streams.core.progress)."""
        frontiers = [Frontier(f, "events", f, t, False) for f, t in newest.items()]
        for engine in engines.values():
            of_aggregates = engine.aggregate_frontiers("p")
            if derived is not None:
                of_aggregates += derived.frontiers(of_aggregates)
            frontiers += [Frontier(a, "aggregates", a, f, False) for a, f in of_aggregates]
        rule_engine.observe_progress(frontiers)
        alerts.extend(rule_engine.advance(0))

    def feed_results(results: list[WindowResult]) -> None:
        if derived is not None:
            results = results + derived.derive("p", results)
        result.finals += results
        for window_result in results:
            feed_rules(table.aggregate_inputs(orjson.loads(window_result.to_json())))

    for family, event_ms, event in _merged(lines, settings, start, time_of, result):
        engine = engines.get(family)
        if engine is not None:
            outputs = engine.process("p", event, 0)
            finals = [o for o in outputs if isinstance(o, WindowResult)]
            if len(finals) < len(outputs):
                result.late += 1
            if finals:
                feed_results(finals)
        feed_rules(table.event_inputs(family, event))
        newest[family] = event_ms
        if event_ms >= next_advance:
            advance()
            next_advance = event_ms + _ADVANCE_EVERY_MS
    advance()
    alerts.extend(rule_engine.drain())  # the recording's end: nothing older is to come
    return result


def _merged(
    lines: Iterable[bytes],
    settings: Settings,
    start: datetime | None,
    time_of: dict[str, Any],
    result: BacktestResult,
) -> list[tuple[str, int, dict[str, Any]]]:
    """The recording's accepted events as (family, event time, event), by event time."""
    clock = start or datetime.now(UTC)
    clock_ms = -(1 << 62)
    events: list[tuple[str, int, dict[str, Any]]] = []
    for entry in read_lines(lines):
        if isinstance(entry, str):
            result.skipped.append(entry)
            continue
        family, raw = entry
        outcome = process_message(family, raw, settings.ingest, clock)
        result.rejected += len(outcome.rejected)
        for accepted in outcome.accepted:
            event = orjson.loads(accepted.value)
            result.events += 1
            event_ms = event_time_ms(time_of[family](event))
            events.append((family, event_ms, event))
            if event_ms > clock_ms:
                clock_ms = event_ms
                clock = datetime.fromtimestamp(event_ms / 1000, UTC)
    events.sort(key=lambda entry: entry[1])  # stable: ties keep the recording's order
    return events
