"""A rule compiled for routing: which events (or window results) feed it, under which
group, with what figure.

The rule stage works in two hops (docs/RULES.md, "How rules run"): `Route.inputs`
turns a validated event or an `ioc.aggregates` record into `RuleInput`s keyed by
(rule, group), so that every input of one group reaches one partition of
`<app>-rules-inputs`, whatever partition its event came from; `streams.core.rules.engine`
then evaluates them there. Closures resolved once at load, as in streams.core.windows.plan.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from models.families import TIME_FIELDS
from models.rules import (
    FieldRef,
    Rule,
    SequenceRule,
    ThresholdRule,
)
from streams.core.windows.plan import MISSING, event_time_ms, getter, matcher

__all__ = [
    "FIRST", "MAX_GROUP_VALUE_CHARS", "THEN", "UNKNOWN", "AggregateRoute", "Route",
    "RouteTable", "RuleInput", "event_id_getter", "group_function",
]  # fmt: skip

Event = dict[str, Any]
Group = tuple[Any, ...]

#: The group value of an event without the group field (or with one that is no label:
#: null, an object, an empty list). Such an event still counts, under this value: a
#: flood reading without its optional `areaServed` must raise its alert all the same.
UNKNOWN: Final = "unknown"

#: The longest group value kept as it is. A longer string (a 500,000-character
#: `refDevice`) becomes its first characters, "…" and a hash of the whole: still one
#: group per value, but its inputs, checkpoints and alerts stay small.
MAX_GROUP_VALUE_CHARS: Final = 256
_KEPT_CHARS: Final = MAX_GROUP_VALUE_CHARS - 18

#: Sequence inputs: which of the rule's two filters the event matched (bit flags).
FIRST: Final = 1
THEN: Final = 2

_EVENT_IDS: Final[dict[str, Callable[[Event], Any]]] = {
    "city": getter("id"),
    "services": getter("event_id"),
    "security": getter("event.id"),
}


def event_id_getter(family: str) -> Callable[[Event], Any]:
    return _EVENT_IDS[family]


@dataclass(frozen=True, slots=True)
class RuleInput:
    """One event's (or window result's) contribution to one group of one rule.

    `figure` depends on the kind: None (count, match, absence), the distinct value,
    the measured number (rate, threshold, baseline), `[number, level]` for a threshold
    whose level comes from the event, the numerator test (ratio), FIRST|THEN flags
    (sequence), or `[member, number]` for an aggregate rule that sums over the labels
    it drops (`member`: their values).
    """

    rule: str
    group: Group
    at_ms: int
    figure: Any = None
    event_id: str | None = None

    @property
    def key(self) -> bytes:
        """The Kafka key: one group of one rule, so one partition."""
        return self.rule.encode() + b"|" + orjson.dumps(self.group)

    def to_json(self) -> bytes:
        return orjson.dumps([self.rule, self.group, self.at_ms, self.figure, self.event_id])

    @classmethod
    def from_json(cls, data: bytes) -> RuleInput:
        rule, group, at_ms, figure, event_id = orjson.loads(data)
        if type(rule) is not str or type(group) is not list or type(at_ms) is not int:
            raise ValueError("not a rule input: [rule, group, at_ms, figure, event_id]")
        return cls(rule, tuple(group), at_ms, figure, event_id)


def _shortened(value: str) -> str:
    digest = hashlib.sha256(value.encode(errors="surrogatepass")).hexdigest()[:16]
    return f"{value[:_KEPT_CHARS]}…{digest}"


def _label_values(value: Any) -> list[Any]:
    """A group field's value as the group values it gives: one, one per distinct
    element of a list (ECS `event.category`), or UNKNOWN when there is none."""
    if type(value) is str:
        return [value if len(value) <= MAX_GROUP_VALUE_CHARS else _shortened(value)]
    if type(value) is list:
        elements = dict.fromkeys(
            v for v in value if v is not None and type(v) is not dict and type(v) is not list
        )
        values = [_label_values(v)[0] for v in elements]
        return list(dict.fromkeys(values)) or [UNKNOWN]
    if value is None or type(value) is dict:
        return [UNKNOWN]
    return [value]


def group_function(group_by: tuple[str, ...]) -> Callable[[Event], list[Group]]:
    """Event → the groups it belongs to: one, or one per combination of list elements.
    Never none: a missing field is UNKNOWN (docs/RULES.md, "Groups")."""
    if not group_by:
        return lambda event: [()]
    getters = [getter(path) for path in group_by]
    if len(getters) == 1:
        get = getters[0]

        def group1(event: Event) -> list[Group]:
            value = get(event)
            if type(value) is str and len(value) <= MAX_GROUP_VALUE_CHARS:  # the common case
                return [(value,)]
            return [(v,) for v in _label_values(value)]

        return group1

    def group_n(event: Event) -> list[Group]:
        parts = [_label_values(get(event)) for get in getters]
        if all(len(part) == 1 for part in parts):
            return [tuple(part[0] for part in parts)]
        return list(itertools.product(*parts))

    return group_n


def _number(value: Any) -> float | None:
    if type(value) is bool or not isinstance(value, int | float):
        return None
    return float(value)


class Route:
    """One rule, ready for the per-event path of the router."""

    __slots__ = ("_figure", "_groups", "_match", "family", "kind", "name", "on_aggregate")

    def __init__(self, rule: Rule) -> None:
        self.name = rule.name
        self.kind = rule.kind
        self.family = rule.family
        self.on_aggregate = rule.aggregate
        self._groups = group_function(rule.group_by)
        self._match = matcher(dict(rule.filter))
        self._figure = _figure_function(rule)

    def inputs(self, event: Event, at_ms: int, event_id: str | None) -> list[RuleInput]:
        """What a validated event of the rule's family contributes: [] when the filter
        does not match or the figure is missing (a missing group field is UNKNOWN)."""
        match = self._match
        if match is not None and not match(event):
            return []
        figure = self._figure(event)
        if figure is MISSING:
            return []
        return [
            RuleInput(self.name, group, at_ms, figure, event_id) for group in self._groups(event)
        ]


def _figure_function(rule: Rule) -> Callable[[Event], Any]:
    """Event → the figure a kind needs (MISSING: the event does not count)."""
    kind = rule.kind
    if kind in ("count", "match", "absence"):
        return lambda event: None
    if kind == "distinct":
        get = getter(rule.field)  # type: ignore[union-attr]

        def distinct_value(event: Event) -> Any:
            value = get(event)
            return MISSING if value is None or type(value) in (dict, list) else value

        return distinct_value
    if kind == "ratio":
        numerator = matcher(dict(rule.numerator))  # type: ignore[union-attr]
        if numerator is None:
            return lambda event: True
        return numerator
    if kind == "sequence":
        assert isinstance(rule, SequenceRule)
        first = matcher(dict(rule.first)) or (lambda event: True)
        then = matcher(dict(rule.then)) or (lambda event: True)

        def step(event: Event) -> Any:
            flags = (FIRST if first(event) else 0) | (THEN if then(event) else 0)
            return flags or MISSING

        return step
    # threshold, rate on an event field
    value_of = getter(rule.value)  # type: ignore[union-attr,arg-type]
    level = _field_level(rule) if isinstance(rule, ThresholdRule) else None
    if level is not None:
        level_of = getter(level)

        def with_level(event: Event) -> Any:
            value, bound = _number(value_of(event)), _number(level_of(event))
            return MISSING if value is None or bound is None else [value, bound]

        return with_level

    def number(event: Event) -> Any:
        value = _number(value_of(event))
        return MISSING if value is None else value

    return number


def _field_level(rule: ThresholdRule) -> str | None:
    """The field a threshold's level is read from, per event (`above: {field: …}`)."""
    for level in (rule.above, rule.below):
        if isinstance(level, FieldRef):
            return level.field
    return None


class AggregateRoute:
    """One rule on `ioc.aggregates` finals of one aggregate."""

    __slots__ = ("_dropped", "_keep", "_match", "aggregate", "name", "statistic", "use_start")

    def __init__(self, rule: Rule, aggregate_group: tuple[str, ...]) -> None:
        self.name = rule.name
        self.aggregate = rule.aggregate
        self.statistic: str = getattr(rule, "statistic", None) or ""
        self._match = matcher(dict(rule.filter))
        self._keep = tuple(rule.group_by)
        self._dropped = tuple(label for label in aggregate_group if label not in self._keep)
        # A baseline compares like with like: the slot is the window's start hour.
        self.use_start = rule.kind == "baseline"

    def inputs(self, record: Event) -> list[RuleInput]:
        labels = record.get("group")
        statistics = record.get("statistics")
        if type(labels) is not dict or type(statistics) is not dict:
            return []
        if self._match is not None and not self._match(labels):
            return []
        value = _number(statistics.get(self.statistic))
        if value is None:
            return []
        # A label the window stage left out (or null) is UNKNOWN, as for events.
        group = tuple(_label_or_unknown(labels.get(label)) for label in self._keep)
        at_ms = record["window_start_ms" if self.use_start else "window_end_ms"]
        if not self._dropped:
            return [RuleInput(self.name, group, at_ms, value, record.get("identity"))]
        member = [labels.get(label) for label in self._dropped]
        return [RuleInput(self.name, group, at_ms, [member, value], record.get("identity"))]


def _label_or_unknown(value: Any) -> Any:
    if type(value) is str and len(value) > MAX_GROUP_VALUE_CHARS:
        return _shortened(value)
    return UNKNOWN if value is None or type(value) in (dict, list) else value


class RouteTable:
    """Every rule's route, by what the router reads: a family's validated events or
    one aggregate's finals."""

    def __init__(self, rules: list[Rule], aggregate_groups: dict[str, tuple[str, ...]]) -> None:
        self.by_family: dict[str, list[Route]] = {}
        self.by_aggregate: dict[str, list[AggregateRoute]] = {}
        for rule in rules:
            if rule.family is not None:
                self.by_family.setdefault(rule.family, []).append(Route(rule))
            else:
                assert rule.aggregate is not None
                route = AggregateRoute(rule, aggregate_groups[rule.aggregate])
                self.by_aggregate.setdefault(rule.aggregate, []).append(route)
        self._ids = {family: event_id_getter(family) for family in self.by_family}
        self._times = {family: getter(TIME_FIELDS[family]) for family in self.by_family}

    def event_inputs(self, family: str, event: Event) -> list[RuleInput]:
        """Raises EventTimeError for an event without a readable time (not from ingest)."""
        routes = self.by_family.get(family)
        if not routes:
            return []
        at_ms = event_time_ms(self._times[family](event))
        event_id = self._ids[family](event)
        if event_id is not None and type(event_id) is not str:
            event_id = str(event_id)
        out: list[RuleInput] = []
        for route in routes:
            out += route.inputs(event, at_ms, event_id)
        return out

    def aggregate_inputs(self, record: Event) -> list[RuleInput]:
        """Finals only: a running update is a partial figure that would fire early."""
        routes = self.by_aggregate.get(record.get("aggregate"))  # type: ignore[arg-type]
        if not routes or record.get("final") is not True:
            return []
        out: list[RuleInput] = []
        for route in routes:
            out += route.inputs(record)
        return out
